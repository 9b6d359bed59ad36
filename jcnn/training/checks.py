"""Entry checks of training: what :func:`jcnn.fit` and :func:`jcnn.evaluate` verify
about their arguments and data before any step is compiled, each failing with a message that
says what arrived, what was expected and the fix."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jcnn.layers.arguments import is_int
from jcnn.training.losses import check_labels
from jcnn.training.state import TrainState

Arrays = tuple[np.ndarray, np.ndarray]


#: The label of a padding row: a data source pads the last partial batch of an evaluation
#: epoch with such rows where every process must yield equal batches (several shards, or a
#: mesh), and evaluation leaves them out.
PAD_LABEL = -1


class DataSource(Protocol):
    """What :func:`jcnn.fit` takes instead of arrays: an iterable of ``(x, y)`` host batches
    (one epoch per iteration, from the current position) with a length (batches per epoch)
    and a position (e.g. :class:`jcnn.data.stream.StreamSource`).

    ``state()`` is JSON-able and holds ``"epoch"`` and ``"index"`` (the next batch) after each
    batch handed over; ``restore(state)`` continues from it; ``set_epoch(e)`` moves to the
    start of epoch ``e``. Optional: ``batch_size`` (the global batch), ``example_shape()``,
    ``fingerprint()`` (what identifies the data in a checkpoint).
    """

    def __iter__(self) -> Iterator[tuple[Any, Any]]: ...
    def __len__(self) -> int: ...
    def state(self) -> dict[str, Any]: ...
    def restore(self, state: dict[str, Any]) -> None: ...
    def set_epoch(self, epoch: int) -> None: ...


def is_source(data: Any) -> bool:
    """Whether ``data`` is a :class:`DataSource` (duck-typed) rather than arrays."""
    names = ("__iter__", "__len__", "state", "restore", "set_epoch")
    return not isinstance(data, (tuple, list)) and all(hasattr(data, n) for n in names)


def _peek(where: str, source: Any) -> Any:
    """The next batch's ``x`` of ``source``, its position left as it was."""
    position = source.state()
    it = iter(source)
    try:
        x, _ = next(it)
    except StopIteration:
        raise ValueError(f"{where}: the data source yielded no batch") from None
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
    source.restore(position)
    return x


def source_example_shape(where: str, source: Any) -> tuple[int, ...]:
    """The shape of one example of ``source``: ``example_shape()``, else its next batch's."""
    if hasattr(source, "example_shape"):
        return tuple(source.example_shape())
    return tuple(np.shape(_peek(where, source))[1:])


def source_batch_size(where: str, source: Any) -> int:
    """The global batch of ``source``: ``batch_size``, else its next batch's rows times the
    processes."""
    if hasattr(source, "batch_size"):
        return int(source.batch_size)
    return len(_peek(where, source)) * jax.process_count()


def batch_size_for(
    where: str, name: str, data: Any, given: int | None, default: int, arg: str = "batch_size"
) -> int:
    """The batch size to read ``data`` with: a data source's own (``given`` must be None or
    equal it: a source batches itself, and a different ``given`` would be silently ignored),
    else ``given`` or ``default``."""
    if not is_source(data):
        return default if given is None else given
    own = source_batch_size(where, data)
    if given is not None and given != own:
        raise ValueError(
            f"{where}: {arg}={given} but the {name} data source batches {own} examples (its "
            f"global batch): a source batches itself; leave {arg} out, or build the source "
            f"with batch_size={given}"
        )
    return own


