"""Alternative lowerings of convolution and max-pooling, chosen per backend for speed.

Every lowering computes the same function as the native one (``lax.conv_general_dilated`` /
``lax.reduce_window``): the forward values are the native ones bit for bit, and only the way the
DERIVATIVES are formed changes. Each alternative is a ``jax.custom_jvp`` whose tangent rule is
linear in the tangents, so reverse mode (``grad``) comes from JAX transposing that rule, forward
mode (``jvp``, ``jacfwd``) works as well, and higher derivatives differentiate the rule itself.

Conv lowerings (``Conv(..., lowering=...)``):

* ``"native"``: ``lax.conv_general_dilated`` and its built-in derivative rules.
* ``"patches"``: native forward; the tangent is written as matrix products on im2col patches,
  ``t_y = patches(t_x) @ K + patches(x) @ t_K``. Transposed by ``grad`` this gives the filter
  gradient as ONE matmul ``patches(x)^T @ g`` over every output position of every example (the
  patches come from a gather with constant indices), and the input gradient as ``g @ K^T``
  folded back by strided pads and adds (col2im). XLA:CPU lowers the filter gradient of a
  convolution with few input channels (the first layer of a CNN) and the input gradient inside
  loops (micro-batches, ``lax.scan`` epochs) to slow generic code; these matmuls avoid it.
  Supports every padding, stride, dilation and ``groups`` (grouped contractions by ``einsum``).

Max-pool lowerings (``MaxPool(..., lowering=...)``):

* ``"native"``: ``lax.reduce_window`` whose gradient XLA:CPU turns into an iota + scatter.
* ``"mask"``: native forward; the tangent is ``t`` at the FIRST maximum of each window (row-major
  order within the window, the cell ``select_and_scatter`` picks, so ties route exactly as
  natively) and the gradient is one elementwise select. Only for non-overlapping windows
  (``stride == window``, any padding); other pools fall back to ``"native"``.

``"auto"`` (the default) is the rule, decided when the layer is traced:

* on the CPU backend, conv -> ``"patches"`` when ``C_in / groups <= 8`` (input layers and thin
  early layers, where XLA's filter gradient is slowest and the patches stay small), else
  ``"native"`` (measured: with 16 or more input channels per group the native gradients of a
  3x3 conv were up to 2.5x faster than the patches ones); max-pool -> ``"mask"`` when the
  windows do not overlap, else ``"native"``;
* on every other backend (GPU, TPU): ``"native"`` for both (their convolution libraries already
  produce good gradients; measure before changing this).

Measured on a 2-core x86 CPU (XLA 0.10.2; course CNN, batch 1,000, Adam; process CPU time per
step, A/B in one process): native 493 ms, ``"auto"`` 325 ms (1.5x), ``"auto"`` with
``microbatches=8`` in :mod:`jcnn.train` 216 ms (2.3x). At batch 128: 36.9 -> 28.2 ms (1.3x).
See docs/benchmarks.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

CONV_LOWERINGS = ("auto", "native", "patches")
POOL_LOWERINGS = ("auto", "native", "mask")
Pads = tuple[tuple[int, int], ...]

# "auto" on CPU uses patches while C_in / groups is at most this.
PATCHES_MAX_CHANNELS = 8


def check_lowering(lowering: str, allowed: Sequence[str], layer: str) -> str:
    """Returns ``lowering`` when it is one of ``allowed``; raises ``ValueError`` otherwise."""
    if lowering not in allowed:
        raise ValueError(f"{layer} lowering must be one of {tuple(allowed)}, got {lowering!r}")
    return lowering


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def resolve_conv_lowering(
    lowering: str, window: Sequence[int], in_channels: int, groups: int
) -> str:
    """The concrete conv lowering for ``lowering`` (``"auto"`` follows the module's rule)."""
    if lowering != "auto":
        return lowering
    del window  # the rule depends on the channels per group only (see the module docstring)
    return "patches" if _on_cpu() and in_channels // groups <= PATCHES_MAX_CHANNELS else "native"


def resolve_pool_lowering(lowering: str, window: Sequence[int], strides: Sequence[int]) -> str:
    """The concrete max-pool lowering; ``"mask"`` needs ``stride == window`` (else native)."""
    if tuple(window) != tuple(strides):
        return "native"
    if lowering == "auto":
        return "mask" if _on_cpu() else "native"
    return lowering


# ---------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------


def dimension_numbers(rank: int) -> lax.ConvDimensionNumbers:
    """Batch-of-one, channels-last layouts for ``rank`` spatial dims (NHWC / HWIO / NHWC)."""
    spatial = tuple(range(1, rank + 1))
    io = (0, rank + 1, *spatial)
    kernel = (rank + 1, rank, *range(rank))
    return lax.ConvDimensionNumbers(io, kernel, io)


def _native_conv(x, kernel, strides, pads, dilation, groups, precision):
    return lax.conv_general_dilated(
        x[None],
        kernel,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=dimension_numbers(len(strides)),
        feature_group_count=groups,
        precision=precision,
    )[0]


def _geometry(shape, window, strides, pads, dilation):
    """Padded spatial sizes and output spatial sizes of one example."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(shape, pads))
    out = tuple(
        (p - d * (k - 1) - 1) // s + 1 for p, k, s, d in zip(padded, window, strides, dilation)
    )
    return padded, out


def _pad(x, pads, value=0.0):
    config = [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def patches_by_slices(x, window, strides, pads, dilation):
    """im2col by strided slices: ``(*out, K, C)`` with ``K = prod(window)`` (row-major taps).

    Transposes (for ``grad``) to pads and adds, which XLA fuses into one loop.
    """
    xp = _pad(x, pads)
    _, out = _geometry(x.shape[:-1], window, strides, pads, dilation)
    taps = []
    for tap in itertools.product(*(range(k) for k in window)):
        start = [t * d for t, d in zip(tap, dilation)]
        limit = [a + (o - 1) * s + 1 for a, o, s in zip(start, out, strides)]
        taps.append(lax.slice(xp, (*start, 0), (*limit, x.shape[-1]), (*strides, 1)))
    return jnp.stack(taps, axis=-2)


def patches_by_gather(x, window, strides, pads, dilation):
    """im2col by one gather with constant indices: ``(*out, K, C)``; never differentiated."""
    xp = _pad(x, pads)
    padded, out = _geometry(x.shape[:-1], window, strides, pads, dilation)
    rank = len(window)
    index = np.zeros((*out, *window), np.int64)
    for axis in range(rank):
        pos = np.arange(out[axis]) * strides[axis]
        tap = np.arange(window[axis]) * dilation[axis]
        shape_o = [1] * (2 * rank)
        shape_o[axis] = out[axis]
        shape_t = [1] * (2 * rank)
        shape_t[rank + axis] = window[axis]
        coord = pos.reshape(shape_o) + tap.reshape(shape_t)
        index = index + coord * math.prod(padded[axis + 1 :])
    index = jnp.asarray(index.reshape(*out, math.prod(window)).astype(np.int32))
    flat = xp.reshape(math.prod(padded), x.shape[-1])
    return flat.at[index].get(mode="promise_in_bounds")


def _contract(patches, kernel, groups, precision):
    """``patches (*out, K, C_in) x kernel (*window, C_in/groups, C_out) -> (*out, C_out)``."""
    k = patches.shape[-2]
    c_in = patches.shape[-1]
    c_out = kernel.shape[-1]
    if groups == 1:
        flat = patches.reshape(*patches.shape[:-2], k * c_in)
        return jnp.dot(flat, kernel.reshape(k * c_in, c_out), precision=precision)
    cg, og = c_in // groups, c_out // groups
    p = patches.reshape(*patches.shape[:-1], groups, cg)
    w = kernel.reshape(k, cg, groups, og)
    y = jnp.einsum("...kgc,kcgo->...go", p, w, precision=precision)
    return y.reshape(*y.shape[:-2], c_out)


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _patches_conv(x, kernel, strides, pads, dilation, groups, precision):
    return _native_conv(x, kernel, strides, pads, dilation, groups, precision)


def _patches_conv_jvp(strides, pads, dilation, groups, precision, primals, tangents):
    x, kernel = primals
    tx, tk = tangents
    window = kernel.shape[:-2]
    y = _native_conv(x, kernel, strides, pads, dilation, groups, precision)
    ty = None
    if not isinstance(tx, SymbolicZero):
        p = patches_by_slices(tx, window, strides, pads, dilation)
        ty = _contract(p, kernel, groups, precision)
    if not isinstance(tk, SymbolicZero):
        p = patches_by_gather(x, window, strides, pads, dilation)
        term = _contract(p, tk, groups, precision)
        ty = term if ty is None else ty + term
    if ty is None:
        ty = jnp.zeros_like(y)
    return y, ty


_patches_conv.defjvp(_patches_conv_jvp, symbolic_zeros=True)


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: Sequence[int],
    pads: Pads,
    dilation: Sequence[int],
    groups: int = 1,
    precision: lax.Precision | None = None,
    lowering: str = "native",
) -> jax.Array:
    """Cross-correlation of ONE example, by the given concrete lowering (not ``"auto"``).

    Args:
        x: one example ``(*spatial, C_in)``.
        kernel: ``(*window, C_in // groups, C_out)``, already in ``x.dtype``.
        strides, pads, dilation: per spatial dim; ``pads`` as resolved ``(lo, hi)`` pairs.
        groups: feature groups.
        precision: passed to the convolution and the matmuls.
        lowering: ``"native"`` or ``"patches"`` (see the module docstring).

    Shapes:
        x: ``(*spatial, C_in)`` -> ``(*spatial', C_out)`` as ``lax.conv_general_dilated``.
    """
    strides, dilation = tuple(strides), tuple(dilation)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if lowering == "native":
        return _native_conv(x, kernel, strides, pads, dilation, groups, precision)
    if lowering == "patches":
        return _patches_conv(x, kernel, strides, pads, dilation, groups, precision)
    raise ValueError(f"conv lowering must be 'native' or 'patches', got {lowering!r}")


# ---------------------------------------------------------------------------------------------
# Max-pool
# ---------------------------------------------------------------------------------------------


def _native_max_pool(x, window, pads):
    return lax.reduce_window(x, -jnp.inf, lax.max, (*window, 1), (*window, 1), (*pads, (0, 0)))


def _windows(x, window, pads, fill):
    """Pads with ``fill``, crops to whole windows and splits: ``(o_1, k_1, ..., o_r, k_r, C)``."""
    xp = _pad(x, pads, fill)
    out = tuple(n // k for n, k in zip(xp.shape[:-1], window))
    xp = xp[tuple(slice(0, o * k) for o, k in zip(out, window))]
    split = [d for o, k in zip(out, window) for d in (o, k)]
    return xp.reshape(*split, x.shape[-1])


def _first_max_mask(xw, y, window):
    """True at the first (row-major within the window) cell equal to the window's max ``y``."""
    rank = len(window)
    win_axes = tuple(2 * i + 1 for i in range(rank))
    order = jnp.zeros(xw.shape, jnp.int32)
    for i, axis in enumerate(win_axes):
        order = order + lax.broadcasted_iota(jnp.int32, xw.shape, axis) * math.prod(window[i + 1 :])
    yb = jnp.expand_dims(y, win_axes)
    candidate = jnp.where(xw == yb, order, math.prod(window))
    first = jnp.min(candidate, axis=win_axes, keepdims=True)
    return order == first, win_axes


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _mask_max_pool(x, window, pads):
    return _native_max_pool(x, window, pads)


@_mask_max_pool.defjvp
def _mask_max_pool_jvp(window, pads, primals, tangents):
    (x,), (t,) = primals, tangents
    y = _native_max_pool(x, window, pads)
    mask, win_axes = _first_max_mask(_windows(x, window, pads, -jnp.inf), y, window)
    tw = _windows(t, window, pads, 0.0)
    return y, jnp.sum(jnp.where(mask, tw, jnp.zeros((), t.dtype)), axis=win_axes)


def max_pool(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    pads: Pads,
    *,
    lowering: str = "native",
) -> jax.Array:
    """Max over windows of ONE example ``(*spatial, C)``; padded cells are ``-inf``.

    Args:
        x: one example.
        window, strides: per spatial dim.
        pads: resolved ``(lo, hi)`` per spatial dim.
        lowering: ``"native"`` or ``"mask"`` (``"mask"`` needs ``strides == window``).

    Shapes:
        ``(*spatial, C) -> (*spatial', C)``, as ``lax.reduce_window``.
    """
    window, strides = tuple(window), tuple(strides)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if lowering == "mask" and window == strides:
        return _mask_max_pool(x, window, pads)
    if lowering not in ("native", "mask"):
        raise ValueError(f"max_pool lowering must be 'native' or 'mask', got {lowering!r}")
    return lax.reduce_window(x, -jnp.inf, lax.max, (*window, 1), (*strides, 1), (*pads, (0, 0)))
