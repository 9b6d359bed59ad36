"""Initialisers: thin names over ``jax.nn.initializers``, plus PyTorch's defaults for ports.

Every initialiser has the ``jax.nn.initializers`` signature ``init(key, shape, dtype)``. Kernels are
laid out ``(*window, in, out)``, so fan-in is ``prod(window) * in`` (``in_axis=-2, out_axis=-1``).

Defaults in jcnn (documented on each layer): kernels ``lecun_normal()`` (variance ``1/fan_in``, as
Flax), biases ``zeros``. Use ``he_normal()`` before ReLUs if you prefer He et al. (2015).

PyTorch initialises both kernels and biases from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
(``kaiming_uniform_(a=sqrt(5))``). :func:`torch_kernel` reproduces that for kernels;
:func:`torch_bias` does it for biases, which needs the layer's fan-in: jcnn layers pass it to any
bias initialiser that sets ``needs_fan_in = True``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = Callable[..., jax.Array]

zeros = jinit.zeros
ones = jinit.ones
normal = jinit.normal
uniform = jinit.uniform


def lecun_normal() -> Initializer:
    """Truncated normal with variance ``1/fan_in`` (LeCun 1998). jcnn's default kernel init."""
    return jinit.lecun_normal()


def he_normal() -> Initializer:
    """Truncated normal with variance ``2/fan_in`` (He et al. 2015), for ReLU networks."""
    return jinit.he_normal()


def he_uniform() -> Initializer:
    """Uniform with variance ``2/fan_in`` (He et al. 2015)."""
    return jinit.he_uniform()


def glorot_normal() -> Initializer:
    """Truncated normal with variance ``2/(fan_in + fan_out)`` (Glorot & Bengio 2010)."""
    return jinit.glorot_normal()


def glorot_uniform() -> Initializer:
    """Uniform with variance ``2/(fan_in + fan_out)`` (Glorot & Bengio 2010)."""
    return jinit.glorot_uniform()


def torch_kernel() -> Initializer:
    """PyTorch's default weight init: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    return jinit.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias() -> Initializer:
    """PyTorch's default bias init ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; layers pass ``fan_in``."""

    def init(key: jax.Array, shape: Any, dtype: Any = jnp.float32, *, fan_in: int) -> jax.Array:
        bound = 1.0 / max(fan_in, 1) ** 0.5
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    init.needs_fan_in = True  # type: ignore[attr-defined]
    return init


def init_bias(
    bias_init: Initializer, key: jax.Array, shape: tuple[int, ...], dtype: Any, fan_in: int
) -> jax.Array:
    """Calls a bias initialiser, passing ``fan_in`` to those that ask for it."""
    if getattr(bias_init, "needs_fan_in", False):
        return bias_init(key, shape, dtype, fan_in=fan_in)
    return bias_init(key, shape, dtype)
