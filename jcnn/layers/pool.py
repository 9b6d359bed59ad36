"""Pooling over the spatial axes of one example ``(*spatial, C)``, each channel separately.

The number of spatial dims is ``len(window)`` (an int window means 2-D). Stride defaults to the
window (non-overlapping pooling, as in PyTorch and Flux). Output sizes come from
:func:`jcnn.shapes.conv_output_size` with dilation 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax.numpy as jnp
from jax import lax

from jcnn import lowering as lowerings
from jcnn import shapes
from jcnn.layers.core import Fns, Layer, Window, check_rank, layer_error, leaf, parameter_free


def _pool_rule(layer: Layer) -> Fns:
    hp, kind = layer.hparams, layer.kind
    win, strides, padding = hp["window"], hp["stride"], hp["padding"]
    rank = len(win)
    ones = (1,) * rank
    reduce = _REDUCERS[kind]

    def geometry(input_shape):
        check_rank(kind, input_shape, rank + 1, "(*spatial, C)")
        pads = shapes.resolve_padding(padding, input_shape[:-1], win, strides, ones)
        try:
            out = shapes.conv_output_shape(input_shape[:-1], win, strides, pads, ones)
        except shapes.ShapeError as err:
            raise layer_error(kind, input_shape, str(err)) from None
        return pads, (*out, input_shape[-1])

    def init(key, input_shape):
        del key
        return geometry(input_shape)[1], {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        pads, out_shape = geometry(x.shape)
        y = reduce(hp, x, (*win, 1), (*strides, 1), (*pads, (0, 0)))
        chex.assert_shape(y, out_shape)
        return y, state

    return Fns(init, apply, lambda input_shape: geometry(input_shape)[1])


def _pool(
    kind: str,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: shapes.PaddingLike,
    **extra: Any,
) -> Layer:
    rank = 2 if isinstance(window, int) else len(tuple(window))
    win = shapes.as_tuple(window, rank, f"{kind} window")
    strides = win if stride is None else shapes.as_tuple(stride, rank, f"{kind} stride")
    shapes.check_positive(win, f"{kind} window")
    shapes.check_positive(strides, f"{kind} stride")
    ones = (1,) * rank
    if not isinstance(padding, str):
        shapes.resolve_padding(padding, (0,) * rank, win, strides, ones)  # validate now
    hparams = {"window": win, "stride": strides, "padding": padding, **extra}
    return leaf(_pool_rule, kind, hparams, window=Window(win, strides, ones, padding))


def _max_reduce(hp, x, dims, strides, pads):
    chosen = lowerings.resolve_pool_lowering(hp["lowering"], dims[:-1], strides[:-1])
    if chosen == "native":
        return lax.reduce_window(x, -jnp.inf, lax.max, dims, strides, pads)
    return lowerings.max_pool(x, dims[:-1], strides[:-1], pads[:-1], lowering=chosen)


def _sum_reduce(hp, x, dims, strides, pads):
    return lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)


def _avg_reduce(hp, x, dims, strides, pads):
    total = lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)
    if hp["count_include_pad"]:
        return total / shapes.flat_size(dims)
    cells = jnp.ones(x.shape[:-1] + (1,), x.dtype)
    count = lax.reduce_window(cells, 0.0, lax.add, dims, strides, pads)
    return total / count


_REDUCERS: dict[str, Callable[..., jnp.ndarray]] = {
    "MaxPool": _max_reduce,
    "SumPool": _sum_reduce,
    "AvgPool": _avg_reduce,
}


def MaxPool(
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: shapes.PaddingLike = "VALID",
    lowering: str = "auto",
) -> Layer:
    """Maximum over sliding windows; padded cells are ``-inf`` (never selected).

    ``lowering`` picks how the gradient is formed: ``"auto"`` (default: per backend),
    ``"native"`` or ``"mask"`` (non-overlapping windows only, else native). Forward values,
    and the gradient's routing to the first maximum of each window, are the same in all (see
    :mod:`jcnn.lowering`).

    Shapes:
        x: ``(*spatial, C)`` -> y: ``(*spatial', C)``,
        ``spatial'[i] = conv_output_size(spatial[i], window[i], stride[i], pads[i])``.

    Example:
        >>> MaxPool(2).init(None, (26, 26, 8))[0]
        (13, 13, 8)
    """

    lowerings.check_lowering(lowering, lowerings.POOL_LOWERINGS, "MaxPool")
    return _pool("MaxPool", window, stride, padding, lowering=lowering)


def SumPool(
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: shapes.PaddingLike = "VALID",
) -> Layer:
    """Sum over sliding windows (padded cells are zeros). Shapes as :func:`MaxPool`."""

    return _pool("SumPool", window, stride, padding)


def AvgPool(
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: shapes.PaddingLike = "VALID",
    count_include_pad: bool = True,
) -> Layer:
    """Mean over sliding windows.

    Args:
        window, stride, padding: as :func:`MaxPool`.
        count_include_pad: ``True`` (default, as PyTorch and Flax) divides every window sum by
            ``prod(window)``, counting padded zeros; ``False`` divides by the number of real
            (unpadded) cells in each window (TensorFlow's SAME average pooling).

    Shapes:
        as :func:`MaxPool`.
    """

    return _pool("AvgPool", window, stride, padding, count_include_pad=count_include_pad)


def _global_rule(layer: Layer) -> Fns:
    kind = layer.kind
    reduce = jnp.mean if kind == "GlobalAvgPool" else jnp.max

    def output_shape(input_shape):
        if len(input_shape) < 2:
            raise layer_error(kind, input_shape, "expected (*spatial, C) with >= 1 spatial dim")
        return (input_shape[-1],)

    def forward(x):
        output_shape(x.shape)
        return reduce(x, axis=tuple(range(x.ndim - 1)))

    return parameter_free(output_shape, forward)


def GlobalAvgPool() -> Layer:
    """Mean over all spatial positions. Shapes: ``(*spatial, C) -> (C,)``."""
    return leaf(_global_rule, "GlobalAvgPool")


def GlobalMaxPool() -> Layer:
    """Maximum over all spatial positions. Shapes: ``(*spatial, C) -> (C,)``."""
    return leaf(_global_rule, "GlobalMaxPool")
