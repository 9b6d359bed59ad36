"""Dropout: zero each value with probability ``rate`` in training, scale survivors by 1/(1-rate)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jcnn.layers.core import Fns, Layer, check_key, leaf, same_shape


def Dropout(rate: float) -> Layer:
    """Inverted dropout.

    Args:
        rate: probability of DROPPING a value, in ``[0, 1)`` (PyTorch's ``p``; stax's ``rate`` was
            the keep probability, jcnn's is not).

    With ``train=True`` it needs ``key`` (``jcnn.batched`` gives each example its own key);
    with ``train=False`` it is the identity.

    Shapes:
        ``x -> x``.

    Raises:
        ValueError: rate outside ``[0, 1)`` (at construction), or train=True without a key.
    """
    is_real = isinstance(rate, numbers.Real) and not isinstance(rate, (bool, np.bool_))
    rate = float(rate) if is_real else rate
    if not is_real or not 0.0 <= rate < 1.0:
        raise ValueError(f"Dropout rate must be in [0, 1) (probability of dropping), got {rate!r}")
    return leaf(_dropout_rule, "Dropout", {"rate": rate}, pointwise=True)


def _dropout_rule(layer: Layer) -> Fns:
    rate = layer.hparams["rate"]

    def init(key, input_shape):
        del key
        return input_shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        if not train or rate == 0.0:
            return x, state
        check_key("Dropout", key, train)
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)), state

    return Fns(init, apply, same_shape)
