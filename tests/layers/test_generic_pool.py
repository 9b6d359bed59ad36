"""``Pool(reduce_fn, init_value, window)`` against NumPy window loops and Flax's
``nn.pooling.pool`` (the same ``lax.reduce_window`` contract)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import pooling
from jax import lax

import jcnn
from jcnn import layers as L
from jcnn.layers import shapes

TOL = 1e-5

REDUCTIONS = {
    "prod": (lax.mul, 1.0, np.prod),
    "min": (lax.min, float("inf"), np.min),
    "max": (lax.max, -float("inf"), np.max),
}
CASES = [
    # spatial, window, stride, padding
    ((8,), (2,), None, "VALID"),
    ((9,), (3,), (2,), [(1, 1)]),
    ((6, 7), (2, 3), (1, 2), "VALID"),
    ((5, 6), (3, 2), (2, 2), "SAME"),
    ((4, 4), (2, 2), None, [(0, 1), (1, 0)]),
]


def _loop(x, reduce, init, window, stride, pads):
    """Every window of the padded input (padded cells hold ``init``), reduced by NumPy."""
    padded = np.pad(x, [*pads, (0, 0)], constant_values=init)
    out = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(x.shape, window, stride, pads)]
    y = np.zeros((*out, x.shape[-1]))
    for o in itertools.product(*(range(n) for n in out)):
        cells = tuple(slice(oo * s, oo * s + k) for oo, s, k in zip(o, stride, window))
        block = padded[cells].reshape(-1, x.shape[-1]).astype(np.float64)
        y[o] = reduce(block, axis=0)
    return y


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("case", range(len(CASES)))
def test_pool_matches_loop_and_flax(name: str, case: int) -> None:
    fn, init, reduce = REDUCTIONS[name]
    spatial, window, stride, padding = CASES[case]
    rng = np.random.default_rng(case)
    x = rng.uniform(0.5, 1.5, (3, *spatial, 2)).astype(np.float32)  # products stay moderate
    layer = L.Pool(fn, init, window, stride=stride, padding=padding)
    strides = window if stride is None else stride
    out_shape = layer.output_shape(x.shape[1:])
    got, _ = jcnn.batched(layer.apply)({}, {}, jnp.asarray(x))
    assert got.shape == (3, *out_shape)
    pads = shapes.resolve_padding(padding, spatial, window, strides, (1,) * len(window))
    for b in range(3):
        want = _loop(x[b], reduce, init, window, strides, pads)
        np.testing.assert_allclose(np.asarray(got[b]), want, atol=TOL, rtol=TOL)
    flax_padding = padding if isinstance(padding, str) else tuple(pads)
    want = pooling.pool(jnp.asarray(x), init, fn, window, strides, flax_padding)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=TOL, rtol=TOL)


def test_pool_max_and_sum_agree_with_the_named_pools() -> None:
    x = jax.random.normal(jax.random.key(0), (6, 6, 3))
    y, _ = L.Pool(lax.max, -jnp.inf, 2).apply({}, {}, x)
    np.testing.assert_array_equal(y, L.MaxPool(2).apply({}, {}, x)[0])
    y, _ = L.Pool(lax.add, 0.0, 3, stride=1, padding=1).apply({}, {}, x)
    np.testing.assert_allclose(y, L.SumPool(3, stride=1, padding=1).apply({}, {}, x)[0], atol=TOL)


def test_pool_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match=r"Pool: reduce_fn='mul' is not callable.*jax.lax.mul"):
        L.Pool("mul", 1.0, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Pool: init_value=None \(NoneType\).*identity"):
        L.Pool(lax.mul, None, 2)  # type: ignore[arg-type]
    with pytest.raises(shapes.ShapeError, match="Pool stride"):
        L.Pool(lax.mul, 1.0, 2, stride=0)
    with pytest.raises(shapes.ShapeError, match="Pool"):
        L.Pool(lax.mul, 1.0, 5).init(None, (3, 3, 1))
    # keywords, so the order does not matter
    assert repr(L.Pool(lax.mul, 1.0, 2)) == "Pool(window=(2, 2), reduce_fn=mul, init_value=1.0)"


def test_pool_has_reverse_mode_gradients() -> None:
    """A generic lax.reduce_window has none; Pool's fold of slices does."""
    x = jnp.arange(1.0, 9.0).reshape(8, 1)
    prod = jax.grad(lambda v: L.Pool(lax.mul, 1.0, (2,)).apply({}, {}, v)[0].sum())(x)
    np.testing.assert_array_equal(prod[:, 0], [2, 1, 4, 3, 6, 5, 8, 7])  # the other factor
    low = jax.grad(lambda v: L.Pool(lax.min, jnp.inf, (4,)).apply({}, {}, -v)[0].sum())(x)
    np.testing.assert_array_equal(low[:, 0], [0, 0, 0, -1, 0, 0, 0, -1])  # to each minimum
