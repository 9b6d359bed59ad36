"""``Layer.stochastic`` and ``child_keys``: keys go only to the layers that draw random numbers."""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers.core import child_keys


def test_the_fact_is_stated_and_derived() -> None:
    assert L.Dropout(0.5).stochastic and L.StochasticDepth(0.2, "row").stochastic
    assert not L.Dropout(0.0).stochastic and not L.StochasticDepth(0.0).stochastic  # no draws
    assert not any(layer.stochastic for layer in (L.Conv(4, 3), L.Relu(), L.BatchNorm()))
    assert not L.serial(L.Conv(4, 3), L.Relu()).stochastic
    assert L.serial(L.Conv(4, 3), L.serial(L.Relu(), L.Dropout(0.1))).stochastic
    assert L.residual(L.serial(L.Conv(4, 3), L.StochasticDepth(0.1, "row"))).stochastic
    assert L.repeat(L.residual(L.serial(L.Conv(4, 3, padding=1), L.Dropout(0.1))), 2).stochastic
    assert L.Dropout(0.5).named("drop").stochastic  # renaming keeps it

    # A custom layer may use its key unless it says it does not.
    def init(key, shape):
        return shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        return x, state

    assert L.custom(init, apply, "Mine").stochastic
    assert not L.custom(init, apply, "Mine", stochastic=False).stochastic


def test_child_keys_split_only_among_stochastic_children() -> None:
    key = jax.random.key(0)
    children = [("a", L.Relu()), ("b", L.Dropout(0.5)), ("c", L.Conv(2, 1)), ("d", L.Dropout(0.1))]
    keys = child_keys(key, children)
    assert keys[0] is None and keys[2] is None
    want = jax.random.split(key, 2)
    np.testing.assert_array_equal(jax.random.key_data(keys[1]), jax.random.key_data(want[0]))
    np.testing.assert_array_equal(jax.random.key_data(keys[3]), jax.random.key_data(want[1]))
    assert child_keys(None, children) == [None] * 4
    assert child_keys(key, children[:1]) == [None]


def _primitives(fn, *args) -> set[str]:
    def walk(jaxpr, out):
        for eqn in jaxpr.eqns:
            out.add(eqn.primitive.name)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub, out)
        return out

    return walk(jax.make_jaxpr(fn)(*args).jaxpr, set())


def test_a_deterministic_net_traces_no_key_arithmetic() -> None:
    net = L.serial(
        L.Conv(4, 3, padding=1), L.BatchNorm(), L.Relu(), L.residual(L.Conv(4, 3, padding=1))
    )
    _, params, state = net.init(jax.random.key(0), (6, 6, 4))
    x = jnp.ones((2, 6, 6, 4))

    def forward(k):  # the per-example apply under a named vmap, one key for all examples
        def one(xi):
            return net.apply(params, state, xi, key=k, train=True)[0]

        return jax.vmap(one, axis_name="batch")(x)

    ops = _primitives(forward, jax.random.key(1))
    assert "conv_general_dilated" in ops
    assert not {"random_split", "random_bits", "threefry2x32"} & ops, ops - {"conv_general_dilated"}


def test_two_dropouts_draw_independent_masks() -> None:
    net = L.serial(L.Dropout(0.5), L.Dropout(0.5))
    _, params, state = net.init(jax.random.key(0), (4000,))
    x = jnp.ones((4000,))
    y, _ = net.apply(params, state, x, key=jax.random.key(3), train=True)
    one, _ = L.Dropout(0.5).apply({}, {}, x, key=jax.random.key(3), train=True)
    # Two independent keep-0.5 masks keep a quarter of the values, each scaled by 4.
    assert abs(float(jnp.mean(y > 0)) - 0.25) < 0.03
    assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 4.0}
    # One stochastic child takes the parent's key as it is: the same mask as alone.
    single = L.serial(L.Relu(), L.Dropout(0.5), L.Relu())
    z, _ = single.apply(
        {"Relu_0": {}, "Dropout_0": {}, "Relu_1": {}},
        state_of(single),
        x,
        key=jax.random.key(3),
        train=True,
    )
    np.testing.assert_array_equal(np.asarray(z), np.asarray(one))


def state_of(net):
    return net.init(jax.random.key(0), (4000,))[2]


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_in_residual_blocks_still_drops(mode) -> None:
    block = L.residual(L.serial(L.Dense(8), L.StochasticDepth(0.5, mode)))
    net = L.serial(block, block.named("second"))
    _, params, state = net.init(jax.random.key(0), (8,))
    apply = jcnn.batched(net.apply)
    x = jnp.ones((64, 8))
    ys = [apply(params, state, x, key=jax.random.key(k), train=True)[0] for k in range(4)]
    assert len({np.asarray(y).tobytes() for y in ys}) > 1  # the draws depend on the key
