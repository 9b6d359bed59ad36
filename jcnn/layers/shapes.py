"""Output-size arithmetic: the one place where jcnn computes spatial sizes.

Every convolution and pooling size in jcnn comes from :func:`conv_output_size`::

    out = floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1

(Dumoulin & Visin, "A guide to convolution arithmetic for deep learning", relationship 15; the
course text "5 Convolutional Neural Networks" gives the symmetric form with 2P.) Padding specs are
resolved into explicit ``(lo, hi)`` pairs by :func:`resolve_padding` first, so SAME, FULL, integers
and asymmetric pairs all meet the same formula. Transposed convolutions are expressed as a stride-1
convolution over the stride-dilated input, so their sizes use the same formula too. Adaptive
pooling fixes its output size and takes its windows from :func:`adaptive_windows`.

Layers call these functions both at ``init`` (shape inference) and inside ``apply`` (a chex
assertion on the output), so the arithmetic cannot drift from what XLA computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# The integer validators lived here; layers still import them from here (re-exported).
from jcnn.layers.arguments import as_int as as_int
from jcnn.layers.arguments import is_int as is_int
from jcnn.layers.arguments import positive_int as positive_int

PaddingLike = str | int | Sequence[int | tuple[int, int]]
Pads = tuple[tuple[int, int], ...]

FORMULA = "floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1"
PADDING_FORMS = (
    '"VALID", "SAME", "FULL", an int p (p on both sides of every spatial dim), '
    "a sequence with one int or one (lo, hi) pair per spatial dim"
)


class ShapeError(ValueError):
    """A shape, size or hyper-parameter that cannot work; the message says why, with numbers.

    Attributes:
        size, axis: for a window that does not fit, the output size the formula gave and the
            spatial dim (``None`` otherwise).
    """

    size: int | None = None
    axis: int | None = None


def spatial_rank(value: Any, default: int = 2) -> int:
    """Number of spatial dims a window argument means: ``default`` for an int, else its length."""
    return default if is_int(value) else len(tuple(value))


def as_window(value: Any, name: str) -> tuple[int, ...]:
    """A window argument (``kernel_size``, a pool ``window``): an int means 2-D square, else one
    positive int per spatial dim; the rank is its length.

    Example:
        >>> as_window(3, "Conv kernel_size"), as_window((5,), "MaxPool window")
        ((3, 3), (5,))
    """
    try:
        rank = spatial_rank(value)
    except TypeError:
        raise ShapeError(f"{name} must be an int or a sequence of ints, got {value!r}") from None
    window = as_tuple(value, rank, name)
    check_positive(window, name)
    return window


def as_tuple(value: int | Sequence[int], ndim: int, name: str = "value") -> tuple[int, ...]:
    """Broadcasts an int to ``ndim`` ints, or checks that a sequence has ``ndim`` ints.

    NumPy integers are accepted and become Python ints.

    Raises:
        ShapeError: the sequence has the wrong length or holds non-integers (floats included).

    Example:
        >>> as_tuple(3, 2, "kernel_size"), as_tuple([np.int32(1), 2], 2, "stride")
        ((3, 3), (1, 2))
    """
    expected = f"{name} must be an int or a sequence of {ndim} ints"
    if is_int(value):
        return (int(value),) * ndim
    try:
        values = tuple(value)
    except TypeError:
        raise ShapeError(f"{expected}, got {value!r} ({type(value).__name__})") from None
    if len(values) != ndim or not all(is_int(v) for v in values):
        raise ShapeError(f"{expected}, got {value!r}")
    return tuple(int(v) for v in values)


def check_positive(values: Sequence[int], name: str) -> None:
    """Raises ShapeError unless every value is >= 1 (strides, dilations, windows)."""
    if any(v < 1 for v in values):
        raise ShapeError(f"{name} must be >= 1 in every dimension, got {tuple(values)}")


def dilated_size(kernel: int, dilation: int = 1) -> int:
    """Extent of a kernel of size ``kernel`` with holes: ``d*(k-1) + 1``."""
    return dilation * (kernel - 1) + 1


def same_padding(n: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """XLA's SAME padding for one dim: output ``ceil(n/s)``, odd totals put the extra cell high.

    ``total = max((ceil(n/s) - 1)*s + d*(k-1) + 1 - n, 0)``, ``lo = total // 2``, ``hi = total - lo``.
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + dilated_size(kernel, dilation) - n, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: PaddingLike,
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> Pads:
    """Turns any accepted padding spec into explicit ``((lo, hi), ...)``, one pair per spatial dim.

    Accepted forms: ``"VALID"`` (no padding), ``"SAME"`` (see :func:`same_padding`), ``"FULL"``
    (``d*(k-1)`` on each side: every partial overlap), an int ``p``, or a sequence holding one int
    or one ``(lo, hi)`` pair per spatial dimension. Negative values crop.

    Raises:
        ShapeError: the spec is malformed; the message lists every accepted form.
    """
    ndim = len(kernel)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * ndim
        if mode == "SAME":
            return tuple(
                same_padding(n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation)
            )
        if mode == "FULL":
            return tuple((d * (k - 1),) * 2 for k, d in zip(kernel, dilation))
        raise ShapeError(f"unknown padding {padding!r}; accepted: {PADDING_FORMS}")
    if is_int(padding):
        return ((int(padding), int(padding)),) * ndim
    try:
        items = list(padding)
    except TypeError:
        raise ShapeError(f"malformed padding {padding!r}; accepted: {PADDING_FORMS}") from None
    if len(items) != ndim:
        raise ShapeError(
            f"padding {padding!r} has {len(items)} entries for {ndim} spatial dims; "
            f"accepted: {PADDING_FORMS}"
        )
    pads = []
    for item in items:
        if is_int(item):
            pads.append((int(item), int(item)))
            continue
        pair = tuple(item) if isinstance(item, (tuple, list)) else None
        if pair is None or len(pair) != 2 or not all(is_int(p) for p in pair):
            raise ShapeError(f"malformed padding {padding!r}; accepted: {PADDING_FORMS}")
        pads.append((int(pair[0]), int(pair[1])))
    return tuple(pads)


