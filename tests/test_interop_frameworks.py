"""jcnn layers inside Flax linen / NNX / Equinox and a linen module as a jcnn layer: where the
params and state live, that training mode updates the state, and equality with jcnn's own apply
(docs/interop.md's recipes train each one; tests/test_docs_blocks.py runs them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jcnn
from jcnn import layers as L
from jcnn.interop.frameworks import LinenLayer, equinox_layer, from_linen, nnx_layer

BLOCK = L.serial(L.Conv(4, 3), L.BatchNorm(), L.Relu())
X = jax.random.normal(jax.random.key(1), (3, 8, 8, 2))


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_linen_holds_params_and_batch_stats_and_equals_jcnn():
    module = LinenLayer(BLOCK)
    variables = module.init(jax.random.key(0), X)
    params, stats = variables["params"]["jcnn"], variables["batch_stats"]["jcnn"]
    _, p, s = BLOCK.init(jax.random.key(0), (8, 8, 2))
    assert jax.tree.structure(params) == jax.tree.structure(p)
    _close(module.apply(variables, X), jcnn.batched(BLOCK.apply)(params, stats, X)[0])
    y, new = module.apply(variables, X, True, mutable=["batch_stats"])
    want, want_state = jcnn.batched(BLOCK.apply)(params, stats, X, train=True)
    _close(y, want)
    jax.tree.map(_close, new["batch_stats"]["jcnn"], want_state)
    assert not np.allclose(new["batch_stats"]["jcnn"]["BatchNorm_0"]["mean"], 0.0)


def test_nnx_updates_its_batch_stats_in_place():
    from flax import nnx

    module = nnx_layer(BLOCK, (8, 8, 2), rngs=nnx.Rngs(0))
    before = jax.tree.leaves(nnx.state(module, nnx.BatchStat))
    assert len(jax.tree.leaves(nnx.state(module, nnx.Param))) == 4  # conv kernel, bias, bn x2
    module(X, train=True)
    after = jax.tree.leaves(nnx.state(module, nnx.BatchStat))
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_equinox_params_are_its_leaves_and_the_state_is_returned():
    import equinox as eqx

    module = equinox_layer(BLOCK, (8, 8, 2), jax.random.key(0))
    _, p, s = BLOCK.init(jax.random.key(0), (8, 8, 2))
    jax.tree.map(_close, module.params, p)
    y, state = module(X, module.initial_state, train=True)
    _close(y, jcnn.batched(BLOCK.apply)(p, s, X, train=True)[0])
    grads = eqx.filter_grad(lambda m: m(X, m.initial_state)[0].sum())(module)
    assert jax.tree.structure(grads.params) == jax.tree.structure(p)


def test_from_linen_is_a_jcnn_layer_equal_to_the_module():
    import flax.linen as nn

    conv = nn.Conv(4, (3, 3), padding="VALID")
    layer = from_linen(conv)
    out_shape, params, state = layer.init(jax.random.key(0), (8, 8, 2))
    assert out_shape == (6, 6, 4) and state == {}
    y, _ = jcnn.batched(layer.apply)(params, state, X)
    _close(y, conv.apply({"params": params}, X))
    assert jcnn.count_params(L.serial(layer, L.Flatten(), L.Dense(2)), (8, 8, 2)) == (
        3 * 3 * 2 * 4 + 4 + 6 * 6 * 4 * 2 + 2
    )
    assert jnp.shape(y) == (3, 6, 6, 4)
