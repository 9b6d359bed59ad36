"""Convolutions over 1, 2 or 3 spatial dims: ``Conv`` and ``ConvTranspose``.

Both are cross-correlations computed by ``lax.conv_general_dilated`` on one example, channels-last:
``x: (*spatial, C_in)``, kernel ``(*window, C_in // groups, C_out)`` (Flax's layout; PyTorch's
``(C_out, C_in // groups, *window)`` converts with :mod:`jcnn.porting`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
from jax import lax

from jcnn import initializers as inits
from jcnn import lowering as lowerings
from jcnn import shapes
from jcnn.layers.core import Layer, check_rank, layer_error, per_channel


def _dimension_numbers(rank: int) -> lax.ConvDimensionNumbers:
    """Batch-of-one, channels-last layouts for ``rank`` spatial dims (NHWC / HWIO / NHWC)."""
    spatial = tuple(range(1, rank + 1))
    io = (0, rank + 1, *spatial)
    kernel = (rank + 1, rank, *range(rank))
    return lax.ConvDimensionNumbers(io, kernel, io)


def _kernel_rank(kernel_size: int | Sequence[int]) -> int:
    return 2 if isinstance(kernel_size, int) else len(tuple(kernel_size))


def _check_params(layer: str, params: Any, expected: dict[str, tuple[int, ...]]) -> None:
    """Raises when params do not have exactly the leaves and shapes this layer and input need."""
    if not isinstance(params, dict) or set(params) != set(expected):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(
            f"{layer}: params from another architecture: expected keys {sorted(expected)}, got {got}"
        )
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(
                f"{layer}: params from another architecture: {name!r} has shape "
                f"{tuple(params[name].shape)}, this layer and input need {shape}"
            )


def Conv(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: shapes.PaddingLike = "VALID",
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: inits.Initializer | None = None,
    bias_init: inits.Initializer | None = None,
    precision: lax.Precision | None = None,
    lowering: str = "auto",
) -> Layer:
    """Cross-correlation over the spatial axes (the kernel is not flipped), 1-D, 2-D or 3-D.

    The number of spatial dims is ``len(kernel_size)`` (an int ``kernel_size`` means 2-D).

    Args:
        out_channels: number of filters.
        kernel_size: window, an int (square 2-D) or one int per spatial dim.
        stride: step between windows, int or per dim.
        padding: ``"VALID"`` (default), ``"SAME"`` (XLA: output ``ceil(n/s)``, extra cell high),
            ``"FULL"`` (``d*(k-1)`` each side), an int, or one int / ``(lo, hi)`` pair per dim.
        dilation: kernel dilation (holes between taps), int or per dim.
        groups: feature groups; ``groups == C_in`` with ``out_channels = m*C_in`` is depthwise
            with channel multiplier ``m``.
        use_bias: add a learned bias per output channel.
        kernel_init: default ``lecun_normal()`` (fan-in ``prod(window) * C_in // groups``).
        bias_init: default zeros.
        precision: passed to ``lax.conv_general_dilated``.
        lowering: how derivatives are formed: ``"auto"`` (default: per backend and shape),
            ``"native"`` or ``"patches"``; forward values are the same in all (see
            :mod:`jcnn.lowering`).

    Shapes:
        x: ``(*spatial, C_in)`` -> y: ``(*spatial', out_channels)`` with
        ``spatial'[i] = conv_output_size(spatial[i], k[i], s[i], (lo[i], hi[i]), d[i])``.
        params: ``{"kernel": (*window, C_in // groups, out_channels), "bias": (out_channels,)}``.

    Example:
        >>> out_shape, params, state = Conv(8, (5, 5)).init(jax.random.key(0), (28, 28, 1))
        >>> out_shape, params["kernel"].shape
        ((24, 24, 8), (5, 5, 1, 8))
    """
    rank = _kernel_rank(kernel_size)
    window = shapes.as_tuple(kernel_size, rank, "Conv kernel_size")
    strides = shapes.as_tuple(stride, rank, "Conv stride")
    dilations = shapes.as_tuple(dilation, rank, "Conv dilation")
    shapes.check_positive(window, "Conv kernel_size")
    shapes.check_positive(strides, "Conv stride")
    shapes.check_positive(dilations, "Conv dilation")
    if not isinstance(out_channels, int) or out_channels < 1:
        raise shapes.ShapeError(f"Conv out_channels must be a positive int, got {out_channels!r}")
    if not isinstance(groups, int) or groups < 1 or out_channels % groups:
        raise shapes.ShapeError(
            f"Conv groups={groups!r} must be a positive int dividing out_channels={out_channels}"
        )
    if not isinstance(padding, str):
        shapes.resolve_padding(padding, (0,) * rank, window, strides, dilations)  # validate now
    lowerings.check_lowering(lowering, lowerings.CONV_LOWERINGS, "Conv")
    kernel_init = kernel_init or inits.lecun_normal()
    bias_init = bias_init or inits.zeros
    name = f"Conv{rank}D" if rank != 2 else "Conv"
    config = f"{out_channels}, {window}, stride={strides}, padding={padding!r}"
    if any(d != 1 for d in dilations):
        config += f", dilation={dilations}"
    if groups != 1:
        config += f", groups={groups}"

    def geometry(input_shape: Sequence[int]) -> tuple[shapes.Pads, tuple[int, ...]]:
        check_rank(name, input_shape, rank + 1, "(*spatial, C)")
        in_channels = input_shape[-1]
        if in_channels % groups:
            raise layer_error(
                name, input_shape, f"groups={groups} does not divide C_in={in_channels}"
            )
        pads = shapes.resolve_padding(padding, input_shape[:-1], window, strides, dilations)
        try:
            out = shapes.conv_output_shape(input_shape[:-1], window, strides, pads, dilations)
        except shapes.ShapeError as err:
            raise layer_error(name, input_shape, str(err)) from None
        return pads, (*out, out_channels)

    def expected_params(in_channels: int) -> dict[str, tuple[int, ...]]:
        kernel = (*window, in_channels // groups, out_channels)
        return {"kernel": kernel, "bias": (out_channels,)} if use_bias else {"kernel": kernel}

    def init(key, input_shape):
        _, out_shape = geometry(input_shape)
        expected = expected_params(input_shape[-1])
        fan_in = shapes.flat_size(expected["kernel"][:-1])
        k_key, b_key = jax.random.split(key)
        params = {"kernel": kernel_init(k_key, expected["kernel"], jnp.float32)}
        if use_bias:
            params["bias"] = inits.init_bias(bias_init, b_key, (out_channels,), jnp.float32, fan_in)
        return out_shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        pads, out_shape = geometry(x.shape)
        _check_params(name, params, expected_params(x.shape[-1]))
        y = lowerings.conv(
            x,
            params["kernel"].astype(x.dtype),
            strides=strides,
            pads=pads,
            dilation=dilations,
            groups=groups,
            precision=precision,
            lowering=lowerings.resolve_conv_lowering(lowering, window, x.shape[-1], groups),
        )
        if use_bias:
            y = y + per_channel(params["bias"].astype(y.dtype), y.ndim)
        chex.assert_shape(y, out_shape)
        return y, state

    hparams = {
        "kernel_size": window,
        "stride": strides,
        "dilation": dilations,
        "padding": padding,
        "groups": groups,
        "out_channels": out_channels,
    }
    return Layer(init, apply, name=name, config=config, hparams=hparams)


def ConvTranspose(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: shapes.PaddingLike = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    use_bias: bool = True,
    kernel_init: inits.Initializer | None = None,
    bias_init: inits.Initializer | None = None,
    precision: lax.Precision | None = None,
) -> Layer:
    """Transposed convolution: the adjoint (gradient) of a strided ``Conv``, as in PyTorch.

    Computed as a stride-1 correlation of the spatially flipped kernel with the input dilated by
    ``stride`` (``s-1`` zeros between cells), so it upsamples by ``stride``.

    Args:
        out_channels: number of output channels.
        kernel_size: window, int (2-D) or one int per spatial dim.
        stride: upsampling factor.
        padding: torch form: an int or one int / ``(lo, hi)`` pair per dim, cropping the full
            output like ``torch.nn.ConvTranspose*d(padding=...)`` (default 0); or lax/TF form
            ``"SAME"`` (``out = n*s``) / ``"VALID"`` (``out = n*s + max(d*(k-1)+1 - s, 0)``).
        output_padding: torch's extra cells on the high side (torch form only).
        dilation: kernel dilation.
        use_bias, kernel_init, bias_init, precision: as for :func:`Conv`.

    Shapes:
        x: ``(*spatial, C_in)`` -> y: ``(*spatial', out_channels)``, torch form
        ``spatial' = (n-1)*s - p_lo - p_hi + d*(k-1) + output_padding + 1``
        (see :func:`jcnn.shapes.conv_transpose_padding`).
        params: ``{"kernel": (*window, C_in, out_channels), "bias": (out_channels,)}``; a torch
        weight ``(C_in, C_out, *window)`` converts with ``porting.conv_transpose_kernel_from_torch``.
    """
    rank = _kernel_rank(kernel_size)
    window = shapes.as_tuple(kernel_size, rank, "ConvTranspose kernel_size")
    strides = shapes.as_tuple(stride, rank, "ConvTranspose stride")
    dilations = shapes.as_tuple(dilation, rank, "ConvTranspose dilation")
    extra = shapes.as_tuple(output_padding, rank, "ConvTranspose output_padding")
    shapes.check_positive(window, "ConvTranspose kernel_size")
    shapes.check_positive(strides, "ConvTranspose stride")
    shapes.check_positive(dilations, "ConvTranspose dilation")
    if not isinstance(out_channels, int) or out_channels < 1:
        raise shapes.ShapeError(
            f"ConvTranspose out_channels must be a positive int, got {out_channels!r}"
        )
    pads = shapes.conv_transpose_padding(padding, window, strides, dilations, extra)
    kernel_init = kernel_init or inits.lecun_normal()
    bias_init = bias_init or inits.zeros
    name = f"ConvTranspose{rank}D" if rank != 2 else "ConvTranspose"
    config = f"{out_channels}, {window}, stride={strides}, padding={padding!r}"
    dimension_numbers = _dimension_numbers(rank)
    flip = tuple(range(rank))

    def geometry(input_shape):
        check_rank(name, input_shape, rank + 1, "(*spatial, C)")
        try:
            out = shapes.conv_transpose_output_shape(
                input_shape[:-1], window, strides, pads, dilations
            )
        except shapes.ShapeError as err:
            raise layer_error(name, input_shape, str(err)) from None
        return (*out, out_channels)

    def expected_params(in_channels):
        kernel = (*window, in_channels, out_channels)
        return {"kernel": kernel, "bias": (out_channels,)} if use_bias else {"kernel": kernel}

    def init(key, input_shape):
        out_shape = geometry(input_shape)
        expected = expected_params(input_shape[-1])
        k_key, b_key = jax.random.split(key)
        params = {"kernel": kernel_init(k_key, expected["kernel"], jnp.float32)}
        if use_bias:
            # PyTorch's fan-in for a transposed conv weight (in, out, *k) is out * prod(k).
            fan_in = out_channels * shapes.flat_size(window)
            params["bias"] = inits.init_bias(bias_init, b_key, (out_channels,), jnp.float32, fan_in)
        return out_shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        out_shape = geometry(x.shape)
        _check_params(name, params, expected_params(x.shape[-1]))
        y = lax.conv_general_dilated(
            x[None],
            jnp.flip(params["kernel"], flip).astype(x.dtype),
            window_strides=(1,) * rank,
            padding=pads,
            lhs_dilation=strides,
            rhs_dilation=dilations,
            dimension_numbers=dimension_numbers,
            precision=precision,
        )[0]
        if use_bias:
            y = y + per_channel(params["bias"].astype(y.dtype), y.ndim)
        chex.assert_shape(y, out_shape)
        return y, state

    hparams = {
        "kernel_size": window,
        "stride": strides,
        "dilation": dilations,
        "padding": padding,
        "output_padding": extra,
        "out_channels": out_channels,
    }
    return Layer(init, apply, name=name, config=config, hparams=hparams)
