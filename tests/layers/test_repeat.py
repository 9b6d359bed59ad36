"""repeat(layer, n): stacked params, lax.scan, equal to the unrolled serial stack."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn import layers as L
from jcnn.layers.repeat import repeat
from jcnn.layers.shapes import ShapeError


def _block():
    inner = L.serial(L.Conv(4, 3, padding="SAME"), L.BatchNorm(), L.Relu(), L.Dropout(0.25))
    return L.residual(inner)


def _unstack(tree, i):
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def test_equals_unrolled_serial_values_state_and_gradients():
    n, shape = 3, (6, 6, 4)
    net = repeat(_block(), n)
    out_shape, params, state = net.init(jax.random.key(0), shape)
    assert out_shape == shape
    assert set(params) == {"blocks"} and set(state) == {"blocks"}
    for leaf in jax.tree_util.tree_leaves(params):
        assert leaf.shape[0] == n
    # copy i is initialised with split(key, n)[i]
    keys = jax.random.split(jax.random.key(0), n)
    _, p1, _ = _block().init(keys[1], shape)
    for a, b in zip(
        jax.tree_util.tree_leaves(_unstack(params["blocks"], 1)), jax.tree_util.tree_leaves(p1)
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    unrolled = L.serial(*[_block() for _ in range(n)])
    names = [k for k, _ in unrolled.children]
    u_params = {k: _unstack(params["blocks"], i) for i, k in enumerate(names)}
    u_state = {k: _unstack(state["blocks"], i) for i, k in enumerate(names)}
    xs = jax.random.normal(jax.random.key(1), (5, *shape))
    key = jax.random.key(2)

    def loss_rep(p):
        def one(x, k):
            return net.apply(p, state, x, key=k, train=True)

        ys, new = jax.vmap(one, axis_name="batch", out_axes=(0, None))(xs, jnp.stack([key] * 5))
        return jnp.sum(jnp.sin(ys)), new

    def loss_unr(p):
        def one(x, k):
            h, new = x, {}
            for i, name in enumerate(names):
                h, new[name] = unrolled.children[i][1].apply(
                    p[name], u_state[name], h, key=jax.random.split(k, n)[i], train=True
                )
            return h, new

        ys, new = jax.vmap(one, axis_name="batch", out_axes=(0, None))(xs, jnp.stack([key] * 5))
        return jnp.sum(jnp.sin(ys)), new

    (l_rep, s_rep), g_rep = jax.jit(jax.value_and_grad(loss_rep, has_aux=True))(params)
    (l_unr, s_unr), g_unr = jax.jit(jax.value_and_grad(loss_unr, has_aux=True))(u_params)
    np.testing.assert_allclose(float(l_rep), float(l_unr), rtol=1e-5)
    for i, name in enumerate(names):
        for a, b in zip(
            jax.tree_util.tree_leaves(_unstack(g_rep["blocks"], i)),
            jax.tree_util.tree_leaves(g_unr[name]),
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
        for a, b in zip(
            jax.tree_util.tree_leaves(_unstack(s_rep["blocks"], i)),
            jax.tree_util.tree_leaves(s_unr[name]),
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_eval_mode_without_key_and_shape_errors():
    net = repeat(L.serial(L.Dense(3), L.Tanh()), 4)
    _, params, state = net.init(jax.random.key(0), (3,))
    x = jnp.arange(3.0)
    y, _ = net.apply(params, state, x)
    h = x
    for i in range(4):
        p = _unstack(params["blocks"], i)["Dense_0"]
        h = jnp.tanh(h @ p["kernel"] + p["bias"])
    np.testing.assert_allclose(np.asarray(y), np.asarray(h), rtol=1e-6)
    with pytest.raises(ShapeError, match="must keep the shape"):
        repeat(L.Dense(5), 2).init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match="positive int"):
        repeat(L.Relu(), 0)
    with pytest.raises(ValueError, match="another architecture"):
        net.apply({"Dense_0": {}}, state, x)


def test_deep_stack_compiles_in_about_the_time_of_a_few_blocks():
    block = L.residual(L.serial(L.Conv(4, 3, padding="SAME"), L.Relu()))
    shape = (8, 8, 4)

    def compile_seconds(net):
        _, params, state = net.init(jax.random.key(0), shape)
        xs = jnp.ones((2, *shape))

        def loss(p):
            return jnp.sum(jax.vmap(lambda x: net.apply(p, state, x)[0])(xs))

        start = time.perf_counter()
        jax.jit(jax.grad(loss)).lower(params).compile()
        return time.perf_counter() - start

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # time real compilations
    try:
        t_rep50 = compile_seconds(repeat(block, 50))
        t_ser5 = compile_seconds(L.serial(*[block] * 5))
        t_ser25 = compile_seconds(L.serial(*[block] * 25))
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
    # 50 scanned blocks compile in about the time of a few unrolled ones, below 25 unrolled.
    assert t_rep50 < 3 * t_ser5 + 1.0, (t_rep50, t_ser5)
    assert t_rep50 < t_ser25, (t_rep50, t_ser25)