def conv_output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding: str | int | tuple[int, int] = "VALID",
    dilation: int = 1,
) -> int:
    """The output-size formula ``floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1`` for one dim.

    Args:
        n: input size along this dimension.
        kernel: window size ``k``.
        stride: step ``s`` between windows.
        padding: ``"VALID"``, ``"SAME"``, ``"FULL"``, an int (both sides) or a ``(lo, hi)`` pair.
        dilation: spacing ``d`` between kernel taps.

    Returns:
        The output size, >= 1.

    Raises:
        ShapeError: non-positive stride/dilation/kernel, or the window does not fit (result <= 0);
            the message shows the formula with the numbers filled in.

    Example:
        >>> conv_output_size(28, 5), conv_output_size(26, 2, 2), conv_output_size(9, 3, 2, 1)
        (24, 13, 5)
    """
    check_positive((kernel,), "kernel size")
    check_positive((stride,), "stride")
    check_positive((dilation,), "dilation")
    spec: PaddingLike = padding
    if isinstance(padding, tuple):
        spec = [padding]
    elif is_int(padding):
        spec = [(int(padding), int(padding))]
    ((lo, hi),) = resolve_padding(spec, (n,), (kernel,), (stride,), (dilation,))
    span = n + lo + hi - dilated_size(kernel, dilation)
    out = span // stride + 1
    if span < 0 or out < 1:
        err = ShapeError(
            f"window does not fit: {FORMULA} = floor(({n} + {lo} + {hi} - {dilation}*({kernel}-1)"
            f" - 1) / {stride}) + 1 = {out} <= 0 (kernel larger than the padded input)"
        )
        err.size = out
        raise err
    return out


def conv_output_shape(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pads: Pads,
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """:func:`conv_output_size` for every spatial dim; the error names the dim that fails."""
    out = []
    for axis, (n, k, s, p, d) in enumerate(zip(spatial, kernel, stride, pads, dilation)):
        try:
            out.append(conv_output_size(n, k, s, p, d))
        except ShapeError as err:
            located = ShapeError(f"spatial dim {axis}: {err}")
            located.axis, located.size = axis, getattr(err, "size", None)
            raise located from None
    return tuple(out)


def padded_shape(spatial: Sequence[int], pads: Pads) -> tuple[int, ...]:
    """Spatial sizes after padding by resolved ``(lo, hi)`` pairs: ``n + lo + hi`` per dim.

    Negative pads crop.

    Example:
        >>> padded_shape((28, 9), ((2, 2), (1, 0)))
        (32, 10)
    """
    return tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads))


