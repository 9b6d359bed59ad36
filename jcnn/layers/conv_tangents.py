"""The tangent rules of jcnn's conv lowerings: im2col patches and canonical layouts.

Each function here computes the same values as ``lax.conv_general_dilated`` of ONE example in
jcnn's layouts (:func:`dimension_numbers`); they differ in how JAX will TRANSPOSE them, which is
what forms the gradients. :func:`conv_tangent` is the tangent ``t_y`` of a conv by one method:

* ``"patches"``: matrix products on im2col patches, ``patches(t_x) @ K + patches(x) @ t_K``
  (:func:`patches_by_slices` for the input term, whose transpose is pads and adds;
  :func:`patches_by_gather` for the kernel term, never differentiated);
* ``"canonical"``: the native rule's two convolutions with their operands laid out so that their
  transposes are XLA:CPU's canonical ``b01f_01io->b01f`` convolutions;
* ``"native"``: the native rule, ``conv(t_x, K) + conv(x, t_K)``.

Which method a conv uses, and the ``jax.custom_jvp`` that installs it, is
:mod:`jcnn.layers.lowering`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jcnn.layers import shapes

__all__ = [
    "conv_tangent",
    "dimension_numbers",
    "native_conv",
    "pad",
    "patches_by_gather",
    "patches_by_slices",
    "spatial_sizes",
]


def dimension_numbers(rank: int) -> lax.ConvDimensionNumbers:
    """jcnn's channels-last conv layouts for ``rank`` spatial dims: NHWC / HWIO / NHWC.

    Input and output ``(N, *spatial, C)``, kernel ``(*window, C_in // groups, C_out)``; the one
    definition every ``lax.conv_general_dilated`` call in jcnn uses.

    Example:
        >>> dimension_numbers(2)
        ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))
    """
    spatial = tuple(range(1, rank + 1))
    io = (0, rank + 1, *spatial)
    kernel = (rank + 1, rank, *range(rank))
    return lax.ConvDimensionNumbers(io, kernel, io)


def _conv(lhs, rhs, dims, strides, pads, dilation, groups, precision):
    """``lax.conv_general_dilated`` of jcnn's geometry with the layouts ``dims``."""
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=dims,
        feature_group_count=groups,
        precision=precision,
    )


def native_conv(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
    groups: int,
    precision: Any,
) -> jax.Array:
    """``lax.conv_general_dilated`` of ONE example ``(*spatial, C_in)`` in jcnn's layouts."""
    dims = dimension_numbers(len(strides))
    return _conv(x[None], kernel, dims, strides, pads, dilation, groups, precision)[0]


