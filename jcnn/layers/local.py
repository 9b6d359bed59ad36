"""Locally connected layers: ``ConvLocal``, a convolution whose weights are not shared.

A convolution applies one kernel at every output position; a locally connected layer has its own
kernel (and bias) at each, with the same windows, strides, dilations and padding. Flax's
``nn.ConvLocal`` is the reference: its param shapes are jcnn's, so weights move across unchanged.
Channels-last, one example; output sizes from :func:`jcnn.shapes.conv_output_size`.
``padding_mode="circular"`` is Flax's ``padding="CIRCULAR"`` with the widths given explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
from jax import lax
from jax.nn import initializers as jinit

from jcnn.layers import initializers as inits
from jcnn.layers import lowering as lowerings
from jcnn.layers import shapes
from jcnn.layers.checks import check_params
from jcnn.layers.conv import _check_padding_mode, _pad_by_mode, _window_hparams
from jcnn.layers.core import Fns, Layer, Window, check_floating, check_rank, layer_error, leaf

#: ``ConvLocal(padding_mode=...)``: zeros, or Flax's periodic ``"CIRCULAR"`` (any width).
LOCAL_PADDING_MODES = ("zeros", "circular")


def _conv_local_rule(layer: Layer) -> Fns:
    hp, kind = layer.hparams, layer.kind
    window, strides, dilations, padding = (
        hp["kernel_size"],
        hp["stride"],
        hp["dilation"],
        hp["padding"],
    )
    out_channels, use_bias, rank = hp["out_channels"], hp["use_bias"], len(window)
    padding_mode = hp.get("padding_mode", "zeros")
    taps = shapes.flat_size(window)
    # fan-in prod(window) * C_in: the output positions are independent kernels (a batch axis)
    kernel_init = hp["kernel_init"] or jinit.variance_scaling(
        1.0, "fan_in", "truncated_normal", batch_axis=tuple(range(rank))
    )
    bias_init = hp["bias_init"] or inits.zeros
    dimension_numbers = lowerings.dimension_numbers(rank)

    def geometry(input_shape):
        check_rank(kind, input_shape, rank + 1, "(*spatial, C)")
        if input_shape[-1] < 1:
            raise layer_error(kind, input_shape, "the input has no channels (C = 0)")
        pads = shapes.resolve_padding(padding, input_shape[:-1], window, strides, dilations)
        try:
            out = shapes.conv_output_shape(input_shape[:-1], window, strides, pads, dilations)
        except shapes.ShapeError as err:
            raise layer_error(kind, input_shape, str(err)) from None
        return pads, (*out, out_channels)

    def expected_params(input_shape, out_shape):
        kernel = (*out_shape[:-1], taps * input_shape[-1], out_channels)
        return {"kernel": kernel, "bias": out_shape} if use_bias else {"kernel": kernel}

    def init(key, input_shape):
        _, out_shape = geometry(input_shape)
        expected = expected_params(input_shape, out_shape)
        k_key, b_key = jax.random.split(key)
        params = {"kernel": kernel_init(k_key, expected["kernel"], jnp.float32)}
        if use_bias:
            fan_in = taps * input_shape[-1]
            params["bias"] = inits.init_bias(bias_init, b_key, out_shape, jnp.float32, fan_in)
        return out_shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        check_floating(kind, x)
        pads, out_shape = geometry(x.shape)
        check_params(
            kind, params, expected_params(x.shape, out_shape), input_shape=x.shape, in_axis=None
        )
        x, pads = _pad_by_mode(x, pads, padding_mode)  # circular: wrapped, then VALID
        y = lax.conv_general_dilated_local(
            x[None],
            params["kernel"].astype(x.dtype),
            window_strides=strides,
            padding=pads,
            filter_shape=window,
            rhs_dilation=dilations,
            dimension_numbers=dimension_numbers,
            precision=hp["precision"],
        )[0]
        if use_bias:
            y = y + params["bias"].astype(y.dtype)
        chex.assert_shape(y, out_shape)
        return y, state

    return Fns(init, apply, lambda input_shape: geometry(input_shape)[1])


def ConvLocal(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: shapes.PaddingLike = "VALID",
    dilation: int | Sequence[int] = 1,
    padding_mode: str = "zeros",
    use_bias: bool = True,
    kernel_init: inits.Initializer | None = None,
    bias_init: inits.Initializer | None = None,
    precision: lax.Precision | None = None,
) -> Layer:
    """Locally connected layer: a ``Conv`` with its own kernel and bias at every output position,
    as Flax's ``nn.ConvLocal`` (``lax.conv_general_dilated_local``).

    Output ``y[o, f] = sum_{c, t} x[o*s + t*d - p_lo, c] * kernel[o, c*T + t, f] + bias[o, f]``,
    with ``t`` running over the ``T = prod(kernel_size)`` window taps in row-major order: a
    position's column of the kernel holds channel-major patches (every tap of channel 0 first),
    Flax's and ``lax.conv_general_dilated_patches``' order.

    Args:
        out_channels: features at each output position.
        kernel_size: window, an int (square 2-D) or one int per spatial dim.
        stride, padding, dilation: as :func:`jcnn.layers.Conv` (default ``"VALID"``; Flax's
            default is ``"SAME"``).
        padding_mode: ``"zeros"`` (default) or ``"circular"``: the padded cells wrap around the
            input (any width; a pad wider than the input wraps again), as Flax's
            ``nn.ConvLocal(padding="CIRCULAR")``, whose widths are ``((e - 1) // 2, e // 2)``
            per dim for the dilated window extent ``e``: give those as ``padding`` to match it.
        use_bias: add a learned bias per output position and channel.
        kernel_init: default ``lecun_normal`` with fan-in ``prod(kernel_size) * C_in`` (each
            position's kernel on its own; Flax's default also counts the positions).
        bias_init: default zeros.
        precision: passed to ``lax.conv_general_dilated_local``.

    Shapes:
        x: ``(*spatial, C_in)`` -> y: ``(*spatial', out_channels)`` with
        ``spatial'[i] = conv_output_size(spatial[i], k[i], s[i], (lo[i], hi[i]), d[i])``.
        params: ``{"kernel": (*spatial', prod(kernel_size) * C_in, out_channels),
        "bias": (*spatial', out_channels)}``: they depend on the input's size, fixed at init.

    Raises:
        ShapeError: bad sizes or padding (at construction), or an input the window does not fit
            (at ``init`` / ``output_shape`` / ``apply``).
        ValueError: an unknown ``padding_mode`` (at construction).

    Example:
        >>> layer = ConvLocal(8, (3, 3), stride=2)
        >>> out_shape, params, _ = layer.init(jax.random.key(0), (9, 9, 2))
        >>> out_shape, params["kernel"].shape, params["bias"].shape
        ((4, 4, 8), (4, 4, 18, 8), (4, 4, 8))

        Each position weighs its own window: here ``[1 2]`` by 1 and ``[2 3]`` by 10.

        >>> kernel = jnp.asarray([[[1.0], [1.0]], [[10.0], [10.0]]])  # (2 positions, 2 taps, 1)
        >>> ConvLocal(1, (2,), use_bias=False).apply(
        ...     {"kernel": kernel}, {}, jnp.asarray([[1.0], [2.0], [3.0]]))[0][:, 0]
        Array([ 3., 50.], dtype=float32)

        Circular: the first window is ``[3 1]``, the last ``[2 3]``.

        >>> ConvLocal(1, (2,), padding=[(1, 0)], padding_mode="circular", use_bias=False).apply(
        ...     {"kernel": jnp.ones((3, 2, 1))}, {}, jnp.asarray([[1.0], [2.0], [3.0]]))[0][:, 0]
        Array([4., 3., 5.], dtype=float32)
    """
    kind = "ConvLocal"
    out_channels, rank, window, strides, dilations = _window_hparams(
        kind, out_channels, kernel_size, stride, dilation
    )
    if not isinstance(padding, str):
        shapes.resolve_padding(padding, (0,) * rank, window, strides, dilations)  # validate now
    _check_padding_mode(
        kind, padding_mode, padding, window, strides, dilations,
        modes=LOCAL_PADDING_MODES, origin="'circular' wraps around, as Flax's padding='CIRCULAR'",
    )  # fmt: skip
    hparams = {
        "ndim": rank,
        "out_channels": out_channels,
        "kernel_size": window,
        "stride": strides,
        "padding": padding,
        "dilation": dilations,
        "padding_mode": padding_mode,
        "use_bias": use_bias,
        "kernel_init": kernel_init,
        "bias_init": bias_init,
        "precision": precision,
    }
    return leaf(_conv_local_rule, kind, hparams, window=Window(window, strides, dilations, padding))
