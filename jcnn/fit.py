"""``fit``: THE training loop of jcnn -- epochs with evaluation, history, a progress bar,
resumable checkpoints, and hooks.

Every loop of jcnn is this one (``jcnn.distributed.fit_sharded`` and the experiments' seed loop
call it). Its hooks, all keyword-only and optional:

* ``steps``: a :data:`jcnn.train.StepFactory`, ``factory(spec) -> Steps``: how the compiled
  step, epoch and eval functions are made and how the train state and the data reach them.
  Default :func:`jcnn.train.default_steps` (one device); :func:`jcnn.distributed.sharded_steps`
  for a mesh; ``functools.cache(default_steps)`` shares the compiled functions between runs.
* ``on_chunk_end(chunk)``: after every chunk of steps (``log_every`` steps, or up to the next
  checkpoint, or the rest of the epoch) with a :class:`Chunk` holding the per-step metrics.
* ``validate(train_state) -> metrics``: how the validation metrics of an epoch are computed
  (default: the eval step over ``val`` in batches), recorded as ``val_<name>``.
* ``on_epoch_end(epoch, record)``: after every epoch; returning True stops the run there.

``fit`` checks its arguments and data before it compiles anything (integer images, labels
outside the network's classes, NaN/inf values, mismatched lengths and shapes, counts that are
not positive ints: see :func:`fit`) and stops with a :class:`NonFiniteLossError` at the first
NaN or inf training loss.

Example:
    >>> from jcnn.fit import fit
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    >>> losses = []
    >>> result = fit(
    ...     L.serial(L.Dense(2)), (x, y), epochs=2, batch_size=16, progress=False,
    ...     log_every=2,                                         # a chunk = 2 compiled steps
    ...     on_chunk_end=lambda c: losses.extend(c.metrics["loss"].tolist()),
    ...     validate=lambda ts: {"norm": float(jnp.abs(ts.params["Dense_0"]["kernel"]).sum())},
    ...     on_epoch_end=lambda epoch, record: record["train_loss"] < 0.1,  # True: stop early
    ... )
    >>> len(losses), sorted(result.history), int(result.train_state.step)
    (8, ['epoch', 'seconds', 'train_accuracy', 'train_loss', 'val_norm'], 8)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jcnn import checks, compile_cache
from jcnn.checkpoint import Checkpointer
from jcnn.data.batching import batches, data_rng, epoch_permutation
from jcnn.layers.core import Layer
from jcnn.losses import softmax_cross_entropy, takes_integer_labels
from jcnn.shapes import is_int
from jcnn.train import (
    MetricsFn,
    StepFactory,
    Steps,
    StepSpec,
    TrainState,
    Transform,
    create_train_state,
    default_metrics,
    default_steps,
    freeze,
)

Arrays = tuple[np.ndarray, np.ndarray]
ValidateFn = Callable[[TrainState], Mapping[str, float]]


@dataclass
class FitResult:
    """What :func:`fit` returns: the final train state and per-epoch history.

    Attributes:
        train_state: the state after the last step.
        history: lists per epoch (``epoch``, ``train_<metric>``, ``val_<metric>``,
            ``seconds``) of the whole run: a resumed run's history starts with the epochs
            trained before the checkpoint (kept in its meta).
        resumed_from: the step of the checkpoint this call resumed from; None when it started
            afresh.
        resume_note: what ``fit`` said about the resume (printed when ``progress`` is on), e.g.
            ``"fit: resumed from step 10 (epoch 2 of 5 done; continuing with epoch 3) in
            runs/x/checkpoints"``; ``""`` when not resumed.

    Example:
        >>> import tempfile
        >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
        >>> y = np.arange(32) % 2
        >>> net, run = L.serial(L.Dense(2)), dict(batch_size=16, progress=False)
        >>> run["checkpoint_dir"] = tempfile.mkdtemp() + "/ckpt"
        >>> first = fit(net, (x, y), epochs=1, **run)
        >>> more = fit(net, (x, y), epochs=3, **run)  # resumes after epoch 1
        >>> more.resumed_from, more.history["epoch"]
        (2, [1, 2, 3])
        >>> again = fit(net, (x, y), epochs=3, **run)  # a finished run: nothing to train
        >>> print(again.resume_note.split(": ")[1])
        resumed from step 6 (epoch 3 of 3 done, epochs=3)
        >>> again.history == more.history, int(again.train_state.step)
        (True, 6)
    """

    train_state: TrainState
    history: dict[str, list[float]] = field(default_factory=dict)
    resumed_from: int | None = None
    resume_note: str = ""


def _resume_note(
    step: int, epoch: int, index: int, epochs: int, steps_per_epoch: int, directory: Path
) -> str:
    """The line ``fit`` prints when it resumes from a checkpoint (see :class:`FitResult`)."""
    where = f"resumed from step {step}"
    if index:
        return (
            f"fit: {where} (epoch {epoch + 1} of {epochs}, after step {index} of its "
            f"{steps_per_epoch}) in {directory}"
        )
    if epoch >= epochs:
        done = f"epoch {epoch} of {epochs} done" if epoch == epochs else f"{epoch} epochs done"
        return (
            f"fit: {where} ({done}, epochs={epochs}): nothing left to train; returning the "
            f"checkpoint's state and history ({directory})"
        )
    return (
        f"fit: {where} (epoch {epoch} of {epochs} done; continuing with epoch {epoch + 1}) in "
        f"{directory}"
    )


class Chunk(NamedTuple):
    """What ``on_chunk_end`` gets after each chunk of training steps.

    Attributes:
        epoch: the epoch, counted from 0.
        start: index of the chunk's first step within the epoch.
        num_steps: steps in the chunk.
        step: optimiser steps taken so far (the train state's ``step``).
        metrics: ``{name: (num_steps,) array}``, the metrics of every step of the chunk.
        train_state: the state after the chunk. The next chunk donates (deletes) it: copy what
            you keep (``jax.tree.map(jnp.copy, ...)``).
    """

    epoch: int
    start: int
    num_steps: int
    step: int
    metrics: dict[str, jax.Array]
    train_state: TrainState


class NonFiniteLossError(FloatingPointError):
    """The training loss of a step of :func:`fit` was NaN or inf (``stop_on_nonfinite=True``).

    Raised after the chunk of steps holding that step, before anything of the chunk is
    checkpointed or handed to ``on_chunk_end``.

    Attributes:
        step: optimiser steps taken before the bad step (the train state's ``step`` then).
        epoch: its epoch, counted from 0.
        index: its index within the epoch, counted from 0.
        loss: the loss value (``nan``, ``inf`` or ``-inf``).
    """

    def __init__(self, message: str, *, step: int, epoch: int, index: int, loss: float) -> None:
        super().__init__(message)
        self.step, self.epoch, self.index, self.loss = step, epoch, index, loss


def evaluate(
    eval_step: Callable[[TrainState, Any], dict], ts: TrainState, data: Arrays, batch_size: int
) -> dict[str, float]:
    """Metrics of ``data`` (all of it, the last batch may be smaller), weighted by batch size.

    Raises:
        TypeError: ``data`` not a pair of arrays, or non-floating ``x`` (see :func:`fit`).
        ValueError: lengths that differ, no examples, or a ``batch_size`` that is not >= 1.
    """
    x, y = checks.data_pair("evaluate", "data", data)
    batch_size = checks.count("evaluate", "batch_size", batch_size)
    totals: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        metrics = eval_step(ts, (x[i : i + batch_size], y[i : i + batch_size]))
        n = len(x[i : i + batch_size])
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * n
    return {k: v / len(x) for k, v in totals.items()}


def _nonfinite_loss(
    losses: Any,
    *,
    step_after: int,
    first: int,
    epoch: int,
    epochs: int,
    steps: int,
    mean_before: float | None,
    saved: str,
) -> NonFiniteLossError | None:
    """The error for the first non-finite loss of a chunk (None when every loss is finite)."""
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:  # finite losses whose sum overflowed
        return None
    j = int(bad[0])
    step, index, value = step_after - len(values) + j, first + j, float(values[j])
    before = ", ".join(f"{v:.4g}" for v in values[max(0, j - 3) : j])
    if before:
        before = f", after losses {before}"
    elif mean_before is not None:
        before = f", after a mean loss of {mean_before:.4g} over the epoch's earlier steps"
    return NonFiniteLossError(
        f"fit: the training loss is {value} at global step {step + 1} (epoch {epoch + 1}/"
        f"{epochs}, step {index + 1}/{steps} of the epoch; counted from 1)"
        + before
        + f". Training stopped; nothing of this chunk was checkpointed{saved}. Likely causes: "
        "a learning rate too high (try one 10x lower), NaN/inf in the data (check "
        "np.isfinite(x).all()), or an operation such as log(0) or x / 0 in the loss or a "
        'layer; jax.config.update("jax_debug_nans", True) raises at the first operation that '
        "makes a NaN. Pass stop_on_nonfinite=False to train on regardless",
        step=step,
        epoch=epoch,
        index=index,
        loss=value,
    )


def _validated(validate: ValidateFn, ts: TrainState) -> dict[str, float]:
    """``validate(ts)`` as ``{"val_<name>": float}``; it must return a mapping of scalars."""
    got = validate(ts)
    if not isinstance(got, Mapping):
        raise TypeError(
            f"fit: validate must return a mapping {{name: scalar}}, got a {type(got).__name__}"
        )
    shapes = {k: np.shape(v) for k, v in got.items() if np.ndim(v) != 0}
    if shapes:
        raise ValueError(f"fit: validate returned non-scalar values {shapes}: return scalars")
    return {f"val_{k}": float(v) for k, v in got.items()}


#: ``run(ts, start, num_steps) -> (ts, metrics stacked per step)``: steps ``start ..
#: start+num_steps`` of one epoch, called for consecutive chunks.
ChunkRunner = Callable[[TrainState, int, int], tuple[TrainState, dict]]


def _device_epochs(
    fns: Steps, train: Arrays, shuffle: jax.Array
) -> Callable[[int, int], ChunkRunner]:
    """Chunks of the on-device loop: ``fns.run_epoch`` over data placed once."""
    if fns.run_epoch is None:
        raise ValueError("fit: the step factory gives no run_epoch; pass on_device=False")
    run_epoch = fns.run_epoch
    images, labels = fns.place_data(train)

    def epoch_runner(epoch: int, index: int) -> ChunkRunner:
        del index  # run_epoch takes every chunk's start

        def run(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict]:
            return run_epoch(
                ts, images, labels, epoch, data_rng=shuffle, start=start, num_steps=num_steps
            )

        return run

    return epoch_runner


def _host_epochs(
    fns: Steps, train: Arrays, shuffle: jax.Array, batch_size: int, prefetch: int
) -> Callable[[int, int], ChunkRunner]:
    """Chunks of the host loop: ``fns.train_step`` per batch of :func:`jcnn.data.batches`."""
    if fns.train_step is None:
        raise ValueError("fit: the step factory gives no train_step; pass on_device=True")
    train_step = fns.train_step
    x, y = train
    steps = len(x) // batch_size
    local = len(range(batch_size)[fns.batch_rows])  # rows of each batch this process loads

    def epoch_runner(epoch: int, index: int) -> ChunkRunner:
        perm = np.asarray(epoch_permutation(shuffle, epoch, len(x)))
        # Step i trains on perm[i*B:(i+1)*B] (as run_epoch does); this process loads its rows.
        order = perm[: steps * batch_size].reshape(steps, batch_size)[:, fns.batch_rows]
        it: Iterator[Any] = batches(
            x, y, local, order=order.reshape(-1), start=index, put=fns.place_data, prefetch=prefetch
        )

        def run(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict]:
            del start  # the iterator started at the epoch's first step and follows the chunks
            per_step = []
            for _ in range(num_steps):
                ts, metrics = train_step(ts, next(it))
                per_step.append(metrics)
            return ts, jax.tree.map(lambda *v: jnp.stack(v), *per_step)

        return run

    return epoch_runner


def _validate_val(fns: Steps, val: Arrays, batch_size: int) -> ValidateFn:
    """The default validation: ``fns.eval_step`` over ``val`` (see :func:`evaluate`)."""
    eval_step = fns.eval_step
    if eval_step is None:
        raise ValueError("fit: val needs an eval_step; the step factory gives none")
    return lambda ts: evaluate(eval_step, ts, val, batch_size)


def fit(
    layer: Layer,
    train: Arrays,
    *,
    val: Arrays | None = None,
    optimizer: optax.GradientTransformation | None = None,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = softmax_cross_entropy,
    metrics_fn: MetricsFn = default_metrics,
    epochs: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    on_device: bool = True,
    frozen: Sequence[str] = (),
    train_state: TrainState | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    transform: Transform | None = None,
    eval_batch_size: int = 1000,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
    steps: StepFactory = default_steps,
    validate: ValidateFn | None = None,
    on_chunk_end: Callable[[Chunk], None] | None = None,
    log_every: int | None = None,
    prefetch: int = 2,
    stop_on_nonfinite: bool = True,
) -> FitResult:
    """Trains ``layer`` on ``train = (images, labels)`` for ``epochs`` epochs.

    The data are checked before anything is compiled, each set in one pass on the host:

    * ``x`` and ``y`` are arrays (NumPy, memory maps or JAX) of the same, non-zero length, and
      ``val``'s examples have the shape of ``train``'s.
    * ``x`` is floating-point: integer images (raw ``uint8`` pixels) are refused, since Conv and
      Dense would compute in integers. Convert them first: ``x.astype(np.float32) / 255`` (or
      ``jcnn.data.normalize(x)``).
    * With a loss of integer class labels (:func:`jcnn.losses.takes_integer_labels`, such as
      the default :func:`jcnn.losses.softmax_cross_entropy`), ``y`` is ``(N,)`` integers in
      ``[0, K)``, K the size of the network's output ``layer.output_shape(example_shape) ==
      (K,)``. Float labels are refused: cast them with ``y.astype(np.int32)``.
    * With ``stop_on_nonfinite`` (default), every value of ``x`` (and of a float ``y``) is
      finite, and training stops with a :class:`NonFiniteLossError` after the first chunk of
      steps in which a training loss is NaN or inf (read from the per-step losses each chunk
      brings back anyway; the chunk is not checkpointed).

    Args:
        layer: the network (per-example ``Layer``).
        train: ``(x, y)`` arrays, ``x: (N, *example_shape)`` floating-point (see above).
        val: optional ``(x, y)`` evaluated after each epoch with ``train=False``.
        optimizer: any optax optimiser, schedules included (default ``adam(1e-3)``), called:
            ``optax.adam(1e-3)``, not ``optax.adam``.
        loss_fn, metrics_fn: ``loss_fn(outputs, y)``, a floating scalar; ``metrics_fn(outputs,
            y) -> {name: scalar}``, extra metrics (default accuracy).
        epochs, batch_size, seed: the run; each epoch drops its last partial batch.
        on_device: ``True`` runs each epoch as one compiled ``lax.scan`` over data resident on
            the device; ``False`` runs one compiled call per step with host batches prefetched.
            Both give the same result for the same seed (same permutations, same step keys).
        frozen: parameter path patterns to keep fixed (see :func:`jcnn.train.freeze`); each
            must match a parameter.
        train_state: start from this state instead of initialising (transfer learning); its
            ``opt_state`` must be ``optimizer``'s (unless ``frozen`` makes it afresh).
        checkpoint_dir: where to save; if it holds a checkpoint, training RESUMES from it:
            the state, the data position (same batches as an uninterrupted run) and the
            history so far (kept in the checkpoint's meta, so the returned history covers every
            epoch), saying so (:attr:`FitResult.resume_note`, printed when ``progress`` is on).
            A checkpoint of a finished run (``epochs`` epochs done) returns its state and
            history at once, training nothing; give more ``epochs`` to train on.
        checkpoint_every: save every N steps (and at the end of every epoch); default: each
            epoch. Needs ``checkpoint_dir``.
        keep_checkpoints: how many recent checkpoints to keep (at least 1).
        transform: ``transform(key, x_batch)`` applied to every training batch (augmentation).
        eval_batch_size: batch size of evaluation.
        progress: show a tqdm bar with loss and accuracy.
        on_epoch_end: called with ``(epoch, record)`` after each epoch (``epoch`` from 0,
            ``record`` the epoch's history entries); returning True stops training there.
        steps: the step factory, ``steps(StepSpec) -> Steps`` (module docstring).
        validate: ``validate(train_state) -> {name: scalar}`` after each epoch, recorded as
            ``val_<name>``; default: the eval step over ``val`` in batches of
            ``eval_batch_size`` (give ``val`` or ``validate``, not both).
        on_chunk_end: called with a :class:`Chunk` after every chunk of steps.
        log_every: steps per chunk (progress-bar update, ``on_chunk_end`` call; one compiled
            call of the on-device loop); chunks also end at checkpoints and epoch ends.
            Default: up to the next checkpoint or the end of the epoch.
        prefetch: host batches prepared ahead by a background thread (host loop); 0 prepares
            each batch when it is needed, in the calling thread.
        stop_on_nonfinite: check the data for NaN/inf up front and stop at the first
            non-finite training loss (above); False trains on regardless.

    Returns:
        :class:`FitResult` with the final state and ``history`` (lists per epoch: ``epoch``,
        ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``), and
        where it resumed from (``resumed_from``, ``resume_note``).

    Raises:
        ValueError: a count (``epochs``, ``batch_size``, ``eval_batch_size``,
            ``keep_checkpoints``, ``checkpoint_every``, ``log_every``, ``prefetch``) that is
            not an int >= 1 (``prefetch`` >= 0), fewer examples than ``batch_size``, lengths
            that differ, an empty set, ``val`` examples of another shape, labels outside
            ``[0, K)``, a NaN or inf in the data, ``checkpoint_every`` without
            ``checkpoint_dir``, ``transform`` with the host loop, both ``val`` and
            ``validate``, a ``train_state`` of another optimiser, or a factory without the
            loop asked for.
        TypeError: data that are not pairs of arrays, non-floating ``x``, non-integer labels
            for an integer-label loss, an optimiser that is not an optax transformation, a
            loss that is not a floating scalar.
        NonFiniteLossError: a NaN or inf training loss (``stop_on_nonfinite``).
    """
    compile_cache.enable()  # the persistent XLA cache: a rerun loads its compiled steps
    epochs = checks.count("fit", "epochs", epochs)
    batch_size = checks.count("fit", "batch_size", batch_size)
    eval_batch_size = checks.count("fit", "eval_batch_size", eval_batch_size)
    keep_checkpoints = checks.count("fit", "keep_checkpoints", keep_checkpoints)
    checkpoint_every = checks.count("fit", "checkpoint_every", checkpoint_every, optional=True)
    log_every = checks.count("fit", "log_every", log_every, optional=True)
    prefetch = checks.count("fit", "prefetch", prefetch, minimum=0)
    if not is_int(seed):
        raise ValueError(f"fit: seed must be an int, got {seed!r} ({type(seed).__name__})")
    if checkpoint_every is not None and checkpoint_dir is None:
        raise ValueError(
            f"fit: checkpoint_every={checkpoint_every} but no checkpoint_dir, so nothing would "
            "be saved: give checkpoint_dir=... (or use log_every to cut the chunks)"
        )
    if optimizer is None:
        optimizer = optax.adam(1e-3)
    elif not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        name = getattr(optimizer, "__qualname__", None) or type(optimizer).__name__
        hint = (
            f": {name} looks like an optimiser factory; call it, e.g. optimizer=optax.adam(1e-3)"
            if callable(optimizer)
            else ""
        )
        raise TypeError(
            f"fit: optimizer must be an optax.GradientTransformation (with init and update), "
            f"got {optimizer!r}{hint}"
        )
    hooks = dict(
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        steps=steps,
        transform=transform,
        validate=validate,
        on_epoch_end=on_epoch_end,
        on_chunk_end=on_chunk_end,
    )
    for name, fn in hooks.items():
        if fn is not None and not callable(fn):
            raise TypeError(f"fit: {name} must be callable, got {fn!r}")
    if transform is not None and not on_device:
        raise ValueError("fit: transform is supported by the on-device loop only")
    if val is not None and validate is not None:
        raise ValueError("fit: give val (evaluated by the eval step) or validate, not both")

    train = x_train, y_train = checks.data_pair("fit", "train", train)
    n = len(x_train)
    steps_per_epoch = n // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"fit: {n} training examples are fewer than batch_size={batch_size}")
    example_shape = tuple(x_train.shape[1:])
    output = layer.output_shape(example_shape)  # a ShapeError now, by integer arithmetic
    sets = {"train": train}
    if val is not None:
        val = checks.data_pair("fit", "val", val)
        if tuple(val[0].shape[1:]) != example_shape:
            raise ValueError(
                f"fit: val examples have shape {tuple(val[0].shape[1:])} but train examples "
                f"{example_shape}: the network is built for the training examples' shape; give "
                "validation examples of that shape"
            )
        sets["val"] = val
    for name, (x, y) in sets.items():
        if takes_integer_labels(loss_fn):
            checks.check_class_labels("fit", name, y, output)
        if stop_on_nonfinite:
            checks.check_finite("fit", name, x, y)

    if train_state is None:
        ts = create_train_state(layer, example_shape, optimizer, seed=seed)
    else:
        checks.check_train_state(train_state, optimizer, frozen=bool(frozen))
        ts = train_state
    if frozen:
        optimizer = freeze(optimizer, ts.params, frozen)
        ts = ts._replace(opt_state=optimizer.init(ts.params))
    fns = steps(StepSpec(layer.apply, loss_fn, optimizer, metrics_fn, batch_size, transform))
    ts = fns.place_state(ts)  # the steps donate it: a copy (or a sharded copy) of the caller's
    if val is not None:
        validate = _validate_val(fns, val, eval_batch_size)

    ckpt = Checkpointer(checkpoint_dir, keep=keep_checkpoints) if checkpoint_dir else None
    start_epoch, start_index = 0, 0
    history: dict[str, list[float]] = {}
    resumed_from, note = None, ""
    partial: dict[str, Any] = {}  # sums of the epoch a mid-epoch checkpoint cut
    if ckpt is not None and ckpt.latest_step() is not None:
        resumed_from = ckpt.latest_step()
        ts, meta = ckpt.restore(ts)
        start_epoch, start_index = int(meta["epoch"]), int(meta["index"])
        history = {k: list(v) for k, v in meta.get("history", {}).items()}
        partial = meta.get("partial", {}) if start_index else {}
        note = _resume_note(
            int(resumed_from), start_epoch, start_index, epochs, steps_per_epoch, ckpt.directory
        )
        if progress:
            tqdm.write(note)
    if start_epoch >= epochs:  # a finished run, rerun: nothing to compile, place or train
        if ckpt is not None:
            ckpt.close()
        return FitResult(ts, history, resumed_from, note)
    shuffle = data_rng(seed)
    if on_device:
        epoch_runner = _device_epochs(fns, train, shuffle)
    else:
        epoch_runner = _host_epochs(fns, train, shuffle, batch_size, prefetch)
    periods = [p for p in (checkpoint_every, log_every) if p is not None]

    total = (epochs - start_epoch) * steps_per_epoch - start_index
    bar = tqdm(total=max(total, 0), disable=not progress, unit="step", dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, epochs):
            resumed = epoch == start_epoch and start_index > 0
            t0 = time.perf_counter() - (float(partial.get("seconds", 0.0)) if resumed else 0.0)
            sums: dict[str, float] = dict(partial.get("sums", {})) if resumed else {}
            index = start_index if epoch == start_epoch else 0
            counted = int(partial.get("steps", 0)) if resumed else 0
            run = epoch_runner(epoch, index)
            while index < steps_per_epoch:
                chunk = min([steps_per_epoch - index] + [p - index % p for p in periods])
                first = index
                ts, metrics = run(ts, index, chunk)
                checks.check_per_step(metrics, chunk)
                chunk_sums = {k: float(jnp.sum(v)) for k, v in metrics.items()}
                if stop_on_nonfinite and not math.isfinite(chunk_sums.get("loss", 0.0)):
                    latest = ckpt.latest_step() if ckpt is not None else None
                    saved = "" if latest is None else f" (the last saved is step {latest})"
                    error = _nonfinite_loss(
                        metrics["loss"],
                        step_after=int(ts.step),
                        first=first,
                        epoch=epoch,
                        epochs=epochs,
                        steps=steps_per_epoch,
                        mean_before=sums["loss"] / counted if counted else None,
                        saved=saved,
                    )
                    if error is not None:
                        raise error
                for k, v in chunk_sums.items():
                    sums[k] = sums.get(k, 0.0) + v
                index += chunk
                counted += chunk
                bar.update(chunk)
                bar.set_postfix(
                    epoch=epoch + 1, **{k: f"{v / counted:.4f}" for k, v in sums.items()}
                )
                done = index == steps_per_epoch
                at_checkpoint = checkpoint_every is not None and index % checkpoint_every == 0
                if ckpt is not None and at_checkpoint and not done:
                    partial = {"sums": sums, "steps": counted, "seconds": time.perf_counter() - t0}
                    meta = {"epoch": epoch, "index": index, "history": history, "partial": partial}
                    ckpt.save(int(ts.step), ts, meta=meta)
                if on_chunk_end is not None:
                    on_chunk_end(Chunk(epoch, first, chunk, int(ts.step), metrics, ts))
            record = {f"train_{k}": v / max(counted, 1) for k, v in sums.items()}
            if validate is not None:
                record.update(_validated(validate, ts))
            record["seconds"] = time.perf_counter() - t0
            history.setdefault("epoch", []).append(epoch + 1)
            for k, v in record.items():
                history.setdefault(k, []).append(v)
            if ckpt is not None:  # at the end of every epoch, with the epoch's history entry
                ckpt.save(
                    int(ts.step), ts, meta={"epoch": epoch + 1, "index": 0, "history": history}
                )
            if progress:
                bar.write(
                    f"epoch {epoch + 1}/{epochs}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "seconds")
                    + f" ({record['seconds']:.1f} s)"
                )
            if on_epoch_end is not None and on_epoch_end(epoch, record):
                break
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()  # also when a step raised: the checkpoints saved before it are kept
    return FitResult(ts, history, resumed_from, note)
