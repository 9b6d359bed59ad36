"""jcnn.remat: same params tree, same values and gradients, less compiled temp memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers.remat import CPU_COMPILER_OPTIONS, compiler_options, remat

# LLVM -O0: compiling, not running, is what these tiny graphs cost on CPU.
FAST = {"xla_backend_optimization_level": 0}


def conv_block(width: int = 4) -> L.Layer:
    return L.serial(
        L.Conv(width, (3, 3), padding="SAME"),
        L.BatchNorm(),
        L.Relu(),
        L.Dropout(0.25),
        L.Conv(width, (3, 3), padding="SAME"),
        L.Tanh(),
    )


def conv_net(wrap) -> L.Layer:
    return L.serial(wrap(conv_block()), wrap(conv_block()), L.Flatten(), L.Dense(3))


def dense_stack(wrap, blocks: int, per_block: int, width: int) -> L.Layer:
    def block():
        layers = []
        for _ in range(per_block):
            layers += [L.Dense(width), L.Tanh()]
        return L.serial(*layers)

    return L.serial(*[wrap(block()) for _ in range(blocks)], L.Dense(1))


def random_params(net: L.Layer, shape, rng: np.random.Generator):
    """Random params and state of ``net`` from its shapes alone (no initialiser to compile)."""
    _, params, state = jcnn.init_shapes(net, shape)
    return jax.tree.map(
        lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape) + 0.5, jnp.float32), (params, state)
    )


def test_remat_keeps_params_tree_names_and_summary():
    plain, wrapped = conv_net(lambda b: b), conv_net(remat)
    key = jax.random.key(0)
    (p0, s0), (p1, s1) = jax.jit(
        lambda: (plain.init(key, (6, 6, 2))[1:], wrapped.init(key, (6, 6, 2))[1:]),
        compiler_options=FAST,
    )()
    assert jax.tree.structure((p0, s0)) == jax.tree.structure((p1, s1))
    assert sorted(p1) == ["Dense_0", "Flatten_0", "serial_0", "serial_1"]
    for a, b in zip(jax.tree.leaves((p0, s0)), jax.tree.leaves((p1, s1))):
        np.testing.assert_array_equal(a, b)
    rows = [line.split() for line in jcnn.summary(wrapped, (6, 6, 2)).splitlines()]
    plain_rows = [line.split() for line in jcnn.summary(plain, (6, 6, 2)).splitlines()]
    unwrapped = [[t.replace("remat(serial())", "serial()") for t in row] for row in rows]
    assert unwrapped == plain_rows and sum("remat(serial())" in row for row in rows) == 2
    named = remat(conv_block().named("stem"))
    assert (named.name, named.explicit_name, named.kind) == ("stem", True, "serial")
    assert named != conv_block().named("stem") and named == remat(conv_block().named("stem"))
    assert hash(named) == hash(remat(conv_block().named("stem")))


def test_remat_same_outputs_state_and_grads_in_train_mode(rng):
    """BatchNorm's pmean over the vmapped axis and Dropout's key both pass through the remat."""
    plain, wrapped = conv_net(lambda b: b), conv_net(remat)
    params, state = random_params(plain, (6, 6, 2), rng)
    x = jnp.asarray(rng.normal(size=(5, 6, 6, 2)), jnp.float32)
    key = jax.random.key(3)

    def loss(net, p):
        y, new_state = jcnn.batched(net.apply)(p, state, x, key=key, train=True)
        return jnp.sum(jnp.sin(y)), (y, new_state)

    def both(p):
        return [jax.value_and_grad(lambda q, n=n: loss(n, q), has_aux=True)(p) for n in nets]

    nets = (plain, wrapped)
    ((l0, (y0, st0)), g0), ((l1, (y1, st1)), g1) = jax.jit(both, compiler_options=FAST)(params)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves((st0, g0)), jax.tree.leaves((st1, g1))):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(g0["serial_0"]["Conv_0"]["kernel"]).sum()) > 0


def _grad_memory(net: L.Layer, params, state, x, options):
    def loss(p):
        y, _ = jcnn.batched(net.apply)(p, state, x)
        return jnp.mean(jnp.square(y))

    compiled = jax.jit(jax.grad(loss)).lower(params).compile({**FAST, **options})
    return compiled.memory_analysis().temp_size_in_bytes, compiled(params)


@pytest.mark.parametrize("blocks, per_block", [(4, 4)])
def test_remat_deep_stack_uses_less_temp_memory_same_grads(rng, blocks, per_block):
    batch, width = 256, 32
    activation = batch * width * 4  # bytes of one float32 activation of the stack
    plain = dense_stack(lambda b: b, blocks, per_block, width)
    wrapped = dense_stack(remat, blocks, per_block, width)
    saveable = dense_stack(
        lambda b: remat(b, policy=jax.checkpoint_policies.everything_saveable),
        blocks,
        per_block,
        width,
    )
    params, state = random_params(plain, (width,), rng)
    params = jax.tree.map(lambda p: 0.3 * p, params)
    x = jnp.asarray(rng.normal(size=(batch, width)), jnp.float32)
    options = compiler_options("cpu")
    assert options == CPU_COMPILER_OPTIONS and compiler_options("tpu") == {}

    mem_plain, g_plain = _grad_memory(plain, params, state, x, options)
    mem_remat, g_remat = _grad_memory(wrapped, params, state, x, options)
    mem_saveable, _ = _grad_memory(saveable, params, state, x, options)
    # Without remat the backward pass keeps all blocks * per_block tanh outputs; with it, the
    # block inputs plus one block's activations being recomputed.
    assert mem_plain >= blocks * per_block * activation
    assert mem_remat <= (blocks + per_block + 2) * activation
    assert mem_remat < 0.6 * mem_plain
    # A policy that saves everything is no remat at all: the policy reaches jax.checkpoint.
    assert mem_saveable > 0.9 * mem_plain
    for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_the_wrapper_lives_with_the_others():
    from jcnn.layers import remat as remat_module
    from jcnn.layers import wrappers

    assert remat_module.Remat is wrappers.Remat
    block = L.serial(L.Conv(2, 3), L.Relu())
    assert remat(block).wrappers == (wrappers.Remat(),)
