"""Independent NumPy references for convolution, transposed convolution and pooling.

Each works on ONE example, channels-last ``(*spatial, C)``, for 1, 2 or 3 spatial dims, and is
written as explicit loops over output positions and kernel taps straight from the definitions,
sharing no code with jcnn (no lax, no jcnn.shapes). Padding is explicit ``((lo, hi), ...)`` pairs;
negative values crop.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from jax import lax

Pairs = Sequence[tuple[int, int]]


def _pad_or_crop(x: np.ndarray, pads: Pairs, fill: float = 0.0) -> np.ndarray:
    """Pads the spatial axes of ``x`` (*spatial, C) with ``fill``; negative amounts crop."""
    widths = [(max(lo, 0), max(hi, 0)) for lo, hi in pads] + [(0, 0)]
    x = np.pad(x, widths, constant_values=fill)
    index = tuple(
        slice(max(-lo, 0), x.shape[axis] - max(-hi, 0)) for axis, (lo, hi) in enumerate(pads)
    )
    return x[index]


def np_conv(
    x: np.ndarray,
    kernel: np.ndarray,
    stride: Sequence[int],
    pads: Pairs,
    dilation: Sequence[int],
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlation of one example: ``x (*spatial, C_in)``, ``kernel (*k, C_in//g, C_out)``.

    ``y[o, co] = sum_{t, ci} xp[o*s + t*d, g(co)*C_in/g + ci] * kernel[t, ci, co]`` with ``xp`` the
    padded input and ``g(co)`` the group of output channel ``co``.
    """
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    rank = x.ndim - 1
    window = kernel.shape[:rank]
    cin, cout = x.shape[-1], kernel.shape[-1]
    cin_g, cout_g = cin // groups, cout // groups
    assert kernel.shape[-2] == cin_g and cin % groups == 0 and cout % groups == 0
    xp = _pad_or_crop(x, pads)
    out_shape = tuple(
        (xp.shape[i] - dilation[i] * (window[i] - 1) - 1) // stride[i] + 1 for i in range(rank)
    )
    y = np.zeros((*out_shape, cout))
    for o in itertools.product(*(range(n) for n in out_shape)):
        for t in itertools.product(*(range(k) for k in window)):
            pos = tuple(o[i] * stride[i] + t[i] * dilation[i] for i in range(rank))
            for g in range(groups):
                xs = xp[pos][g * cin_g : (g + 1) * cin_g]
                w = kernel[t][:, g * cout_g : (g + 1) * cout_g]
                y[o][g * cout_g : (g + 1) * cout_g] += np.einsum("i,io->o", xs, w)
    return y


def np_conv_transpose(
    x: np.ndarray,
    kernel: np.ndarray,
    stride: Sequence[int],
    crop_pads: Pairs,
    dilation: Sequence[int],
    output_padding: Sequence[int],
) -> np.ndarray:
    """Transposed convolution by its scatter definition (PyTorch's ``ConvTranspose*d``).

    ``x (*spatial, C_in)``, ``kernel (*k, C_in, C_out)``. Every input cell ``i`` adds
    ``x[i, ci] * kernel[t, ci, :]`` at output position ``i*s + t*d - p_lo``; the output has
    ``(n-1)*s + d*(k-1) + 1 - p_lo - p_hi + output_padding`` cells per dim, and contributions
    that land outside it are dropped.
    """
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    rank = x.ndim - 1
    window = kernel.shape[:rank]
    out_shape = tuple(
        (x.shape[i] - 1) * stride[i]
        + dilation[i] * (window[i] - 1)
        + 1
        - crop_pads[i][0]
        - crop_pads[i][1]
        + output_padding[i]
        for i in range(rank)
    )
    y = np.zeros((*out_shape, kernel.shape[-1]))
    for i in itertools.product(*(range(n) for n in x.shape[:rank])):
        for t in itertools.product(*(range(k) for k in window)):
            pos = tuple(
                i[a] * stride[a] + t[a] * dilation[a] - crop_pads[a][0] for a in range(rank)
            )
            if all(0 <= p < n for p, n in zip(pos, out_shape)):
                y[pos] += x[i] @ kernel[t]
    return y


def np_pool(
    x: np.ndarray,
    window: Sequence[int],
    stride: Sequence[int],
    pads: Pairs,
    kind: str,
) -> np.ndarray:
    """Pooling of one example ``(*spatial, C)``, each channel separately, by a window loop.

    ``kind``: ``"max"`` (padded cells never win), ``"sum"`` (padded cells are 0), ``"avg"``
    (sum / prod(window): padded cells counted) or ``"avg_exclude"`` (sum / number of real cells).
    """
    x = np.asarray(x, np.float64)
    rank = x.ndim - 1
    real = _pad_or_crop(np.ones(x.shape[:-1] + (1,)), pads)[..., 0] > 0
    xp = _pad_or_crop(x, pads)
    out_shape = tuple((xp.shape[i] - window[i]) // stride[i] + 1 for i in range(rank))
    y = np.zeros((*out_shape, x.shape[-1]))
    for o in itertools.product(*(range(n) for n in out_shape)):
        cells = tuple(slice(o[i] * stride[i], o[i] * stride[i] + window[i]) for i in range(rank))
        values = xp[cells].reshape(-1, x.shape[-1])
        mask = real[cells].reshape(-1)
        if kind == "max":
            y[o] = values[mask].max(axis=0)
        elif kind == "sum":
            y[o] = values[mask].sum(axis=0)
        elif kind == "avg":
            y[o] = values[mask].sum(axis=0) / np.prod(window)
        elif kind == "avg_exclude":
            y[o] = values[mask].sum(axis=0) / mask.sum()
        else:
            raise ValueError(f"unknown pooling kind {kind!r}")
    return y


def independent_pads(padding, spatial, window, strides, dilations):
    """``((lo, hi), ...)`` from the definitions (lax's own rule for SAME), without jcnn's resolver."""
    pads = []
    for i, (n, k, s, d) in enumerate(zip(spatial, window, strides, dilations)):
        if padding == "VALID":
            pads.append((0, 0))
        elif padding == "SAME":
            pads.append(tuple(lax.padtype_to_pads((n,), (d * (k - 1) + 1,), (s,), "SAME")[0]))
        elif padding == "FULL":
            pads.append((d * (k - 1),) * 2)
        elif isinstance(padding, int):
            pads.append((padding, padding))
        else:
            p = padding[i]
            pads.append((p, p) if isinstance(p, int) else tuple(p))
    return tuple(pads)


def per_dim(value, rank):
    """An int stays an int; a 3-entry list/tuple is cut to ``rank`` entries (one per dim)."""
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return type(value)(value[:rank])
    return value