def adaptive_windows(n: int, out: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's adaptive-pooling windows for one dim: ``[floor(i*n/o), ceil((i+1)*n/o))``.

    Output ``i`` of ``o = out`` pools the input cells ``start <= j < end`` of a dim of size ``n``.
    The windows cover the input; when ``o`` divides ``n`` they are the non-overlapping windows of
    size ``n // o``, otherwise their sizes differ by one and neighbours may share a cell; for
    ``o > n`` cells repeat (each window has one or two cells).

    Raises:
        ShapeError: ``n < 1`` or ``out < 1``.

    Example:
        >>> adaptive_windows(6, 3), adaptive_windows(5, 3), adaptive_windows(2, 3)
        (((0, 2), (2, 4), (4, 6)), ((0, 2), (1, 4), (3, 5)), ((0, 1), (0, 2), (1, 2)))
    """
    if n < 1 or out < 1:
        raise ShapeError(
            f"adaptive pooling needs an input size and an output size >= 1, got n={n}, o={out}"
        )
    return tuple((i * n // out, -(-(i + 1) * n // out)) for i in range(out))


def conv_transpose_padding(
    padding: PaddingLike,
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    output_padding: Sequence[int],
) -> Pads:
    """Padding of the equivalent stride-1 convolution over the stride-dilated input.

    A transposed convolution is computed as: insert ``s-1`` zeros between input cells (size
    ``(n-1)*s + 1``), pad by the pairs returned here, correlate with the flipped kernel. So its
    output size is ``conv_output_size((n-1)*s + 1, k, 1, pairs, d)``.

    * torch form (an int or ``(lo, hi)`` pairs ``p``, plus ``output_padding`` ``op``):
      ``(d*(k-1) - p_lo, d*(k-1) - p_hi + op)``, giving torch's
      ``out = (n-1)*s - p_lo - p_hi + d*(k-1) + op + 1``.
    * ``"SAME"`` (lax/TF): ``out = n*s``; ``"VALID"``: ``out = n*s + max(d*(k-1)+1 - s, 0)``.
    """
    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in ("SAME", "VALID"):
            raise ShapeError(
                f"ConvTranspose padding {padding!r}: accepted are 'SAME', 'VALID' (lax/TF form) or "
                "torch-style ints / (lo, hi) pairs"
            )
        if any(output_padding):
            raise ShapeError("output_padding only goes with torch-style integer padding")
        pads = []
        for k, s, d in zip(kernel, stride, dilation):
            kd = dilated_size(k, d)
            if mode == "SAME":
                total = kd + s - 2
                lo = kd - 1 if s > kd - 1 else -(-total // 2)
            else:
                total = kd + s - 2 + max(kd - s, 0)
                lo = kd - 1
            pads.append((lo, total - lo))
        return tuple(pads)
    crop = resolve_padding(padding, (0,) * len(kernel), kernel, stride, dilation)
    for op, s, d in zip(output_padding, stride, dilation):
        if not 0 <= op < max(s, d):
            raise ShapeError(
                f"output_padding {tuple(output_padding)} must be >= 0 and smaller than stride or "
                f"dilation (stride {tuple(stride)}, dilation {tuple(dilation)})"
            )
    return tuple(
        (d * (k - 1) - lo, d * (k - 1) - hi + op)
        for (lo, hi), k, d, op in zip(crop, kernel, dilation, output_padding)
    )


def conv_transpose_output_shape(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pads: Pads,
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """Output size of a transposed convolution, via :func:`conv_output_shape` on the dilated input."""
    dilated = [(n - 1) * s + 1 for n, s in zip(spatial, stride)]
    return conv_output_shape(dilated, kernel, (1,) * len(kernel), pads, dilation)


def flat_size(shape: Sequence[int]) -> int:
    """Number of elements of one example of this shape."""
    return math.prod(shape)
