"""The Layer type: an ``(init, apply)`` pair with the same signatures for every layer.

::

    init(key, input_shape) -> (output_shape, params, state)
    apply(params, state, x, *, key=None, train=False) -> (y, new_state)

Shapes are per example and channels-last: ``(H, W, C)`` for images. Batching is ``jax.vmap``
(see :func:`jcnn.batched`). A ``Layer`` unpacks as a 2-tuple (``init, apply = layer``) and also
carries a name (used as its key inside combinators and in ``summary``) and, for combinators, its
children, so tools can walk a network without running it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from jcnn.shapes import ShapeError

Shape = tuple[int, ...]
Params = Any
State = Any
InitFn = Callable[..., tuple[Any, Params, State]]
ApplyFn = Callable[..., tuple[Any, State]]


class _Pair(NamedTuple):
    init: InitFn
    apply: ApplyFn


class Layer(_Pair):
    """A layer: ``NamedTuple(init, apply)`` plus a ``name`` and, for combinators, ``children``.

    Attributes:
        init: ``init(key, input_shape) -> (output_shape, params, state)``.
        apply: ``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``.
        name: key of this layer's params inside a parent combinator (``"Conv"`` unless renamed).
        children: ``((key, child), ...)`` for combinators; ``()`` for leaf layers.
        child_inputs: for combinators, ``input_shape -> [input_shape of each child]`` (summary).
        config: short description of the hyper-parameters, e.g. ``"8, (5, 5), stride=1"``.
        explicit_name: True when the user chose the name (kept verbatim as the params key).
        kind: what the layer is (``"Conv"``), whatever it is named.
        hparams: the normalised hyper-parameters of windowed layers (Conv, pools):
            ``kernel_size``, ``stride``, ``dilation`` (tuples) and ``padding`` (the raw spec),
            for tools such as the receptive-field calculator.
    """

    name: str
    children: tuple[tuple[str, Layer], ...]
    child_inputs: Callable[[Any], list[Any]] | None
    config: str
    explicit_name: bool
    kind: str
    hparams: dict[str, Any]

    def __new__(
        cls,
        init: InitFn,
        apply: ApplyFn,
        *,
        name: str = "Layer",
        children: Sequence[tuple[str, Layer]] = (),
        child_inputs: Callable[[Any], list[Any]] | None = None,
        config: str = "",
        explicit_name: bool = False,
        kind: str | None = None,
        hparams: dict[str, Any] | None = None,
    ) -> Layer:
        self = super().__new__(cls, init, apply)
        self.name = name
        self.kind = kind or name
        self.hparams = dict(hparams or {})
        self.explicit_name = explicit_name
        self.children = tuple(children)
        self.child_inputs = child_inputs
        self.config = config
        return self

    def named(self, name: str) -> Layer:
        """The same layer under another name (its params key in a parent combinator)."""
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"layer name must be a non-empty string without '/', got {name!r}")
        return self.replace(name=name, explicit_name=True)

    def replace(
        self, *, init: InitFn | None = None, apply: ApplyFn | None = None, **metadata: Any
    ) -> Layer:
        """A copy with new ``init``/``apply`` functions or metadata, keeping everything else.

        Wrappers (remat, precision policies, inference mode) use it so that the wrapped layer keeps
        its name, kind, children and hyper-parameters, hence the same params tree and summary.
        """
        fields = {
            "name": self.name,
            "children": self.children,
            "child_inputs": self.child_inputs,
            "config": self.config,
            "explicit_name": self.explicit_name,
            "kind": self.kind,
            "hparams": self.hparams,
        }
        fields.update(metadata)
        return Layer(init or self.init, apply or self.apply, **fields)

    def __repr__(self) -> str:
        return f"{self.kind}({self.config})"


def layer_error(layer: str, input_shape: Any, message: str) -> ShapeError:
    """A ShapeError whose message starts with the layer and the input shape it was given."""
    return ShapeError(f"{layer}: input shape {tuple(input_shape)}: {message}")


def check_rank(layer: str, shape: Sequence[int], rank: int, layout: str) -> None:
    """Raises unless ``shape`` has ``rank`` dims (one example, no batch axis)."""
    if len(shape) != rank:
        raise layer_error(
            layer,
            shape,
            f"expected rank {rank} {layout} for ONE example (batch with jcnn.batched / vmap), "
            f"got rank {len(shape)}",
        )


def check_key(layer: str, key: jax.Array | None, train: bool) -> None:
    """Raises ValueError when a random layer runs in train mode without a PRNG key."""
    if train and key is None:
        raise ValueError(
            f"{layer}: train=True needs a PRNG key: call apply(..., key=key, train=True)"
        )


def split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    """``n`` independent keys, or ``n`` Nones when no key is given."""
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


def per_channel(v: jax.Array, ndim: int) -> jax.Array:
    """A ``(C,)`` vector reshaped to ``(1, ..., 1, C)`` of rank ``ndim``: explicit broadcasting
    over the channels-last axis (jcnn runs clean under ``jax_numpy_rank_promotion="raise"``)."""
    return v.reshape((1,) * (ndim - 1) + v.shape)


def shape_of(x: Any) -> Any:
    """Python shape tuple(s) of an array or a tuple of arrays (combinator inputs)."""
    if isinstance(x, (tuple, list)):
        return tuple(shape_of(v) for v in x)
    return tuple(x.shape)
