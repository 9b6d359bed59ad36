"""Convolutions over 1, 2 or 3 spatial dims: ``Conv`` and ``ConvTranspose``.

Both are cross-correlations computed by ``lax.conv_general_dilated`` on one example, channels-last:
``x: (*spatial, C_in)``. ``Conv``'s kernel is ``(*window, C_in // groups, C_out)`` (Flax's layout;
PyTorch's ``(C_out, C_in // groups, *window)`` converts with :mod:`jcnn.porting`);
``ConvTranspose`` (defined in :mod:`jcnn.layers.conv_transpose`, re-exported here) has
``(*window, C_in, C_out // groups)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
from jax import lax

from jcnn.layers import initializers as inits
from jcnn.layers import lowering as lowerings
from jcnn.layers import shapes
from jcnn.layers.checks import check_params
from jcnn.layers.core import (
    Fns,
    Layer,
    Window,
    check_floating,
    check_rank,
    layer_error,
    leaf,
    per_channel,
)

#: ``Conv(padding_mode=...)``, as ``torch.nn.Conv*d(padding_mode=...)``.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
#: The ``jnp.pad`` mode of each non-zero padding mode.
_JNP_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _check_padding_mode(
    kind: str,
    padding_mode: Any,
    padding: Any,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    *,
    modes: tuple[str, ...] = PADDING_MODES,
    origin: str = "as torch.nn.Conv2d(padding_mode=...); 'replicate' repeats the edge cell, "
    "'circular' wraps around",
) -> None:
    """Raises at construction for a ``padding_mode`` not in ``modes`` (``origin`` says where they
    come from), or cropping (negative) padding with a mode that pads by copying cells."""
    if not isinstance(padding_mode, str) or padding_mode not in modes:
        accepted = ", ".join(repr(m) for m in modes)
        raise ValueError(
            f"{kind}: unknown padding_mode {padding_mode!r}; accepted: {accepted} ({origin})"
        )
    if padding_mode == "zeros" or isinstance(padding, str):
        return
    pads = shapes.resolve_padding(padding, (0,) * len(window), window, strides, dilations)
    if any(p < 0 for pair in pads for p in pair):
        raise shapes.ShapeError(
            f"{kind}: padding={padding!r} has negative (cropping) entries, which only "
            f"padding_mode='zeros' takes; padding_mode={padding_mode!r} pads by copying input "
            "cells: give padding >= 0 (crop the input first if you need to)"
        )


def _check_mode_fits(
    padding_mode: str, spatial: tuple[int, ...], pads: shapes.Pads, padding: Any
) -> None:
    """PyTorch's limits on how far ``reflect`` / ``circular`` padding may reach, per dim."""
    if padding_mode not in ("reflect", "circular"):
        return
    for axis, (n, (lo, hi)) in enumerate(zip(spatial, pads)):
        too_far = max(lo, hi) >= n if padding_mode == "reflect" else max(lo, hi) > n
        if too_far:
            rule = "< input size" if padding_mode == "reflect" else "<= input size"
            raise shapes.ShapeError(
                f"spatial dim {axis}: padding_mode={padding_mode!r} needs padding {rule} on each "
                f"side (PyTorch's rule), but padding={padding!r} pads (lo, hi) = ({lo}, {hi}) on "
                f"a dim of size {n}: use less padding, a larger input or "
                "padding_mode='replicate' / 'zeros'"
            )


def _pad_by_mode(
    x: jax.Array, pads: shapes.Pads, padding_mode: str
) -> tuple[jax.Array, shapes.Pads]:
    """``(x, pads)`` for a conv of one example ``(*spatial, C)``: unchanged for ``"zeros"``;
    otherwise ``x`` padded by copying cells as ``padding_mode`` says, and no pads left."""
    if padding_mode == "zeros":
        return x, pads
    if any(lo or hi for lo, hi in pads):
        x = jnp.pad(x, (*pads, (0, 0)), mode=_JNP_PAD_MODES[padding_mode])
    return x, ((0, 0),) * len(pads)


