"""Pooling over the spatial axes of one example ``(*spatial, C)``, each channel separately.

The number of spatial dims is ``len(window)`` (an int window means 2-D). Stride defaults to the
window (non-overlapping pooling, as in PyTorch and Flux). Output sizes come from
:func:`jcnn.shapes.conv_output_size` with dilation 1.

Adaptive pools (:func:`AdaptiveAvgPool`, :func:`AdaptiveMaxPool`) fix the OUTPUT size instead and
take PyTorch's windows for whatever input they get (:func:`jcnn.shapes.adaptive_windows`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax.numpy as jnp
import numpy as np
from jax import lax

from jcnn.layers import lowering as lowerings
from jcnn.layers import shapes
from jcnn.layers.core import Fns, Layer, Window, check_rank, layer_error, leaf, parameter_free


def _check_windows_touch_input(
    kind: str,
    input_shape: Any,
    win: tuple[int, ...],
    strides: tuple[int, ...],
    pads: Any,
    out: tuple[int, ...],
) -> None:
    """Raises when a window lies wholly in the padding (its max would be -inf, its count-free
    average 0/0). Windows move monotonically, so checking the first and the last suffices."""
    for axis, (n, k, s, (lo, hi), o) in enumerate(zip(input_shape, win, strides, pads, out)):
        if lo >= k or (o - 1) * s - lo >= n:
            raise layer_error(
                kind,
                input_shape,
                f"padding {(lo, hi)} on spatial dim {axis} puts whole windows of size {k} in the "
                f"padding (no input cell to pool): use padding below the window on each side "
                f"(PyTorch allows at most {k // 2})",
            )


def _pool_fns(layer: Layer, reduce: Callable[..., jnp.ndarray]) -> Fns:
    hp, kind = layer.hparams, layer.kind
    win, strides, padding = hp["window"], hp["stride"], hp["padding"]
    rank = len(win)
    ones = (1,) * rank

    def geometry(input_shape):
        check_rank(kind, input_shape, rank + 1, "(*spatial, C)")
        pads = shapes.resolve_padding(padding, input_shape[:-1], win, strides, ones)
        try:
            out = shapes.conv_output_shape(input_shape[:-1], win, strides, pads, ones)
        except shapes.ShapeError as err:
            raise layer_error(kind, input_shape, str(err)) from None
        _check_windows_touch_input(kind, input_shape, win, strides, pads, out)
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
    rule: Callable[[Layer], Fns],
    kind: str,
    window: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: shapes.PaddingLike,
    **extra: Any,
) -> Layer:
    win = shapes.as_window(window, f"{kind} window")
    rank = len(win)
    strides = win if stride is None else shapes.as_tuple(stride, rank, f"{kind} stride")
    shapes.check_positive(strides, f"{kind} stride")
    ones = (1,) * rank
    if not isinstance(padding, str):
        shapes.resolve_padding(padding, (0,) * rank, win, strides, ones)  # validate now
    hparams = {"window": win, "stride": strides, "padding": padding, **extra}
    return leaf(rule, kind, hparams, window=Window(win, strides, ones, padding))


def _max_reduce(hp, x, dims, strides, pads):
    return lowerings.max_pool(x, dims[:-1], strides[:-1], pads[:-1], lowering=hp["lowering"])


def _sum_reduce(hp, x, dims, strides, pads):
    return lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)


def _avg_reduce(hp, x, dims, strides, pads):
    total = lax.reduce_window(x, 0.0, lax.add, dims, strides, pads)
    if hp["count_include_pad"]:
        return total / shapes.flat_size(dims)
    cells = jnp.ones(x.shape[:-1] + (1,), x.dtype)
    count = lax.reduce_window(cells, 0.0, lax.add, dims, strides, pads)
    return total / count


def _max_pool_rule(layer: Layer) -> Fns:
    return _pool_fns(layer, _max_reduce)


def _sum_pool_rule(layer: Layer) -> Fns:
    return _pool_fns(layer, _sum_reduce)


def _avg_pool_rule(layer: Layer) -> Fns:
    return _pool_fns(layer, _avg_reduce)


def MaxPool(
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: shapes.PaddingLike = "VALID",
    lowering: str = "auto",
) -> Layer:
    """Maximum over sliding windows; padded cells are ``-inf`` (never selected).

    ``lowering`` picks how the gradient is formed: ``"auto"`` (default: ``"mask"`` in a program
    lowered for CPU, ``"native"`` for GPU/TPU, decided when the program is lowered), ``"native"``
    or ``"mask"`` (non-overlapping windows only, else native). Forward values, and the
    gradient's routing to the first maximum of each window, are the same in all (see
    :mod:`jcnn.lowering`).

    Shapes:
        x: ``(*spatial, C)`` -> y: ``(*spatial', C)``,
        ``spatial'[i] = conv_output_size(spatial[i], window[i], stride[i], pads[i])``.

    Example:
        >>> MaxPool(2).init(None, (26, 26, 8))[0]
        (13, 13, 8)
    """

    lowerings.check_lowering(lowering, lowerings.POOL_LOWERINGS, "MaxPool")
    return _pool(_max_pool_rule, "MaxPool", window, stride, padding, lowering=lowering)


def SumPool(
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: shapes.PaddingLike = "VALID",
) -> Layer:
    """Sum over sliding windows (padded cells are zeros). Shapes as :func:`MaxPool`."""

    return _pool(_sum_pool_rule, "SumPool", window, stride, padding)


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

    return _pool(
        _avg_pool_rule, "AvgPool", window, stride, padding, count_include_pad=count_include_pad
    )


def _pad_with(x, value, pads):
    """``lax.pad(x, value, pads)`` built by concatenating ``value`` blocks (the same array;
    converters such as jax2onnx lower a concatenation under a symbolic batch, not a pad); a
    negative (cropping) pad keeps ``lax.pad``."""
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        return lax.pad(x, value, [(lo, hi, 0) for lo, hi in pads])
    for axis, (lo, hi) in enumerate(pads):
        before, after = x.shape[:axis], x.shape[axis + 1 :]
        # no empty blocks: jax2onnx mis-declares a concatenation that has one
        low = [jnp.full((*before, lo, *after), value, x.dtype)] if lo else []
        high = [jnp.full((*before, hi, *after), value, x.dtype)] if hi else []
        if low or high:
            x = jnp.concatenate([*low, x, *high], axis=axis)
    return x


def _generic_reduce(hp, x, dims, strides, pads):
    """``lax.reduce_window(x, init, reduce_fn, ...)`` as a fold of ``prod(window)`` strided
    slices of the padded input: the same values, and reverse-differentiable (``reduce_window``
    with a generic function is not)."""
    init = jnp.asarray(hp["init_value"], x.dtype)
    padded = _pad_with(x, init, pads)
    out = [(n - k) // s + 1 for n, k, s in zip(padded.shape, dims, strides)]
    y = jnp.full(out, init)
    for tap in itertools.product(*(range(k) for k in dims)):
        end = [t + (o - 1) * s + 1 for t, o, s in zip(tap, out, strides)]
        y = hp["reduce_fn"](y, lax.slice(padded, tap, end, strides))
    return y


def _generic_pool_rule(layer: Layer) -> Fns:
    return _pool_fns(layer, _generic_reduce)


def Pool(
    reduce_fn: Callable[[Any, Any], Any],
    init_value: float,
    window: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: shapes.PaddingLike = "VALID",
) -> Layer:
    """Pooling with any reduction: ``reduce_fn`` folds each window, starting from ``init_value``,
    as ``lax.reduce_window`` and Flax's ``nn.pooling.pool(x, init_value, reduce_fn, window,
    strides, padding)``. Computed as a fold over the window's taps (``prod(window)`` strided
    slices), so unlike a generic ``lax.reduce_window`` it has reverse-mode gradients.

    Args:
        reduce_fn: an associative, commutative binary function of two arrays (``lax.mul``,
            ``lax.min``, ``lax.max``, ``lax.add``, ...); XLA may fold a window in any order.
        init_value: the identity of ``reduce_fn`` (``1`` for a product, ``inf`` for a minimum);
            padded cells hold it, so they do not change a window's result. Cast to the input's
            dtype.
        window, stride, padding: as :func:`MaxPool` (stride defaults to the window).

    Shapes:
        as :func:`MaxPool`.

    Raises:
        TypeError: ``reduce_fn`` not callable or ``init_value`` not a real number (at
            construction).

    Example:
        >>> x = jnp.arange(1.0, 7.0).reshape(6, 1)
        >>> Pool(lax.mul, 1.0, (2,)).apply({}, {}, x)[0][:, 0]  # products of [1 2] [3 4] [5 6]
        Array([ 2., 12., 30.], dtype=float32)
        >>> Pool(lax.min, float("inf"), (3,), stride=1).apply({}, {}, -x)[0][:, 0]
        Array([-3., -4., -5., -6.], dtype=float32)
    """
    if not callable(reduce_fn):
        raise TypeError(
            f"Pool: reduce_fn={reduce_fn!r} is not callable; expected a binary reduction such "
            "as jax.lax.mul or jax.lax.min (with its identity as init_value)"
        )
    if isinstance(init_value, bool) or not isinstance(init_value, int | float | np.number):
        raise TypeError(
            f"Pool: init_value={init_value!r} ({type(init_value).__name__}) is not a real "
            "number; expected the identity of reduce_fn, e.g. 1.0 for lax.mul, "
            "float('inf') for lax.min"
        )
    return _pool(
        _generic_pool_rule,
        "Pool",
        window,
        stride,
        padding,
        reduce_fn=reduce_fn,
        init_value=init_value,
    )


def _global_avg_rule(layer: Layer) -> Fns:
    return _global_fns(layer, jnp.mean)


def _global_max_rule(layer: Layer) -> Fns:
    return _global_fns(layer, jnp.max)


def _global_fns(layer: Layer, reduce: Callable[..., jnp.ndarray]) -> Fns:
    kind = layer.kind

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
    return leaf(_global_avg_rule, "GlobalAvgPool")


def GlobalMaxPool() -> Layer:
    """Maximum over all spatial positions. Shapes: ``(*spatial, C) -> (C,)``."""
    return leaf(_global_max_rule, "GlobalMaxPool")


# ---------------------------------------------------------------------------------------------
# Adaptive pooling
# ---------------------------------------------------------------------------------------------


def _along(ndim: int, axis: int, size: int) -> tuple[int, ...]:
    """``(1, ..., size, ..., 1)``: a window or shape that is ``size`` on ``axis`` only."""
    return tuple(size if a == axis else 1 for a in range(ndim))


def _adaptive_axis(x: jnp.ndarray, axis: int, out: int, is_max: bool) -> jnp.ndarray:
    """Adaptive pooling of ``x`` along one ``axis`` to ``out`` cells (PyTorch's windows).

    Equal windows (``out`` divides the size) are one non-overlapping ``reduce_window``; unequal
    ones are, per distinct window length ``L``, a stride-1 ``reduce_window`` of length ``L``
    whose results at the windows' starts are taken with constant indices. Max gradients go to
    the first maximum of each window (as ``MaxPool`` and PyTorch route them).
    """
    n = x.shape[axis]
    if n == out:
        return x
    init, op = (-jnp.inf, lax.max) if is_max else (0.0, lax.add)
    ones = (1,) * x.ndim
    if n % out == 0:
        k = _along(x.ndim, axis, n // out)
        y = lax.reduce_window(x, init, op, k, k, "VALID")
        return y if is_max else y / (n // out)
    windows = shapes.adaptive_windows(n, out)
    lengths = sorted({end - start for start, end in windows})
    offset = dict(zip(lengths, np.cumsum([0] + [n - w + 1 for w in lengths[:-1]]).tolist()))
    runs = [lax.reduce_window(x, init, op, _along(x.ndim, axis, w), ones, "VALID") for w in lengths]
    index = np.asarray([offset[end - start] + start for start, end in windows], np.int32)
    y = jnp.take(jnp.concatenate(runs, axis), index, axis=axis, mode="clip")
    if is_max:
        return y
    counts = np.asarray([end - start for start, end in windows], np.float64)
    return y / jnp.asarray(counts.reshape(_along(x.ndim, axis, out)), y.dtype)


def _adaptive_avg_rule(layer: Layer) -> Fns:
    return _adaptive_fns(layer, is_max=False)


def _adaptive_max_rule(layer: Layer) -> Fns:
    return _adaptive_fns(layer, is_max=True)


def _adaptive_fns(layer: Layer, *, is_max: bool) -> Fns:
    kind, size = layer.kind, layer.hparams["output_size"]
    rank = len(size)

    def output_shape(input_shape):
        if len(input_shape) != rank + 1:
            raise layer_error(
                kind,
                input_shape,
                f"expected rank {rank + 1} (*spatial, C) for ONE example, as output_size {size} "
                f"is {rank}-D (an int output_size means 2-D; give one size per spatial dim); got "
                f"rank {len(input_shape)} (batch with jcnn.batched / vmap)",
            )
        if any(n < 1 for n in input_shape[:-1]):
            raise layer_error(kind, input_shape, "every spatial size must be >= 1 to pool")
        return (*size, input_shape[-1])

    def forward(x):
        out_shape = output_shape(x.shape)
        y = x
        for axis in reversed(range(rank)):  # last axis first: max ties go to the row-major first
            y = _adaptive_axis(y, axis, size[axis], is_max)
        chex.assert_shape(y, out_shape)
        return y

    return parameter_free(output_shape, forward)


def _adaptive(rule: Callable[[Layer], Fns], kind: str, output_size: int | Sequence[int]) -> Layer:
    rank = len(output_size) if isinstance(output_size, Sequence) else 2  # else: an int (2-D)
    if rank < 1:
        raise shapes.ShapeError(f"{kind} output_size needs at least one spatial dim, got ()")
    size = shapes.as_tuple(output_size, rank, f"{kind} output_size")
    shapes.check_positive(size, f"{kind} output_size")
    return leaf(rule, kind, {"output_size": size})


def AdaptiveAvgPool(output_size: int | Sequence[int]) -> Layer:
    """Mean over PyTorch's adaptive windows: any input size to a fixed ``output_size``.

    Output cell ``i`` of a dim of size ``n`` averages the input cells
    ``floor(i*n/o) <= j < ceil((i+1)*n/o)`` (:func:`jcnn.shapes.adaptive_windows`), per spatial
    dim, as ``torch.nn.AdaptiveAvgPool{1,2,3}d``: equal windows when ``o`` divides ``n``,
    unequal and possibly overlapping ones otherwise, repeated cells when ``o > n``, the identity
    when ``o == n``. The windows depend on the input, so the layer states ``window=None`` (the
    receptive-field walk stops at it). No parameters.

    Args:
        output_size: one int per spatial dim; an int ``o`` means 2-D ``(o, o)``.

    Shapes:
        x: ``(*spatial, C)`` with ``len(spatial) == len(output_size)`` -> y: ``(*output_size, C)``.

    Raises:
        ShapeError: output sizes < 1 (at construction); an input of another rank or with an
            empty spatial dim (at init / apply).

    Example:
        >>> pool = AdaptiveAvgPool((7, 7))
        >>> pool.output_shape((2, 2, 512)), pool.output_shape((14, 9, 512))
        ((7, 7, 512), (7, 7, 512))
        >>> x = jnp.arange(5.0).reshape(5, 1)   # windows [0, 2), [1, 4), [3, 5)
        >>> AdaptiveAvgPool((3,)).apply({}, {}, x)[0][:, 0]
        Array([0.5, 2. , 3.5], dtype=float32)
    """
    return _adaptive(_adaptive_avg_rule, "AdaptiveAvgPool", output_size)


def AdaptiveMaxPool(output_size: int | Sequence[int]) -> Layer:
    """Maximum over PyTorch's adaptive windows (``torch.nn.AdaptiveMaxPool{1,2,3}d``).

    Windows as :func:`AdaptiveAvgPool`; the gradient of each window goes to its first maximum in
    row-major order (as ``MaxPool`` and PyTorch route it). No parameters.

    Args:
        output_size: one int per spatial dim; an int ``o`` means 2-D ``(o, o)``.

    Shapes:
        x: ``(*spatial, C)`` with ``len(spatial) == len(output_size)`` -> y: ``(*output_size, C)``.

    Raises:
        ShapeError: as :func:`AdaptiveAvgPool`.

    Example:
        >>> x = jnp.asarray([3.0, 1.0, 4.0, 1.0, 5.0]).reshape(5, 1)
        >>> AdaptiveMaxPool((3,)).apply({}, {}, x)[0][:, 0]
        Array([3., 4., 5.], dtype=float32)
    """
    return _adaptive(_adaptive_max_rule, "AdaptiveMaxPool", output_size)
