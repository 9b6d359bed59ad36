"""The tangent rules of jcnn's max-pool lowerings: the native one and the first-max mask.

For non-overlapping windows (``stride == window``) :func:`mask_tangent` routes each window's
tangent from its FIRST maximum (row-major within the window, the cell ``select_and_scatter``
picks, so ties route exactly as natively), which transposes to one elementwise select;
:func:`native_pool_tangent` is the rule JAX forms for ``lax.reduce_window``. Which one a pool
uses, and the ``jax.custom_jvp`` that installs it, is :mod:`jcnn.layers.lowering`.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from jcnn.layers import shapes
from jcnn.layers.conv_tangents import pad

__all__ = ["mask_tangent", "native_max_pool", "native_pool_tangent"]


def native_max_pool(
    x: jax.Array, window: tuple[int, ...], pads: tuple[tuple[int, int], ...]
) -> jax.Array:
    """``lax.reduce_window`` max of ONE example over non-overlapping windows (stride = window)."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (*window, 1), (*window, 1), (*pads, (0, 0)))


def _windows(x, window, pads, fill):
    """Pads with ``fill``, crops to whole windows and splits: ``(o_1, k_1, ..., o_r, k_r, C)``."""
    out = shapes.conv_output_shape(x.shape[:-1], window, window, pads, (1,) * len(window))
    xp = pad(x, pads, fill)
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


def mask_tangent(
    window: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    x: jax.Array,
    y: jax.Array,
    t: jax.Array,
) -> jax.Array:
    """``t`` at the first maximum of each window, summed per window (the ``"mask"`` rule)."""
    mask, win_axes = _first_max_mask(_windows(x, window, pads, -jnp.inf), y, window)
    tw = _windows(t, window, pads, 0.0)
    return jnp.sum(jnp.where(mask, tw, jnp.zeros((), t.dtype)), axis=win_axes)


def native_pool_tangent(
    window: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    x: jax.Array,
    y: jax.Array,
    t: jax.Array,
) -> jax.Array:
    """The native rule: the tangent of ``reduce_window`` max as JAX forms it."""
    del y
    return jax.jvp(partial(native_max_pool, window=window, pads=pads), (x,), (t,))[1]