def spatial_sizes(
    shape: Sequence[int],
    window: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Padded spatial sizes and output spatial sizes of one example (from :mod:`jcnn.shapes`)."""
    out = shapes.conv_output_shape(shape, window, strides, pads, dilation)
    return shapes.padded_shape(shape, pads), out


def pad(x: jax.Array, pads: tuple[tuple[int, int], ...], value: float = 0.0) -> jax.Array:
    """``x`` ``(*spatial, C)`` padded by ``pads`` (``(lo, hi)`` per spatial dim) with ``value``."""
    config = [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
    return lax.pad(x, jnp.asarray(value, x.dtype), config)


def patches_by_slices(
    x: jax.Array,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
) -> jax.Array:
    """im2col by strided slices: ``(*out, K, C)`` with ``K = prod(window)`` (row-major taps).

    Transposes (for ``grad``) to pads and adds, which XLA fuses into one loop.
    """
    xp = pad(x, pads)
    _, out = spatial_sizes(x.shape[:-1], window, strides, pads, dilation)
    taps = []
    for tap in itertools.product(*(range(k) for k in window)):
        start = [t * d for t, d in zip(tap, dilation)]
        limit = [a + (o - 1) * s + 1 for a, o, s in zip(start, out, strides)]
        taps.append(lax.slice(xp, (*start, 0), (*limit, x.shape[-1]), (*strides, 1)))
    return jnp.stack(taps, axis=-2)


def patches_by_gather(
    x: jax.Array,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    dilation: tuple[int, ...],
) -> jax.Array:
    """im2col by one gather with constant indices: ``(*out, K, C)``; never differentiated."""
    xp = pad(x, pads)
    padded, out = spatial_sizes(x.shape[:-1], window, strides, pads, dilation)
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
    gather = jnp.asarray(index.reshape(*out, math.prod(window)).astype(np.int32))
    flat = xp.reshape(math.prod(padded), x.shape[-1])
    return flat.at[gather].get(mode="promise_in_bounds")


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


def _canonical_input_term(tx, kernel, strides, pads, dilation, groups, precision):
    """``conv(tx, K)`` with the kernel stored ``(*window, C_out, C_in/groups)`` (``K`` swapped).

    The same values as the native tangent; JAX's transpose of a conv swaps the kernel's two
    feature roles, so this layout makes the INPUT gradient a canonical ``b01f_01io->b01f`` conv
    (of the spatially reversed swapped kernel) instead of ``b01f_01oi->b01f``.
    """
    rank = len(strides)
    io = (0, rank + 1, *range(1, rank + 1))
    swapped = (rank, rank + 1, *range(rank))  # (out feature, in feature, spatial) of the kernel
    kernel_t = jnp.swapaxes(kernel, -1, -2)
    dims = lax.ConvDimensionNumbers(io, swapped, io)
    return _conv(tx[None], kernel_t, dims, strides, pads, dilation, groups, precision)[0]


def _canonical_kernel_term(x, tk, strides, pads, dilation, groups, precision):
    """``conv(x, tK)`` laid out so that its transpose (the FILTER gradient) is canonical.

    The example goes in as ``(C_in, *spatial, N)`` (features first, batch last), the kernel
    tangent as ``(C_in/groups, *window, C_out)`` and the output comes out ``(*spatial', N,
    C_out)``; JAX's transpose of a conv with respect to its kernel swaps batch and feature of the
    input and output specs, which turns these into ``b01f_01io->b01f``: the filter gradient is
    ``conv(x^T, g^T)`` in the layout XLA:CPU's convolution runtime takes. Native values.

    Grouped convs (``1 < groups < C_in``) are split into one such conv per group: the transpose
    of one grouped conv is a ``batch_group_count`` conv, which XLA:CPU rewrites into a
    non-canonical one. Depthwise ones (``groups == C_in``) stay whole (XLA makes that canonical).
    """
    c_in, c_out = x.shape[-1], tk.shape[-1]
    if 1 < groups < c_in:
        cg, og = c_in // groups, c_out // groups
        parts = [
            _canonical_kernel_term(
                x[..., g * cg : (g + 1) * cg],
                tk[..., g * og : (g + 1) * og],
                strides,
                pads,
                dilation,
                1,
                precision,
            )
            for g in range(groups)
        ]
        return jnp.concatenate(parts, axis=-1)
    rank = len(strides)
    spatial = tuple(range(1, rank + 1))
    lhs = (rank + 1, 0, *spatial)  # batch last, feature first
    rhs = (rank + 1, 0, *spatial)  # out feature last, in feature first
    out = (rank, rank + 1, *range(rank))  # (*spatial', N, C_out)
    xt = jnp.moveaxis(x, -1, 0)[..., None]
    tkt = jnp.moveaxis(tk, -2, 0)
    dims = lax.ConvDimensionNumbers(lhs, rhs, out)
    return _conv(xt, tkt, dims, strides, pads, dilation, groups, precision)[..., 0, :]


def conv_tangent(
    method: str, geometry: Any, x: jax.Array, kernel: jax.Array, tx: Any, tk: Any
) -> jax.Array:
    """``t_y`` of the conv at ``(x, kernel)`` for tangents ``tx``, ``tk`` (``None``: zero).

    ``method``: ``"patches"``: matmuls on im2col patches; ``"canonical"``: the two convs of the
    native rule with their operands laid out so that their TRANSPOSES (the gradients) are
    canonical convolutions; ``"native"``: the native rule (a conv is bilinear, so its tangent is
    ``conv(tx, K) + conv(x, tK)``, exactly what JAX's own rule forms).
    """
    strides, pads, dilation, groups, precision = geometry
    window = kernel.shape[:-2]
    terms = []
    if tx is not None:
        if method == "patches":
            p = patches_by_slices(tx, window, strides, pads, dilation)
            terms.append(_contract(p, kernel, groups, precision))
        elif method == "canonical":
            terms.append(_canonical_input_term(tx, kernel, *geometry))
        else:
            terms.append(native_conv(tx, kernel, *geometry))
    if tk is not None:
        if method == "patches":
            p = patches_by_gather(x, window, strides, pads, dilation)
            terms.append(_contract(p, tk, groups, precision))
        elif method == "canonical":
            terms.append(_canonical_kernel_term(x, tk, *geometry))
        else:
            terms.append(native_conv(x, tk, *geometry))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]
