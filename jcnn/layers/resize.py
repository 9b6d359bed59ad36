"""Resizing layers: ``Upsample`` (nearest or (bi/tri)linear, PyTorch's ``align_corners=False``)
and ``PixelShuffle`` (sub-pixel convolution's rearrangement), channels last.

Neither is pointwise (an output position reads a neighbourhood of a smaller input) nor a
:class:`~jcnn.layers.core.Window` of its input, so the receptive-field walk stops at them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jcnn.layers import shapes
from jcnn.layers.core import Fns, Layer, check_floating, check_rank, layer_error, leaf

#: Upsample modes and the number of spatial dims each takes (``None``: any).
_MODES = {"nearest": None, "linear": 1, "bilinear": 2, "trilinear": 3}


def Upsample(scale_factor: int | Sequence[int], mode: str = "nearest") -> Layer:
    """Upsampling by integer factors, as ``torch.nn.Upsample(scale_factor, mode)`` with
    ``align_corners=False`` (torch's default).

    ``"nearest"`` repeats each value ``s`` times along each spatial axis (torch's
    ``floor(dst / s)`` source index). ``"linear"``, ``"bilinear"`` and ``"trilinear"`` (1, 2, 3
    spatial dims, as torch) interpolate separably between the two nearest inputs at the source
    coordinate ``(dst + 0.5) / s - 0.5``, clamped to the edges.

    Args:
        scale_factor: a positive int for every spatial axis, or one per spatial axis.
        mode: ``"nearest"`` (default), ``"linear"``, ``"bilinear"`` or ``"trilinear"``.

    Shapes:
        ``(*spatial, C) -> (*(n * s for n, s in zip(spatial, scale)), C)``.

    Raises:
        ValueError: a non-positive or non-integer factor, or an unknown mode.
        ShapeError: an input of the wrong rank for the mode or the factors.

    Example:
        >>> up = Upsample(2, mode="bilinear")
        >>> up.output_shape((3, 5, 8))
        (6, 10, 8)
        >>> Upsample(2).apply({}, {}, jnp.array([[[1.0], [2.0]]]))[0][..., 0].tolist()
        [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]
    """
    if mode not in _MODES:
        raise ValueError(f"Upsample mode must be one of {tuple(_MODES)}, got {mode!r}")
    factor: int | tuple[int, ...]
    if isinstance(scale_factor, Sequence) and not isinstance(scale_factor, str):
        factor = tuple(shapes.positive_int(s, "Upsample scale_factor") for s in scale_factor)
        if not factor:
            raise ValueError("Upsample scale_factor: give one int per spatial dim, got ()")
    else:
        factor = shapes.positive_int(scale_factor, "Upsample scale_factor")
    return leaf(_upsample_rule, "Upsample", {"scale_factor": factor, "mode": mode})


def _factors(scale_factor: Any, mode: str, input_shape: Any) -> tuple[int, ...]:
    """The factor of each spatial axis of ``input_shape``, after the rank checks."""
    dims = _MODES[mode]
    if isinstance(scale_factor, tuple):
        dims = len(scale_factor) if dims is None else dims
        if len(scale_factor) != dims:
            raise layer_error(
                "Upsample",
                input_shape,
                f"mode={mode!r} takes {dims} spatial dims but scale_factor {scale_factor} has "
                f"{len(scale_factor)}",
            )
    if dims is None:
        if len(input_shape) < 2:
            raise layer_error("Upsample", input_shape, "expected (*spatial, C), channels last")
        dims = len(input_shape) - 1
    check_rank("Upsample", input_shape, dims + 1, f"(*{dims} spatial dims, C) for mode={mode!r}")
    return scale_factor if isinstance(scale_factor, tuple) else (scale_factor,) * dims


def _linear_axis(x: jnp.ndarray, axis: int, s: int) -> jnp.ndarray:
    """Linear interpolation along ``axis`` by ``s``, torch's ``align_corners=False``."""
    n = x.shape[axis]
    src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0.0)
    lo = np.floor(src).astype(np.int32)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = n * s
    lam = jnp.asarray((src - lo).reshape(shape), x.dtype)
    return jnp.take(x, lo, axis=axis) * (1 - lam) + jnp.take(x, hi, axis=axis) * lam


def _upsample_rule(layer: Layer) -> Fns:
    scale_factor, mode = layer.hparams["scale_factor"], layer.hparams["mode"]

    def output_shape(input_shape):
        factors = _factors(scale_factor, mode, input_shape)
        return tuple(n * s for n, s in zip(input_shape, factors)) + (input_shape[-1],)

    def init(key, input_shape):
        del key
        return output_shape(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        factors = _factors(scale_factor, mode, x.shape)
        if mode != "nearest":
            check_floating("Upsample", x)
        for axis, s in enumerate(factors):
            if s == 1:
                continue
            x = jnp.repeat(x, s, axis=axis) if mode == "nearest" else _linear_axis(x, axis, s)
        return x, state

    return Fns(init, apply, output_shape)


def PixelShuffle(upscale_factor: int) -> Layer:
    """Rearranges channels into space, as ``torch.nn.PixelShuffle`` (Shi et al. 2016), channels
    last: input channel ``c * r * r + i * r + j`` at ``(h, w)`` goes to output channel ``c`` at
    ``(h * r + i, w * r + j)``, torch's ordering, so ported weights of the conv before it agree.

    Args:
        upscale_factor: ``r``, a positive int.

    Shapes:
        ``(H, W, C * r * r) -> (H * r, W * r, C)``.

    Raises:
        ShapeError: an input that is not ``(H, W, C)`` or whose channels ``r * r`` does not
            divide.

    Example:
        >>> ps = PixelShuffle(2)
        >>> ps.output_shape((3, 4, 12))
        (6, 8, 3)
        >>> ps.apply({}, {}, jnp.arange(4.0).reshape(1, 1, 4))[0][..., 0].tolist()
        [[0.0, 1.0], [2.0, 3.0]]
    """
    r = shapes.positive_int(upscale_factor, "PixelShuffle upscale_factor")
    return leaf(_pixel_shuffle_rule, "PixelShuffle", {"upscale_factor": r})


def _pixel_shuffle_rule(layer: Layer) -> Fns:
    r = layer.hparams["upscale_factor"]

    def output_shape(input_shape):
        check_rank("PixelShuffle", input_shape, 3, "(H, W, C)")
        h, w, c = input_shape
        if c % (r * r):
            raise layer_error(
                "PixelShuffle",
                input_shape,
                f"upscale_factor={r} needs channels divisible by r * r = {r * r}, got {c}: give "
                f"the conv before it {r * r} * C output channels",
            )
        return (h * r, w * r, c // (r * r))

    def init(key, input_shape):
        del key
        return output_shape(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        h2, w2, c = output_shape(tuple(x.shape))
        h, w = h2 // r, w2 // r
        y = x.reshape(h, w, c, r, r).transpose(0, 3, 1, 4, 2)
        return y.reshape(h2, w2, c), state

    return Fns(init, apply, output_shape)
