"""Signal-processing views of convolution used by the course texts, as plain functions.

* :func:`correlate` — what CNN layers compute (no kernel flip), modes ``full``/``valid``/``same``
  with ``scipy.signal`` semantics, 1-D and 2-D.
* :func:`convolve` — true convolution (kernel flipped): polynomial products, probability
  distributions of sums, LTI impulse responses.
* :func:`conv_matrix` — the Toeplitz matrix ``T`` with ``T @ x`` equal to a 1-D convolution with
  padding and stride (the course's "Toeplitz view").
* :func:`compose_kernels` / :func:`compose_conv` — the single kernel equal to two stacked linear
  convolutions (associativity: why a nonlinearity is needed between them).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jcnn.layers import shapes
from jcnn.layers.lowering import dimension_numbers

MODES = ("full", "valid", "same")


def _check(x: Any, kernel: Any, mode: str, where: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    if mode not in MODES:
        raise ValueError(f"{where}: mode must be one of {MODES}, got {mode!r}")
    if x.ndim not in (1, 2) or kernel.ndim != x.ndim:
        raise ValueError(
            f"{where}: x and kernel must both be 1-D or both 2-D, got {x.shape} and {kernel.shape}"
        )
    if mode == "valid" and any(k > n for n, k in zip(x.shape, kernel.shape)):
        raise shapes.ShapeError(
            f"{where}: kernel {kernel.shape} larger than input {x.shape} in 'valid' mode"
        )
    return x, kernel


def correlate(x: Any, kernel: Any, mode: str = "valid") -> jnp.ndarray:
    """Cross-correlation ``y[i] = sum_a x[i + a] * kernel[a]`` (what ``Conv`` layers compute).

    Args:
        x: signal, 1-D ``(n,)`` or 2-D ``(h, w)``.
        kernel: same rank as ``x``.
        mode: ``"valid"`` (only full overlaps, ``n - k + 1``), ``"full"`` (every partial overlap,
            ``n + k - 1``) or ``"same"`` (``n``, centred on ``full`` as ``scipy.signal`` does).

    Returns:
        The correlation, same rank as ``x``.
    """
    x, kernel = _check(x, kernel, mode, "correlate")
    dtype = jnp.result_type(x, kernel)
    pads = [(k - 1, k - 1) if mode != "valid" else (0, 0) for k in kernel.shape]
    full = lax.conv_general_dilated(
        x[None, ..., None].astype(dtype),  # one example, one channel: (1, *spatial, 1)
        kernel[..., None, None].astype(dtype),  # (*window, 1, 1)
        window_strides=(1,) * x.ndim,
        padding=pads,
        dimension_numbers=dimension_numbers(x.ndim),
        precision=lax.Precision.HIGHEST,
    )[0, ..., 0]
    if mode != "same":
        return full
    starts = [(f - n) // 2 for f, n in zip(full.shape, x.shape)]
    return full[tuple(slice(s, s + n) for s, n in zip(starts, x.shape))]


def convolve(x: Any, kernel: Any, mode: str = "full") -> jnp.ndarray:
    """True convolution ``y[i] = sum_a x[i - a] * kernel[a]``: correlation with the flipped kernel.

    ``convolve(p, q, "full")`` multiplies polynomials with coefficient vectors ``p`` and ``q``,
    and gives the distribution of a sum of independent integer variables with pmfs ``p``, ``q``.
    Modes as :func:`correlate` (default ``"full"``, as ``numpy.convolve``).
    """
    x, kernel = _check(x, kernel, mode, "convolve")
    return correlate(x, jnp.flip(kernel), mode)


def conv_matrix(
    kernel: Any,
    n: int,
    *,
    stride: int = 1,
    padding: str | int | tuple[int, int] = 0,
    dilation: int = 1,
    flip: bool = False,
) -> np.ndarray:
    """The Toeplitz matrix ``T`` of a 1-D convolution, so that ``conv(x) == T @ x``.

    Row ``i`` holds the kernel placed at input offset ``i*stride - pad_lo`` (taps ``dilation``
    apart); taps falling on the padding are dropped, which is exactly zero padding.

    Args:
        kernel: 1-D kernel of length ``k``.
        n: input length.
        stride, padding, dilation: as for ``Conv`` (padding also ``"SAME"``/``"FULL"``/``(lo, hi)``).
        flip: ``False`` for cross-correlation (CNN layers), ``True`` for true convolution
            (polynomial products: ``conv_matrix(p, len(q), padding="FULL", flip=True) @ q``).

    Returns:
        ``T``: numpy array ``(conv_output_size(n, k, stride, padding, dilation), n)``.
    """
    h = np.asarray(kernel)
    if h.ndim != 1:
        raise ValueError(f"conv_matrix: kernel must be 1-D, got shape {h.shape}")
    if flip:
        h = h[::-1]
    k = h.shape[0]
    spec: shapes.PaddingLike = (
        [(padding[0], padding[1])] if isinstance(padding, (tuple, list)) else padding
    )
    ((lo, hi),) = shapes.resolve_padding(spec, (n,), (k,), (stride,), (dilation,))
    out = shapes.conv_output_size(n, k, stride, (lo, hi), dilation)
    t = np.zeros((out, n), dtype=np.result_type(h.dtype, np.float32))
    for i in range(out):
        for a in range(k):
            j = i * stride - lo + a * dilation
            if 0 <= j < n:
                t[i, j] += h[a]
    return t


def compose_kernels(first: Any, second: Any) -> jnp.ndarray:
    """The one kernel equal to correlating with ``first`` and then with ``second`` (VALID, stride 1).

    Correlation is associative through true convolution: ``(x * k1) * k2 = x * (k1 conv k2)``,
    so two stacked linear convolutions are one convolution with a larger kernel; only a
    nonlinearity between them (ReLU) makes depth add expressive power.

    Args:
        first: kernel ``(*window1, C_in, C_mid)`` (jcnn layout).
        second: kernel ``(*window2, C_mid, C_out)``.

    Returns:
        Kernel ``(*(window1 + window2 - 1), C_in, C_out)``.
    """
    first, second = jnp.asarray(first), jnp.asarray(second)
    rank = first.ndim - 2
    if second.ndim != first.ndim or rank < 1 or first.shape[-1] != second.shape[-2]:
        raise ValueError(
            f"compose_kernels: kernels must be (*window, C_in, C_mid) and (*window, C_mid, C_out) "
            f"of the same rank, got {first.shape} and {second.shape}"
        )
    # K[c, i, o] = sum_m sum_{a + b = c} first[a, i, m] * second[b, m, o]: a full convolution over
    # the window axes, computed as a correlation of `first` (C_in as batch) with flipped `second`.
    lhs = jnp.moveaxis(first, -2, 0)  # (C_in, *w1, C_mid)
    rhs = jnp.flip(second, tuple(range(rank)))  # (*w2, C_mid, C_out)
    w2 = second.shape[:rank]
    out = lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=(1,) * rank,
        padding=[(k - 1, k - 1) for k in w2],
        dimension_numbers=dimension_numbers(rank),
        precision=lax.Precision.HIGHEST,
    )  # (C_in, *w, C_out)
    return jnp.moveaxis(out, 0, -2)


def compose_conv(first: dict, second: dict) -> dict:
    """Params of the one ``Conv`` equal to two stacked linear ``Conv`` layers (VALID, stride 1).

    The bias of the composition is ``b2 + sum over window and C_mid of k2 * b1``.

    Args:
        first: ``{"kernel": (*w1, C_in, C_mid), "bias": (C_mid,)}`` (bias optional).
        second: ``{"kernel": (*w2, C_mid, C_out), "bias": (C_out,)}`` (bias optional).

    Returns:
        ``{"kernel": (*(w1 + w2 - 1), C_in, C_out), "bias": (C_out,)}``.
    """
    kernel = compose_kernels(first["kernel"], second["kernel"])
    k2 = jnp.asarray(second["kernel"])
    bias = jnp.zeros((k2.shape[-1],), kernel.dtype)
    if "bias" in first:
        bias = bias + jnp.einsum("...mo,m->o", k2, jnp.asarray(first["bias"]))
    if "bias" in second:
        bias = bias + jnp.asarray(second["bias"])
    return {"kernel": kernel, "bias": bias}
