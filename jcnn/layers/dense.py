"""Dense (fully connected) layers and shape plumbing: ``Dense``, ``Flatten``, ``Reshape``, ``Identity``."""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
from jax import lax

from jcnn.layers import initializers as inits
from jcnn.layers import shapes
from jcnn.layers.checks import check_params
from jcnn.layers.core import (
    Fns,
    Layer,
    check_floating,
    layer_error,
    leaf,
    parameter_free,
    per_channel,
    same_shape,
)


def Dense(
    out_features: int,
    *,
    use_bias: bool = True,
    kernel_init: inits.Initializer | None = None,
    bias_init: inits.Initializer | None = None,
    precision: lax.Precision | None = None,
) -> Layer:
    """Affine map ``y = x @ kernel + bias`` on the last axis.

    Args:
        out_features: output width.
        use_bias: add a learned bias.
        kernel_init: default ``lecun_normal()``; bias_init: default zeros.
        precision: passed to ``jnp.matmul``.

    Shapes:
        x: ``(..., in)`` -> y: ``(..., out_features)`` (one example is usually ``(in,)``).
        params: ``{"kernel": (in, out_features), "bias": (out_features,)}``.

    Example:
        >>> Dense(10).init(jax.random.key(0), (400,))[0]
        (10,)
    """
    out_features = shapes.positive_int(out_features, "Dense out_features")
    hparams = {
        "out_features": out_features,
        "use_bias": use_bias,
        "kernel_init": kernel_init,
        "bias_init": bias_init,
        "precision": precision,
    }
    return leaf(_dense_rule, "Dense", hparams, pointwise=True)


def _dense_rule(layer: Layer) -> Fns:
    hp = layer.hparams
    out_features, use_bias, precision = hp["out_features"], hp["use_bias"], hp["precision"]
    kernel_init = hp["kernel_init"] or inits.lecun_normal()
    bias_init = hp["bias_init"] or inits.zeros

    def expected_params(in_features):
        kernel = (in_features, out_features)
        return {"kernel": kernel, "bias": (out_features,)} if use_bias else {"kernel": kernel}

    def check(input_shape):
        if len(input_shape) < 1:
            raise layer_error("Dense", input_shape, "expected (..., in) with rank >= 1")
        if input_shape[-1] < 1:
            raise layer_error("Dense", input_shape, "the input has no features (last axis 0)")
        return (*input_shape[:-1], out_features)

    def init(key, input_shape):
        out_shape = check(input_shape)
        k_key, b_key = jax.random.split(key)
        params = {"kernel": kernel_init(k_key, (input_shape[-1], out_features), jnp.float32)}
        if use_bias:
            params["bias"] = inits.init_bias(
                bias_init, b_key, (out_features,), jnp.float32, input_shape[-1]
            )
        return out_shape, params, {}

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        check_floating("Dense", x)
        out_shape = check(x.shape)
        check_params("Dense", params, expected_params(x.shape[-1]), input_shape=x.shape, in_axis=0)
        # (..., in) x (in, out): one dot_general contracting the last axis (what jnp.matmul
        # lowers to; spelled out, converters such as jax2onnx read it under vmap too)
        contract = (((x.ndim - 1,), (0,)), ((), ()))
        y = lax.dot_general(x, params["kernel"].astype(x.dtype), contract, precision=precision)
        if use_bias:
            y = y + per_channel(params["bias"].astype(y.dtype), y.ndim)
        chex.assert_shape(y, out_shape)
        return y, state

    return Fns(init, apply, check)


def Flatten() -> Layer:
    """Flattens one example to a vector, in row-major (channels-last) order.

    Shapes:
        x: ``(*dims)`` -> y: ``(prod(dims),)``. Note: PyTorch flattens ``(C, H, W)``; see
        docs/pytorch.md for porting a dense layer that follows a flatten.
    """

    return leaf(_flatten_rule, "Flatten")


def _flatten_rule(layer: Layer) -> Fns:
    return parameter_free(lambda shape: (shapes.flat_size(shape),), lambda x: jnp.reshape(x, (-1,)))


def Reshape(shape: Sequence[int]) -> Layer:
    """Reshapes one example to ``shape`` (one entry may be -1).

    Raises:
        ShapeError: at init, when the element counts do not match.
    """
    target = tuple(shape)
    if sum(1 for s in target if s == -1) > 1 or any(s < -1 or s == 0 for s in target):
        raise shapes.ShapeError(f"Reshape shape {target} must be positive ints with at most one -1")
    return leaf(_reshape_rule, "Reshape", {"shape": target})


def _reshape_rule(layer: Layer) -> Fns:
    target = layer.hparams["shape"]

    def resolve(input_shape):
        n = shapes.flat_size(input_shape)
        known = shapes.flat_size([s for s in target if s != -1])
        if (-1 in target and n % known) or (-1 not in target and n != known):
            raise layer_error(
                "Reshape", input_shape, f"{n} elements cannot be reshaped to {target}"
            )
        return tuple(n // known if s == -1 else s for s in target)

    return parameter_free(resolve, lambda x: jnp.reshape(x, resolve(x.shape)))


def Identity() -> Layer:
    """Returns its input unchanged (the default residual shortcut). Shapes: ``x -> x``."""

    return leaf(_identity_rule, "Identity", pointwise=True)


def _identity_rule(layer: Layer) -> Fns:
    return parameter_free(same_shape, lambda x: x)
