"""Activations as layers, all made by one :func:`elementwise` helper. Shapes: ``x -> x``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jcnn.layers.core import Fns, Layer, leaf, parameter_free, same_shape


def _elementwise_rule(layer: Layer) -> Fns:
    hp = dict(layer.hparams)
    fn = hp.pop("fn")
    return parameter_free(same_shape, lambda x: fn(x, **hp))


def elementwise(
    fn: Callable[..., Any], name: str, *, pointwise: bool = True, **fn_kwargs: Any
) -> Layer:
    """A parameter-free layer applying ``fn(x, **fn_kwargs)``; output shape equals input shape.

    Args:
        fn: the function, applied to one example.
        name: the layer's kind (and default params key), e.g. ``"Sine"``.
        pointwise: ``fn`` acts on each value (or each position's channels) separately; False for
            functions that mix positions, such as a softmax over a spatial axis.
        **fn_kwargs: keyword arguments of ``fn`` (hashable: they are the layer's hparams).

    Example:
        >>> import jax.numpy as jnp
        >>> sine = elementwise(jnp.sin, "Sine")
        >>> sine, sine.pointwise, sine.output_shape((8, 8, 3))
        (Sine(), True, (8, 8, 3))
    """
    return leaf(_elementwise_rule, name, {"fn": fn, **fn_kwargs}, pointwise=pointwise)


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
    return elementwise(jax.nn.softmax, "Softmax", axis=axis, pointwise=axis == -1)


def LogSoftmax(axis: int = -1) -> Layer:
    """Log-softmax over ``axis`` (default last)."""
    return elementwise(jax.nn.log_softmax, "LogSoftmax", axis=axis, pointwise=axis == -1)


def Relu6() -> Layer:
    """``min(max(x, 0), 6)``, as ``torch.nn.ReLU6`` (MobileNetV2).

    Shapes:
        ``x -> x``.

    Example:
        >>> y, _ = Relu6().apply({}, {}, jnp.array([-1.0, 3.0, 7.0]))
        >>> y.tolist()
        [0.0, 3.0, 6.0]
    """
    return elementwise(jax.nn.relu6, "Relu6")


def Silu() -> Layer:
    """``x * sigmoid(x)``, the sigmoid linear unit (Swish), as ``torch.nn.SiLU`` (EfficientNet).

    Shapes:
        ``x -> x``.

    Example:
        >>> y, _ = Silu().apply({}, {}, jnp.array([0.0, 1.0]))
        >>> [round(float(v), 4) for v in y]
        [0.0, 0.7311]
    """
    return elementwise(jax.nn.silu, "Silu")


#: Swish is the SiLU (Ramachandran et al. 2017 named it so): the same layer, kind ``"Silu"``.
Swish = Silu


def Hardsigmoid() -> Layer:
    """``relu6(x + 3) / 6``, as ``torch.nn.Hardsigmoid`` (MobileNetV3's squeeze-excitation gate).

    Shapes:
        ``x -> x``.

    Example:
        >>> y, _ = Hardsigmoid().apply({}, {}, jnp.array([-4.0, 0.0, 1.5, 4.0]))
        >>> y.tolist()
        [0.0, 0.5, 0.75, 1.0]
    """
    return elementwise(jax.nn.hard_sigmoid, "Hardsigmoid")


def Hardswish() -> Layer:
    """``x * relu6(x + 3) / 6``, as ``torch.nn.Hardswish`` (MobileNetV3).

    Shapes:
        ``x -> x``.

    Example:
        >>> y, _ = Hardswish().apply({}, {}, jnp.array([-4.0, 0.0, 1.5, 4.0]))
        >>> y.tolist()
        [-0.0, 0.0, 1.125, 4.0]
    """
    return elementwise(jax.nn.hard_swish, "Hardswish")
