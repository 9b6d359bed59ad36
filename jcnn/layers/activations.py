"""Activations as layers, all made by one :func:`elementwise` helper. Shapes: ``x -> x``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jcnn.layers.core import Layer


def elementwise(fn: Callable[..., Any], name: str, **fn_kwargs: Any) -> Layer:
    """A parameter-free layer applying ``fn(x, **fn_kwargs)``; output shape equals input shape."""

    def init(key, input_shape):
        del key
        return input_shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        return fn(x, **fn_kwargs), state

    config = ", ".join(f"{k}={v!r}" for k, v in fn_kwargs.items())
    return Layer(init, apply, name=name, config=config)


def Relu() -> Layer:
    """``max(x, 0)``."""
    return elementwise(jax.nn.relu, "Relu")


def LeakyRelu(negative_slope: float = 0.01) -> Layer:
    """``x if x >= 0 else negative_slope * x`` (default slope 0.01, as PyTorch)."""
    return elementwise(jax.nn.leaky_relu, "LeakyRelu", negative_slope=negative_slope)


def Elu(alpha: float = 1.0) -> Layer:
    """``x if x > 0 else alpha * (exp(x) - 1)``."""
    return elementwise(jax.nn.elu, "Elu", alpha=alpha)


def Gelu(approximate: bool = False) -> Layer:
    """Gaussian error linear unit; exact (erf) by default, as PyTorch."""
    return elementwise(jax.nn.gelu, "Gelu", approximate=approximate)


def Tanh() -> Layer:
    """Hyperbolic tangent."""
    return elementwise(jax.numpy.tanh, "Tanh")


def Sigmoid() -> Layer:
    """Logistic sigmoid ``1 / (1 + exp(-x))``."""
    return elementwise(jax.nn.sigmoid, "Sigmoid")


def Softmax(axis: int = -1) -> Layer:
    """Softmax over ``axis`` (default last)."""
    return elementwise(jax.nn.softmax, "Softmax", axis=axis)


def LogSoftmax(axis: int = -1) -> Layer:
    """Log-softmax over ``axis`` (default last)."""
    return elementwise(jax.nn.log_softmax, "LogSoftmax", axis=axis)