def data_pair(where: str, name: str, data: Any) -> Arrays:
    """``data`` as ``(x, y)``: two arrays of the same, non-zero length, ``x`` floating-point."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        got = type(data).__name__ + (f" of shape {data.shape}" if hasattr(data, "shape") else "")
        raise TypeError(f"{where}: {name} must be a pair (x, y) of arrays, got a {got}")
    x, y = data
    for part, a in (("x", x), ("y", y)):
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(
                f"{where}: {name} {part} must be an array (NumPy, a memory map or JAX), got a "
                f"{type(a).__name__}: convert it with np.asarray"
            )
        if len(a.shape) == 0:
            raise ValueError(f"{where}: {name} {part} is a scalar; examples go along axis 0")
    if len(x) != len(y):
        raise ValueError(
            f"{where}: {name} has {len(x)} examples (x {tuple(x.shape)}) but {len(y)} labels "
            f"(y {tuple(y.shape)}): give one label per example"
        )
    if len(x) == 0:
        raise ValueError(
            f"{where}: {name} is empty (x {tuple(x.shape)}): give at least one example"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{where}: {name} x has dtype {x.dtype}; a network takes floating-point inputs "
            "(integer pixels would make Conv and Dense compute in integers). Convert first: "
            "x.astype(np.float32) / 255 for 0..255 pixels (or jcnn.data.normalize(x)), "
            "x.astype(np.float32) for other numbers"
        )
    return x, y


#: Elements per piece of :func:`first_nonfinite`'s pass (bounds its temporary memory).
_PIECE = 1 << 20


def first_nonfinite(a: Any) -> int | None:
    """Index of the first example of ``a`` holding a NaN or inf (None: none), in one pass."""
    if not jnp.issubdtype(a.dtype, jnp.inexact):
        return None
    rows = max(1, _PIECE // max(1, math.prod(a.shape[1:])))
    for lo in range(0, len(a), rows):
        ok = np.isfinite(np.asarray(a[lo : lo + rows])).reshape(min(rows, len(a) - lo), -1)
        if not ok.all():
            return lo + int(np.argmin(ok.all(axis=1)))
    return None


def check_finite(where: str, name: str, x: Any, y: Any) -> None:
    """Raises ValueError naming the first example of ``x`` (then ``y``) with a NaN or inf."""
    for part, a in (("x", x), ("y", y)):
        i = first_nonfinite(a)
        if i is None:
            continue
        example = np.asarray(a[i])
        at = np.unravel_index(int(np.argmin(np.isfinite(example))), example.shape)
        value = example[at]
        inside = f" at {tuple(int(j) for j in at)}" if example.ndim else ""
        raise ValueError(
            f"{where}: {name} {part}[{i}] holds {value}{inside}: example {i} is the first with a "
            "NaN or inf, which would make the loss and then every parameter NaN. Drop or repair "
            f"such examples (keep = np.isfinite({part}.reshape(len({part}), -1)).all(axis=1); "
            "x, y = x[keep], y[keep]), or pass stop_on_nonfinite=False"
        )


def check_class_labels(where: str, name: str, y: Any, output: Any) -> None:
    """For a loss of integer labels: ``y`` of shape ``(N,)``, integers in ``[0, K)``."""
    if not isinstance(output, tuple) or not all(is_int(k) for k in output):
        check_labels(f"{where}: {name} set", y)  # an unusual output: the loss says what it takes
        return
    check_labels(f"{where}: {name} set", y, (len(y), *output))
    classes = int(output[0])
    labels = np.asarray(y)
    bad = (labels < 0) | (labels >= classes)
    if not bad.any():
        return
    i = int(np.argmax(bad))
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        hint = "; drop the examples of negative labels (keep = y >= 0) or remap them"
    elif lo == 1 and hi == classes:
        hint = f"; labels 1..{classes}? use y - 1"
    else:
        hint = f"; for {hi + 1} classes give the last layer {hi + 1} outputs"
    raise ValueError(
        f"{where}: {name} label y[{i}] = {labels[i]} is not a class of this network: its output "
        f"per example is ({classes},), so a label is a class index in 0..{classes - 1}, but the "
        f"labels span {lo}..{hi} ({int(bad.sum())} of {len(labels)} outside){hint}"
    )


def check_train_state(ts: Any, optimizer: optax.GradientTransformation, frozen: bool) -> None:
    """A TrainState whose optimiser state ``optimizer`` can update (unless re-made: frozen)."""
    if not isinstance(ts, TrainState):
        raise TypeError(
            f"fit: train_state must be a jcnn.TrainState (create_train_state, a FitResult's "
            f"train_state, or TrainState.create(params, state, optimizer)), got a "
            f"{type(ts).__name__}"
        )
    if frozen:
        return
    expected = jax.eval_shape(optimizer.init, ts.params)
    if jax.tree.structure(expected) != jax.tree.structure(ts.opt_state):  # type: ignore[operator]

        def kinds(tree: Any) -> str:
            parts = tree if isinstance(tree, tuple) and not hasattr(tree, "_fields") else (tree,)
            return "(" + ", ".join(type(p).__name__ for p in parts) + ")"

        raise ValueError(
            f"fit: train_state.opt_state was made by another optimiser: it holds "
            f"{kinds(ts.opt_state)}, this optimizer's state is {kinds(expected)}. Pass the "
            "optimizer the state was made with, or start it afresh: "
            "train_state._replace(opt_state=optimizer.init(train_state.params))"
        )


def check_per_step(metrics: Mapping[str, Any], num_steps: int) -> None:
    """Each metric of a chunk is ``(num_steps,)``: one scalar per step (shapes only, free)."""
    shapes = {k: np.shape(v) for k, v in metrics.items() if np.shape(v) != (num_steps,)}
    if shapes:
        raise ValueError(
            f"fit: a chunk of {num_steps} steps returned metrics of shapes {shapes}, expected "
            f"({num_steps},): one scalar per step. The loss and every metric of metrics_fn must "
            "be ONE scalar for the batch, e.g. jnp.mean over the examples"
        )
