"""Transposed convolutions over 1, 2 or 3 spatial dims: ``ConvTranspose`` (torch's semantics,
``groups`` included, plus Flax's periodic ``padding_mode="circular"``), channels-last, one example.

Re-exported by :mod:`jcnn.layers.conv`, which holds the parts shared with ``Conv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jcnn.layers import initializers as inits
from jcnn.layers import lowering as lowerings
from jcnn.layers import shapes
from jcnn.layers.conv import _conv_like, _window_hparams
from jcnn.layers.core import Fns, Layer, Window, leaf


class PaddingModeError(ValueError):
    """A ``padding_mode`` a transposed convolution does not define."""


#: ``ConvTranspose(padding_mode=...)``: torch's ``"zeros"`` and Flax's periodic ``"CIRCULAR"``.
TRANSPOSE_PADDING_MODES = ("zeros", "circular")


def _grouped_kernel(kernel: jax.Array, groups: int) -> jax.Array:
    """``(*k, C_in, C_out // g)`` (torch's per-group layout) -> lax's ``(*k, C_in // g, C_out)``."""
    if groups == 1:
        return kernel
    *window, c_in, c_out_g = kernel.shape
    kernel = jnp.moveaxis(kernel.reshape(*window, groups, c_in // groups, c_out_g), -3, -2)
    return kernel.reshape(*window, c_in // groups, groups * c_out_g)


def _wrap(y: jax.Array, crops: shapes.Pads, out_spatial: tuple[int, ...]) -> jax.Array:
    """Folds the full transposed-conv output onto ``out_spatial`` cells periodically: full cell
    ``t`` of a dim lands on ``(t - crop_lo) mod out`` (Flax's ``padding="CIRCULAR"`` wrap)."""
    for axis, ((lo, _), o) in enumerate(zip(crops, out_spatial)):
        n = y.shape[axis]
        front = (-lo) % o
        total = -(-(front + n) // o) * o
        y = jnp.pad(y, [(front, total - front - n) if a == axis else (0, 0) for a in range(y.ndim)])
        y = y.reshape(*y.shape[:axis], total // o, o, *y.shape[axis + 1 :]).sum(axis)
    return y


def _conv_transpose_rule(layer: Layer) -> Fns:
    hp = layer.hparams
    window, strides, dilations = hp["kernel_size"], hp["stride"], hp["dilation"]
    groups, circular = hp.get("groups", 1), hp.get("padding_mode", "zeros") == "circular"
    rank = len(window)
    pads = shapes.conv_transpose_padding(
        hp["padding"], window, strides, dilations, hp["output_padding"]
    )
    full = tuple((d * (k - 1),) * 2 for k, d in zip(window, dilations))
    crops = tuple((f - lo, f - hi) for (f, _), (lo, hi) in zip(full, pads))
    dimension_numbers = lowerings.dimension_numbers(rank)
    flip = tuple(range(rank))

    def compute(x, kernel):
        y = lax.conv_general_dilated(
            x[None],
            jnp.flip(_grouped_kernel(kernel, groups), flip),
            window_strides=(1,) * rank,
            padding=full if circular else pads,
            lhs_dilation=strides,
            rhs_dilation=dilations,
            dimension_numbers=dimension_numbers,
            feature_group_count=groups,
            precision=hp["precision"],
        )[0]
        return _wrap(y, crops, out_spatial(x.shape)) if circular else y

    def out_spatial(input_shape):
        spatial = input_shape[:-1]
        if input_shape[-1] % groups:
            raise shapes.ShapeError(f"groups={groups} does not divide C_in={input_shape[-1]}")
        try:
            return shapes.conv_transpose_output_shape(spatial, window, strides, pads, dilations)
        except shapes.ShapeError as err:  # say it in the user's (torch) terms, not internal pads
            axis = err.axis
            crop = shapes.resolve_padding(hp["padding"], spatial, window, strides, dilations)
            (lo, hi), s, d, k = crop[axis], strides[axis], dilations[axis], window[axis]
            raise shapes.ShapeError(
                f"spatial dim {axis}: output size (n-1)*s - p_lo - p_hi + d*(k-1) + "
                f"output_padding + 1 = ({spatial[axis]}-1)*{s} - {lo} - {hi} + {d}*({k}-1) + "
                f"{hp['output_padding'][axis]} + 1 = {err.size} <= 0: "
                f"padding={hp['padding']!r} crops more than the full output; use less padding"
            ) from None

    out_g = hp["out_channels"] // groups
    return _conv_like(
        layer,
        out_spatial,
        lambda c_in: (*window, c_in, out_g),
        # PyTorch's fan-in for a transposed conv weight (in, out // g, *k) is out // g * prod(k).
        lambda kernel: out_g * shapes.flat_size(window),
        compute,
    )


def _check_transpose_mode(padding_mode: Any, padding: Any, rank: int) -> None:
    """Refuses a mode torch and Flax do not define, and negative padding with circular."""
    if not isinstance(padding_mode, str) or padding_mode not in TRANSPOSE_PADDING_MODES:
        raise PaddingModeError(
            f"ConvTranspose: padding_mode={padding_mode!r} is not defined for a transposed "
            "convolution (torch takes only 'zeros', Flax adds 'CIRCULAR'; neither defines "
            "'reflect' or 'replicate'); accepted: 'zeros', 'circular'"
        )
    if padding_mode == "circular" and not isinstance(padding, str):
        crop = shapes.resolve_padding(padding, (0,) * rank, (1,) * rank, (1,) * rank, (1,) * rank)
        if any(p < 0 for pair in crop for p in pair):
            raise shapes.ShapeError(
                f"ConvTranspose: padding={padding!r} has negative entries, which only "
                "padding_mode='zeros' takes ('circular' wraps cropped cells): give padding >= 0"
            )


def ConvTranspose(
    out_channels: int,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    padding: shapes.PaddingLike = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    kernel_init: inits.Initializer | None = None,
    bias_init: inits.Initializer | None = None,
    precision: lax.Precision | None = None,
    padding_mode: str = "zeros",
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
        groups: as ``torch.nn.ConvTranspose*d(groups=...)``: input and output channels split
            into ``groups`` blocks, block ``g`` of the output made from block ``g`` of the
            input only; ``groups`` must divide ``C_in`` and ``out_channels``.
        use_bias, kernel_init, bias_init, precision: as for :func:`Conv`.
        padding_mode: ``"zeros"`` (default, torch's only mode: the cells ``padding`` crops are
            dropped) or ``"circular"`` (Flax's ``nn.ConvTranspose(padding="CIRCULAR")``: the
            cropped cells wrap around onto the other end, so the output is periodic; the
            adjoint of ``Conv(padding_mode="circular")``). Full-output cell ``t`` of a dim lands
            on ``(t - p_lo) mod out``; output sizes are those of ``"zeros"``. ``padding="SAME"``
            with ``"circular"`` is Flax's ``CIRCULAR`` (``out = n*s``) with the default
            ``transpose_kernel=False`` (a kernel spatially flipped from Flax's);
            ``padding=(ceil(e/2), floor(e/2))`` per dim, ``e = max(d*(k-1)+1 - s, 0)``, and
            ``output_padding = max(s - d*(k-1)-1, 0)`` is Flax's with ``transpose_kernel=True``
            (channel axes swapped). Neither torch nor Flax defines ``"reflect"`` or
            ``"replicate"`` for transposed convolutions: refused.

    Raises:
        PaddingModeError: a ``padding_mode`` other than ``"zeros"`` / ``"circular"`` (a
            ``ValueError``, at construction).
        ShapeError: bad sizes, padding or ``groups`` (at construction or init/apply).

    Shapes:
        x: ``(*spatial, C_in)`` -> y: ``(*spatial', out_channels)``, torch form
        ``spatial' = (n-1)*s - p_lo - p_hi + d*(k-1) + output_padding + 1``
        (see :func:`jcnn.shapes.conv_transpose_padding`).
        params: ``{"kernel": (*window, C_in, out_channels // groups), "bias": (out_channels,)}``;
        a torch weight ``(C_in, C_out // groups, *window)`` converts with
        ``porting.conv_transpose_kernel_from_torch``.

    Example:
        >>> ConvTranspose(4, (3, 3), stride=2, padding=1, output_padding=1).output_shape((8, 8, 2))
        (16, 16, 4)
        >>> ConvTranspose(6, (3,), groups=2).init(jax.random.key(0), (5, 4))[1]["kernel"].shape
        (3, 4, 3)

        Circular: a ones window over ``[1 2 3]`` (stride 2) gives the full output
        ``[1 1 3 2 5 3 3]``; ``padding=1`` crops one cell each side, which wrap around:

        >>> up = ConvTranspose(1, (3,), stride=2, padding=1, padding_mode="circular")
        >>> up.apply({"kernel": jnp.ones((3, 1, 1)), "bias": jnp.zeros(1)}, {},
        ...          jnp.arange(1.0, 4.0)[:, None])[0][:, 0]  # zeros: [1 3 2 5 3]
        Array([4., 3., 2., 5., 4.], dtype=float32)
    """
    kind = "ConvTranspose"
    out_channels, rank, window, strides, dilations = _window_hparams(
        kind, out_channels, kernel_size, stride, dilation
    )
    extra = shapes.as_tuple(output_padding, rank, "ConvTranspose output_padding")
    shapes.conv_transpose_padding(padding, window, strides, dilations, extra)  # validate now
    groups = shapes.positive_int(groups, "ConvTranspose groups")
    if out_channels % groups:
        raise shapes.ShapeError(
            f"ConvTranspose groups={groups!r} must divide out_channels={out_channels} (and C_in)"
        )
    _check_transpose_mode(padding_mode, padding, rank)
    hparams = {
        "ndim": rank,
        "out_channels": out_channels,
        "kernel_size": window,
        "stride": strides,
        "padding": padding,
        "output_padding": extra,
        "dilation": dilations,
        "groups": groups,
        "use_bias": use_bias,
        "kernel_init": kernel_init,
        "bias_init": bias_init,
        "precision": precision,
        "padding_mode": padding_mode,
    }
    geometry = Window(window, strides, dilations, padding, transposed=True)
    return leaf(_conv_transpose_rule, kind, hparams, window=geometry)