def _window_hparams(
    kind: str, out_channels: int, kernel_size: Any, stride: Any, dilation: Any
) -> tuple[int, int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Out channels, rank, window, strides and dilations of a conv, validated (both convs)."""
    window = shapes.as_window(kernel_size, f"{kind} kernel_size")
    rank = len(window)
    strides = shapes.as_tuple(stride, rank, f"{kind} stride")
    dilations = shapes.as_tuple(dilation, rank, f"{kind} dilation")
    shapes.check_positive(strides, f"{kind} stride")
    shapes.check_positive(dilations, f"{kind} dilation")
    out_channels = shapes.positive_int(out_channels, f"{kind} out_channels")
    return out_channels, rank, window, strides, dilations


def _conv_like(
    layer: Layer,
    out_spatial: Callable[[tuple[int, ...]], tuple[int, ...]],
    kernel_shape: Callable[[int], tuple[int, ...]],
    bias_fan_in: Callable[[tuple[int, ...]], int],
    compute: Callable[[jax.Array, jax.Array], jax.Array],
    in_groups: int = 1,
) -> Fns:
    """init/apply/output_shape shared by Conv and ConvTranspose: checks, params, bias, shape.
    ``in_groups``: C_in over the kernel's input-channel axis (1 for ConvTranspose)."""
    hp = layer.hparams
    kind, rank, out_channels, use_bias = (
        layer.kind,
        len(hp["kernel_size"]),
        hp["out_channels"],
        hp["use_bias"],
    )
    kernel_init = hp["kernel_init"] or inits.lecun_normal()
    bias_init = hp["bias_init"] or inits.zeros

    def output_shape(input_shape):
        check_rank(kind, input_shape, rank + 1, "(*spatial, C)")
        if input_shape[-1] < 1:
            raise layer_error(kind, input_shape, "the input has no channels (C = 0)")
        try:
            return (*out_spatial(tuple(input_shape)), out_channels)
        except shapes.ShapeError as err:
            raise layer_error(kind, input_shape, str(err)) from None

    def expected_params(in_channels):
        kernel = kernel_shape(in_channels)
        return {"kernel": kernel, "bias": (out_channels,)} if use_bias else {"kernel": kernel}

    def init(key, input_shape):
        out_shape = output_shape(input_shape)
        expected = expected_params(input_shape[-1])
        k_key, b_key = jax.random.split(key)
        params = {"kernel": kernel_init(k_key, expected["kernel"], jnp.float32)}
        if use_bias:
            fan_in = bias_fan_in(expected["kernel"])
            params["bias"] = inits.init_bias(bias_init, b_key, (out_channels,), jnp.float32, fan_in)
        return out_shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        check_floating(kind, x)
        out_shape = output_shape(x.shape)
        expected = expected_params(x.shape[-1])
        check_params(kind, params, expected, input_shape=x.shape, in_axis=-2, groups=in_groups)
        y = compute(x, params["kernel"].astype(x.dtype))
        if use_bias:
            y = y + per_channel(params["bias"].astype(y.dtype), y.ndim)
        chex.assert_shape(y, out_shape)
        return y, state

    return Fns(init, apply, output_shape)


def _conv_rule(layer: Layer) -> Fns:
    hp = layer.hparams
    window, strides, dilations = hp["kernel_size"], hp["stride"], hp["dilation"]
    padding, groups = hp["padding"], hp["groups"]
    padding_mode = hp.get("padding_mode", "zeros")  # ConvTranspose pads with zeros only

    def pads_for(input_shape):
        return shapes.resolve_padding(padding, input_shape[:-1], window, strides, dilations)

    def out_spatial(input_shape):
        if input_shape[-1] % groups:
            raise shapes.ShapeError(f"groups={groups} does not divide C_in={input_shape[-1]}")
        pads = pads_for(input_shape)
        _check_mode_fits(padding_mode, input_shape[:-1], pads, padding)
        return shapes.conv_output_shape(input_shape[:-1], window, strides, pads, dilations)

    def compute(x, kernel):
        x, pads = _pad_by_mode(x, pads_for(x.shape), padding_mode)
        return lowerings.conv(
            x,
            kernel,
            strides=strides,
            pads=pads,
            dilation=dilations,
            groups=groups,
            precision=hp["precision"],
            lowering=lowerings.resolve_conv_lowering(hp["lowering"], window, x.shape[-1], groups),
        )

    return _conv_like(
        layer,
        out_spatial,
        lambda c_in: (*window, c_in // groups, hp["out_channels"]),
        lambda kernel: shapes.flat_size(kernel[:-1]),
        compute,
        in_groups=groups,
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
    padding_mode: str = "zeros",
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
        lowering: how derivatives are formed: ``"auto"`` (default; in a program lowered for
            CPU ``"patches"`` for thin convs and ``"canonical"`` for the others, ``"native"`` on
            GPU/TPU, decided when the program is lowered), ``"native"``, ``"patches"`` or
            ``"canonical"``; forward values are the same in all (see :mod:`jcnn.lowering`).
        padding_mode: what the padded cells hold, as ``torch.nn.Conv*d(padding_mode=...)``:
            ``"zeros"`` (default), ``"reflect"`` (mirrored about the edge cell, which is not
            repeated: ``[c b | a b c d | c b]``), ``"replicate"`` (the edge cell repeated:
            ``[a a | a b c d | d d]``) or ``"circular"`` (wrapped around: ``[c d | a b c d | a b]``).
            The amounts are the ``(lo, hi)`` pairs ``padding`` resolves to, so every padding form
            works (SAME and asymmetric pairs too, which torch's ``padding_mode`` does not take);
            like torch, ``"reflect"`` needs each side's padding ``< n`` and ``"circular"``
            ``<= n`` (checked for the input shape), and negative (cropping) padding only goes
            with ``"zeros"``. Output sizes do not depend on the mode.

    Raises:
        ValueError: an unknown ``padding_mode`` (at construction).
        ShapeError: bad sizes or padding (at construction), or an input that the window does not
            fit, whose channels ``groups`` does not divide, or that is too small for the
            ``padding_mode`` (at ``init`` / ``output_shape`` / ``apply``).

    Shapes:
        x: ``(*spatial, C_in)`` -> y: ``(*spatial', out_channels)`` with
        ``spatial'[i] = conv_output_size(spatial[i], k[i], s[i], (lo[i], hi[i]), d[i])``.
        params: ``{"kernel": (*window, C_in // groups, out_channels), "bias": (out_channels,)}``.

    Example:
        >>> out_shape, params, state = Conv(8, (5, 5)).init(jax.random.key(0), (28, 28, 1))
        >>> out_shape, params["kernel"].shape
        ((24, 24, 8), (5, 5, 1, 8))

        Circular padding, e.g. for periodic signals; a window of ones sums its three cells:

        >>> conv = Conv(1, (3,), padding=1, padding_mode="circular", use_bias=False)
        >>> conv
        Conv(out_channels=1, kernel_size=(3,), padding=1, padding_mode='circular', use_bias=False)
        >>> y, _ = conv.apply({"kernel": jnp.ones((3, 1, 1))}, {}, jnp.arange(4.0)[:, None])
        >>> y[:, 0]  # padded input [3 | 0 1 2 3 | 0]
        Array([4., 3., 6., 5.], dtype=float32)
    """
    kind = "Conv"
    out_channels, rank, window, strides, dilations = _window_hparams(
        kind, out_channels, kernel_size, stride, dilation
    )
    groups = shapes.positive_int(groups, "Conv groups")
    if out_channels % groups:
        raise shapes.ShapeError(
            f"Conv groups={groups!r} must be a positive int dividing out_channels={out_channels}"
        )
    if not isinstance(padding, str):
        shapes.resolve_padding(padding, (0,) * rank, window, strides, dilations)  # validate now
    _check_padding_mode(kind, padding_mode, padding, window, strides, dilations)
    lowerings.check_lowering(lowering, lowerings.CONV_LOWERINGS, "Conv")
    hparams = {
        "ndim": rank,
        "out_channels": out_channels,
        "kernel_size": window,
        "stride": strides,
        "padding": padding,
        "padding_mode": padding_mode,
        "dilation": dilations,
        "groups": groups,
        "use_bias": use_bias,
        "kernel_init": kernel_init,
        "bias_init": bias_init,
        "precision": precision,
        "lowering": lowering,
    }
    return leaf(_conv_rule, kind, hparams, window=Window(window, strides, dilations, padding))


# ConvTranspose lives in its own module (it builds on _conv_like and _window_hparams above).
from jcnn.layers.conv_transpose import ConvTranspose as ConvTranspose  # noqa: E402
from jcnn.layers.conv_transpose import _conv_transpose_rule as _conv_transpose_rule  # noqa: E402
