"""Alternative lowerings of convolution and max-pooling, chosen per platform for speed.

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
* ``"canonical"``: native forward; the tangent is the native rule's two convolutions with their
  operands laid out (explicit transposes) so that their TRANSPOSES, the gradients, come out in
  XLA:CPU's canonical layout ``b01f_01io->b01f``: the input gradient as the conv of ``g`` with
  the flipped kernel stored ``(*window, C_out, C_in)``, the filter gradient as the conv of
  ``x^T (C_in, *spatial, N)`` with ``g^T (*spatial', N, C_out)``, per group for grouped convs.
  XLA:CPU runs only canonical convolutions on its convolution runtime (Eigen) and canonicalizes
  the others (JAX's native gradients: ``f01b_i01o->01bf`` and ``b01f_01oi->b01f``) in the
  ENTRY computation only (``ConvCanonicalization``); inside a ``while`` body (``lax.scan``
  epochs, ``fori_loop``, micro-batch loops) they fall to XLA's generic loop emitter, 10-35x
  slower, and no ``XLA_FLAGS`` option changes that (XLA 0.10.2). Outside loops this is the
  program XLA makes of the native gradients, so it costs nothing there.
Max-pool lowerings (``MaxPool(..., lowering=...)``):

* ``"native"``: ``lax.reduce_window`` whose gradient XLA:CPU turns into an iota + scatter.
* ``"mask"``: native forward; the tangent is ``t`` at the FIRST maximum of each window (row-major
  order within the window, the cell ``select_and_scatter`` picks, so ties route exactly as
  natively) and the gradient is one elementwise select. Only for non-overlapping windows
  (``stride == window``, any padding); other pools fall back to ``"native"``.

``"auto"`` (the default) is the rule below. Its shape part is decided when the layer is traced;
its platform part when the program is LOWERED, for the platform it is lowered for (the one of
``jax.jit``'s devices, or each of ``lowering_platforms`` / ``jax.export`` platforms), not by
``jax.default_backend()``: the forward pass is the native operation on every platform, and the
tangent rule is ``jax.lax.platform_dependent(cpu=<alternative>, default=<native rule>)``, so a
program lowered for CPU contains only the alternative's derivative and one lowered for a GPU or
TPU only the native one (see :func:`resolve_conv_lowering`, :func:`resolve_pool_lowering`):

* for CPU, conv -> ``"patches"`` when ``C_in / groups <= 8`` (input layers and thin early
  layers, where XLA's filter gradient is slowest and the patches stay small), else
  ``"canonical"`` (with 16 or more input channels per group the native gradients of a 3x3 conv
  were up to 2.5x faster than the patches ones OUTSIDE loops, and ``"canonical"`` is exactly
  those there, but stays fast inside loops); max-pool -> ``"mask"`` when the windows do not
  overlap, else ``"native"``;
* for every other platform (GPU, TPU): ``"native"`` for both (their convolution libraries
  already produce good gradients; measure before changing this).

Measured on a 2-core x86 CPU (XLA 0.10.2; course CNN, batch 1,000, Adam; process CPU time per
step, A/B in one process): native 493 ms, ``"auto"`` 325 ms (1.5x), ``"auto"`` with
``microbatches=8`` in :mod:`jcnn.train` 216 ms (2.3x). At batch 128: 36.9 -> 28.2 ms (1.3x).
Inside loops (``python -m bench.lowering_loops``: a training step with Adam, ``lax.scan`` over
the batches vs one jitted step dispatched per batch; wall ms per step), "auto" with
``"native"`` for wide convs (the rule before ``"canonical"``) -> "auto" now:

==============================================  =================  ===================
model (batch)                                   scan               dispatch
==============================================  =================  ===================
3x ``Conv(16, 3)`` on 28x28x1 (64)              336 -> 28.6        33.7 -> 34.6
``cifar_resnet18`` 32x32x3 (32)                 41,754 -> 1,152    1,138 -> 1,115
``mobilenet_v2(num_classes=10)`` 32x32x3 (32)   236 -> 130         133 -> 133
course CNN (64 / 1,000; thin convs: unchanged)  6.0 / 92           5.6 / 125
==============================================  =================  ===================

With ``"canonical"`` for thin convs too (``PATCHES_MAX_CHANNELS = 0``) the depthwise convs of
MobileNetV2 took 2.2x the CPU time in scan and the course CNN at batch 1,000 1.2x: ``"patches"``
stays the rule for them.
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

from jcnn.layers import shapes

CONV_LOWERINGS = ("auto", "native", "patches", "canonical")
POOL_LOWERINGS = ("auto", "native", "mask")
Pads = tuple[tuple[int, int], ...]

# "auto" on CPU uses patches while C_in / groups is at most this.
PATCHES_MAX_CHANNELS = 8
# The platform (``lax.platform_dependent`` name) where "auto" picks the alternative lowerings.
AUTO_PLATFORM = "cpu"
# "auto" on CPU for convs with more than PATCHES_MAX_CHANNELS per group. "native" gives the rule
# jcnn had before "canonical" existed (bench/lowering_loops.py sets it to compare the two).
CPU_WIDE_CONV = "canonical"


def check_lowering(lowering: str, allowed: Sequence[str], layer: str) -> str:
    """Returns ``lowering`` when it is one of ``allowed``; raises ``ValueError`` otherwise."""
    if lowering not in allowed:
        raise ValueError(f"{layer} lowering must be one of {tuple(allowed)}, got {lowering!r}")
    return lowering


def _auto_conv(platform: str, in_channels: int, groups: int) -> str:
    """The rule of ``"auto"`` for a conv on ``platform`` (see the module docstring)."""
    if platform != AUTO_PLATFORM:
        return "native"
    return "patches" if in_channels // groups <= PATCHES_MAX_CHANNELS else CPU_WIDE_CONV


def resolve_conv_lowering(
    lowering: str,
    window: Sequence[int],
    in_channels: int,
    groups: int,
    platform: str | None = None,
) -> str:
    """The conv lowering that ``lowering`` means for this shape (``"auto"``: the module's rule).

    Args:
        lowering: one of :data:`CONV_LOWERINGS`; explicit ones are returned as they are.
        window: the kernel's spatial size (the rule does not depend on it today).
        in_channels, groups: ``C_in`` and feature groups of the conv.
        platform: ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``: the concrete choice there.
            ``None`` (while tracing, when the platform is not known yet): ``"native"`` when every
            platform gets it, else ``"auto"``, which :func:`conv` decides when it is lowered.

    Example:
        >>> [resolve_conv_lowering("auto", (5, 5), 1, 1, p) for p in ("cpu", "cuda", None)]
        ['patches', 'native', 'auto']
        >>> resolve_conv_lowering("auto", (3, 3), 64, 1, "cpu")  # wide: canonical layouts
        'canonical'
        >>> resolve_conv_lowering("auto", (3, 3), 64, 1, "cuda")
        'native'
    """
    if lowering != "auto":
        return lowering
    del window  # the rule depends on the channels per group only (see the module docstring)
    if platform is not None:
        return _auto_conv(platform, in_channels, groups)
    on_cpu = _auto_conv(AUTO_PLATFORM, in_channels, groups)
    return "native" if on_cpu == "native" else "auto"


def resolve_pool_lowering(
    lowering: str,
    window: Sequence[int],
    strides: Sequence[int],
    platform: str | None = None,
) -> str:
    """The max-pool lowering ``lowering`` means; ``"mask"`` needs ``stride == window`` (else native).

    ``platform`` as in :func:`resolve_conv_lowering`: ``"auto"`` is ``"mask"`` for CPU and
    ``"native"`` elsewhere, and stays ``"auto"`` (decided when lowered) for ``platform=None``.

    Example:
        >>> [resolve_pool_lowering("auto", (2, 2), (2, 2), p) for p in ("cpu", "tpu", None)]
        ['mask', 'native', 'auto']
        >>> resolve_pool_lowering("auto", (3, 3), (2, 2))  # overlapping windows
        'native'
    """
    if tuple(window) != tuple(strides):
        return "native"
    if lowering != "auto" or platform is None:
        return lowering
    return "mask" if platform == AUTO_PLATFORM else "native"


# ---------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------


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


def _native_conv(x, kernel, strides, pads, dilation, groups, precision):
    dims = dimension_numbers(len(strides))
    return _conv(x[None], kernel, dims, strides, pads, dilation, groups, precision)[0]


def _geometry(shape, window, strides, pads, dilation):
    """Padded spatial sizes and output spatial sizes of one example (from :mod:`jcnn.shapes`)."""
    out = shapes.conv_output_shape(shape, window, strides, pads, dilation)
    return shapes.padded_shape(shape, pads), out


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


def _conv_tangent(method, geometry, x, kernel, tx, tk):
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
            terms.append(_native_conv(tx, kernel, *geometry))
    if tk is not None:
        if method == "patches":
            p = patches_by_gather(x, window, strides, pads, dilation)
            terms.append(_contract(p, tk, groups, precision))
        elif method == "canonical":
            terms.append(_canonical_kernel_term(x, tk, *geometry))
        else:
            terms.append(_native_conv(x, tk, *geometry))
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6, 7))
def _alt_conv(x, kernel, strides, pads, dilation, groups, precision, method):
    return _native_conv(x, kernel, strides, pads, dilation, groups, precision)


def _alt_conv_jvp(strides, pads, dilation, groups, precision, method, primals, tangents):
    """Native primal; tangent by ``method`` (``"auto"``: per platform when lowered)."""
    x, kernel = primals
    geometry = (strides, pads, dilation, groups, precision)
    y = _native_conv(x, kernel, *geometry)
    live = tuple(not isinstance(t, SymbolicZero) for t in tangents)
    if not any(live):
        return y, jnp.zeros_like(y)

    def rule(method):
        def tangent(x, kernel, *ts):
            it = iter(ts)
            tx, tk = (next(it) if present else None for present in live)
            return _conv_tangent(method, geometry, x, kernel, tx, tk)

        return tangent

    operands = (x, kernel, *(t for t, present in zip(tangents, live) if present))
    if method != "auto":
        return y, rule(method)(*operands)
    on_cpu = _auto_conv(AUTO_PLATFORM, x.shape[-1], groups)
    by_platform = {AUTO_PLATFORM: rule(on_cpu)}
    return y, lax.platform_dependent(*operands, **by_platform, default=rule("native"))


_alt_conv.defjvp(_alt_conv_jvp, symbolic_zeros=True)


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
    """Cross-correlation of ONE example by ``lowering`` (see the module docstring).

    Args:
        x: one example ``(*spatial, C_in)``.
        kernel: ``(*window, C_in // groups, C_out)``, already in ``x.dtype``.
        strides, pads, dilation: per spatial dim; ``pads`` as resolved ``(lo, hi)`` pairs.
        groups: feature groups.
        precision: passed to the convolution and the matmuls.
        lowering: ``"native"``, ``"patches"``, ``"canonical"`` or ``"auto"`` (the module's rule;
            its platform part is decided when the program is lowered, by
            ``lax.platform_dependent``).

    Shapes:
        x: ``(*spatial, C_in)`` -> ``(*spatial', C_out)`` as ``lax.conv_general_dilated``.

    Example:
        >>> x, k = jnp.ones((6, 6, 1)), jnp.ones((3, 3, 1, 2))
        >>> conv(x, k, strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), lowering="auto").shape
        (4, 4, 2)
    """
    check_lowering(lowering, CONV_LOWERINGS, "conv")
    strides, dilation = tuple(strides), tuple(dilation)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    chosen = resolve_conv_lowering(lowering, kernel.shape[:-2], x.shape[-1], groups)
    if chosen == "native":
        return _native_conv(x, kernel, strides, pads, dilation, groups, precision)
    return _alt_conv(x, kernel, strides, pads, dilation, groups, precision, chosen)


# ---------------------------------------------------------------------------------------------
# Max-pool
# ---------------------------------------------------------------------------------------------


def _native_max_pool(x, window, pads):
    return lax.reduce_window(x, -jnp.inf, lax.max, (*window, 1), (*window, 1), (*pads, (0, 0)))


def _windows(x, window, pads, fill):
    """Pads with ``fill``, crops to whole windows and splits: ``(o_1, k_1, ..., o_r, k_r, C)``."""
    out = shapes.conv_output_shape(x.shape[:-1], window, window, pads, (1,) * len(window))
    xp = _pad(x, pads, fill)
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


def _mask_tangent(window, pads, x, y, t):
    """``t`` at the first maximum of each window, summed per window (the ``"mask"`` rule)."""
    mask, win_axes = _first_max_mask(_windows(x, window, pads, -jnp.inf), y, window)
    tw = _windows(t, window, pads, 0.0)
    return jnp.sum(jnp.where(mask, tw, jnp.zeros((), t.dtype)), axis=win_axes)


def _native_pool_tangent(window, pads, x, y, t):
    """The native rule: the tangent of ``reduce_window`` max as JAX forms it."""
    del y
    return jax.jvp(partial(_native_max_pool, window=window, pads=pads), (x,), (t,))[1]


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _mask_max_pool(x, window, pads, per_platform):
    return _native_max_pool(x, window, pads)


@_mask_max_pool.defjvp
def _mask_max_pool_jvp(window, pads, per_platform, primals, tangents):
    (x,), (t,) = primals, tangents
    y = _native_max_pool(x, window, pads)
    by_mask = partial(_mask_tangent, window, pads)
    if not per_platform:
        return y, by_mask(x, y, t)
    default = partial(_native_pool_tangent, window, pads)
    return y, lax.platform_dependent(x, y, t, **{AUTO_PLATFORM: by_mask}, default=default)


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
        lowering: ``"native"``, ``"mask"`` or ``"auto"`` (decided when lowered); ``"mask"`` and
            ``"auto"`` need ``strides == window``, else the pool is native.

    Shapes:
        ``(*spatial, C) -> (*spatial', C)``, as ``lax.reduce_window``.

    Example:
        >>> max_pool(jnp.ones((6, 6, 3)), (2, 2), (2, 2), ((0, 0), (0, 0)), lowering="auto").shape
        (3, 3, 3)
    """
    check_lowering(lowering, POOL_LOWERINGS, "max_pool")
    window, strides = tuple(window), tuple(strides)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    chosen = resolve_pool_lowering(lowering, window, strides)
    if chosen == "native":
        return lax.reduce_window(x, -jnp.inf, lax.max, (*window, 1), (*strides, 1), (*pads, (0, 0)))
    return _mask_max_pool(x, window, pads, chosen == "auto")
