"""Initialisers: thin names over ``jax.nn.initializers``, plus PyTorch's defaults for ports.

Every initialiser has the ``jax.nn.initializers`` signature ``init(key, shape, dtype)`` and is a
VALUE: a frozen dataclass equal to another when its settings are, so two layers built with
``kernel_init=he_normal()`` are equal layers (and share their compiled ``apply``). Kernels are
laid out ``(*window, in, out)``, so fan-in is ``prod(window) * in`` (``in_axis=-2, out_axis=-1``).

Defaults in jcnn (documented on each layer): kernels ``lecun_normal()`` (variance ``1/fan_in``, as
Flax), biases ``zeros``. Use ``he_normal()`` before ReLUs if you prefer He et al. (2015).

PyTorch initialises both kernels and biases from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
(``kaiming_uniform_(a=sqrt(5))``). :func:`torch_kernel` reproduces that for kernels;
:func:`torch_bias` does it for biases, which needs the layer's fan-in: jcnn layers pass it to any
bias initialiser that sets ``needs_fan_in = True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

Initializer = Callable[..., jax.Array]

zeros = jinit.zeros
ones = jinit.ones


@dataclasses.dataclass(frozen=True)
class VarianceScaling:
    """``jax.nn.initializers.variance_scaling(scale, mode, distribution)`` as a value.

    Kernels are ``(*window, in, out)``: fan-in is ``prod(window) * in``.

    Example:
        >>> he_normal() == VarianceScaling(2.0, "fan_in", "truncated_normal")
        True
        >>> he_normal()(jax.random.key(0), (3, 3, 4, 8)).shape
        (3, 3, 4, 8)
    """

    scale: float
    mode: Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]
    distribution: Literal["truncated_normal", "normal", "uniform"]

    def __call__(self, key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
        return jinit.variance_scaling(self.scale, self.mode, self.distribution)(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Normal:
    """``N(0, stddev^2)`` (``jax.nn.initializers.normal``) as a value.

    Example:
        >>> float(Normal(0.0)(jax.random.key(0), (2,)).sum())
        0.0
    """

    stddev: float = 1e-2

    def __call__(self, key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
        return jinit.normal(self.stddev)(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """``U(0, scale)`` (``jax.nn.initializers.uniform``) as a value."""

    scale: float = 1e-2

    def __call__(self, key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
        return jinit.uniform(self.scale)(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Constant:
    """Every entry ``value`` (``jax.nn.initializers.constant``) as a value."""

    value: float

    def __call__(self, key: jax.Array, shape: Any, dtype: Any = jnp.float32) -> jax.Array:
        return jinit.constant(self.value)(key, shape, dtype)


def normal(stddev: float = 1e-2) -> Normal:
    """``N(0, stddev^2)``."""
    return Normal(stddev)


def uniform(scale: float = 1e-2) -> Uniform:
    """``U(0, scale)``."""
    return Uniform(scale)


def constant(value: float) -> Constant:
    """Every entry ``value``."""
    return Constant(value)


def lecun_normal() -> VarianceScaling:
    """Truncated normal with variance ``1/fan_in`` (LeCun 1998). jcnn's default kernel init."""
    return VarianceScaling(1.0, "fan_in", "truncated_normal")


def he_normal() -> VarianceScaling:
    """Truncated normal with variance ``2/fan_in`` (He et al. 2015), for ReLU networks."""
    return VarianceScaling(2.0, "fan_in", "truncated_normal")


def he_uniform() -> VarianceScaling:
    """Uniform with variance ``2/fan_in`` (He et al. 2015)."""
    return VarianceScaling(2.0, "fan_in", "uniform")


def glorot_normal() -> VarianceScaling:
    """Truncated normal with variance ``2/(fan_in + fan_out)`` (Glorot & Bengio 2010)."""
    return VarianceScaling(1.0, "fan_avg", "truncated_normal")


def glorot_uniform() -> VarianceScaling:
    """Uniform with variance ``2/(fan_in + fan_out)`` (Glorot & Bengio 2010)."""
    return VarianceScaling(1.0, "fan_avg", "uniform")


def torch_kernel() -> VarianceScaling:
    """PyTorch's default weight init: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    return VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class TorchBias:
    """PyTorch's default bias init ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; layers pass ``fan_in``
    (it sets ``needs_fan_in``)."""

    needs_fan_in = True

    def __call__(
        self, key: jax.Array, shape: Any, dtype: Any = jnp.float32, *, fan_in: int
    ) -> jax.Array:
        bound = 1.0 / max(fan_in, 1) ** 0.5
        return jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_bias() -> TorchBias:
    """PyTorch's default bias init ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; layers pass ``fan_in``."""
    return TorchBias()


def init_bias(
    bias_init: Initializer, key: jax.Array, shape: tuple[int, ...], dtype: Any, fan_in: int
) -> jax.Array:
    """Calls a bias initialiser, passing ``fan_in`` to those that ask for it."""
    if getattr(bias_init, "needs_fan_in", False):
        return bias_init(key, shape, dtype, fan_in=fan_in)
    return bias_init(key, shape, dtype)
