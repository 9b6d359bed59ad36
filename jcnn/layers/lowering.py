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

This module holds the rule and the ``jax.custom_jvp`` entry points (:func:`conv`,
:func:`max_pool`); the tangent rules themselves are :mod:`jcnn.layers.conv_tangents` and
:mod:`jcnn.layers.pool_tangents`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

# The tangent rules; dimension_numbers and the patches are re-exported (conv.py and the course's
# signal views import them from here).
from jcnn.layers.conv_tangents import conv_tangent, native_conv
from jcnn.layers.conv_tangents import dimension_numbers as dimension_numbers
from jcnn.layers.conv_tangents import patches_by_gather as patches_by_gather
from jcnn.layers.conv_tangents import patches_by_slices as patches_by_slices
from jcnn.layers.pool_tangents import mask_tangent, native_max_pool, native_pool_tangent

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


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6, 7))
def _alt_conv(x, kernel, strides, pads, dilation, groups, precision, method):
    return native_conv(x, kernel, strides, pads, dilation, groups, precision)


def _alt_conv_jvp(strides, pads, dilation, groups, precision, method, primals, tangents):
    """Native primal; tangent by ``method`` (``"auto"``: per platform when lowered)."""
    x, kernel = primals
    geometry = (strides, pads, dilation, groups, precision)
    y = native_conv(x, kernel, *geometry)
    live = tuple(not isinstance(t, SymbolicZero) for t in tangents)
    if not any(live):
        return y, jnp.zeros_like(y)

    def rule(method):
        def tangent(x, kernel, *ts):
            it = iter(ts)
            tx, tk = (next(it) if present else None for present in live)
            return conv_tangent(method, geometry, x, kernel, tx, tk)

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
        return native_conv(x, kernel, strides, pads, dilation, groups, precision)
    return _alt_conv(x, kernel, strides, pads, dilation, groups, precision, chosen)


# ---------------------------------------------------------------------------------------------
# Max-pool
# ---------------------------------------------------------------------------------------------


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _mask_max_pool(x, window, pads, per_platform):
    return native_max_pool(x, window, pads)


@_mask_max_pool.defjvp
def _mask_max_pool_jvp(window, pads, per_platform, primals, tangents):
    (x,), (t,) = primals, tangents
    y = native_max_pool(x, window, pads)
    by_mask = partial(mask_tangent, window, pads)
    if not per_platform:
        return y, by_mask(x, y, t)
    default = partial(native_pool_tangent, window, pads)
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
