"""Dropout: rate semantics (probability of dropping), scaling, keys, eval identity, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L


def _positive(shape, seed=0):
    """Random values bounded away from 0, so a 0 in the output can only be a dropped value."""
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(np.float32)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_fraction_dropped_is_rate_and_survivors_are_scaled(rate):
    n = 200_000
    x = _positive((n,))
    layer = L.Dropout(rate)
    assert layer.init(None, (n,))[0] == (n,)
    y, state = layer.apply({}, {}, jnp.asarray(x), key=jax.random.key(1), train=True)
    y = np.asarray(y)
    assert state == {} and y.shape == x.shape and y.dtype == np.float32
    dropped = y == 0
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs(dropped.mean() - rate) < 5 * sigma
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-6)
    # Inverted dropout keeps the expectation: mean(y) ~= mean(x).
    assert abs(y.mean() - x.mean()) < 0.05


def test_rate_zero_is_identity_even_in_training():
    x = jnp.asarray(_positive((256,)))
    y, _ = L.Dropout(0.0).apply({}, {}, x, key=jax.random.key(0), train=True)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("key", [None, jax.random.key(3)], ids=["no key", "key"])
def test_identity_in_eval(key):
    x = jnp.asarray(np.random.default_rng(1).standard_normal((6, 256)), jnp.float32)
    y, state = L.Dropout(0.5).apply({}, {}, x, key=key, train=False)
    np.testing.assert_array_equal(y, x)
    assert state == {}


def test_deterministic_per_key_different_across_keys():
    x = jnp.asarray(_positive((256,)))
    layer = L.Dropout(0.5)
    a, _ = layer.apply({}, {}, x, key=jax.random.key(7), train=True)
    b, _ = layer.apply({}, {}, x, key=jax.random.key(7), train=True)
    c, _ = layer.apply({}, {}, x, key=jax.random.key(8), train=True)
    np.testing.assert_array_equal(a, b)
    assert np.mean((np.asarray(a) == 0) != (np.asarray(c) == 0)) > 0.3


def test_per_example_keys_under_batched():
    xs = jnp.asarray(_positive((6, 256)))
    layer = L.Dropout(0.5)
    key = jax.random.key(11)
    ys, _ = jcnn.batched(layer.apply)({}, {}, xs, key=key, train=True)
    masks = np.asarray(ys) == 0
    for i in range(len(masks)):
        for j in range(i):
            assert np.mean(masks[i] != masks[j]) > 0.3, (i, j)
    # Example i uses the i-th key of jax.random.split(key, batch).
    y_2, _ = layer.apply({}, {}, xs[2], key=jax.random.split(key, 6)[2], train=True)
    np.testing.assert_array_equal(ys[2], y_2)


def test_jit_equals_eager():
    x = jnp.asarray(_positive((256,)))
    layer = L.Dropout(0.3)
    f = jax.jit(layer.apply, static_argnames="train")
    key = jax.random.key(5)
    np.testing.assert_array_equal(
        f({}, {}, x, key=key, train=True)[0], layer.apply({}, {}, x, key=key, train=True)[0]
    )


def test_train_without_key_errors():
    with pytest.raises(ValueError, match=r"Dropout: train=True needs a PRNG key"):
        L.Dropout(0.5).apply({}, {}, jnp.asarray(_positive((256,))), train=True)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.5", None])
def test_rate_outside_unit_interval_errors(rate):
    with pytest.raises(ValueError, match=r"Dropout rate must be in \[0, 1\)"):
        L.Dropout(rate)


def test_bfloat16_dtype_kept():
    x = jnp.asarray(_positive((256,)), jnp.bfloat16)
    y, _ = L.Dropout(0.5).apply({}, {}, x, key=jax.random.key(0), train=True)
    assert y.dtype == jnp.bfloat16
