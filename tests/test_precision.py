"""jcnn.precision: dtypes of every conv/matmul/reduction under a policy, and a bf16 loss curve."""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers.precision import Policy, cast_floating, with_policy
from jcnn.models.course import cnn
from jcnn.training.legacy import create_train_state, loss_and_grads, train_step
from jcnn.training.losses import softmax_cross_entropy

FAST = {"xla_backend_optimization_level": 0}
BF16, F32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)


def bn_net() -> L.Layer:
    return L.serial(
        L.Conv(4, (3, 3)),
        L.BatchNorm(),
        L.Relu(),
        L.MaxPool((2, 2)),
        L.Conv(4, (2, 2)),
        L.Flatten(),
        L.Dense(10),
    )


def equations(jaxpr) -> list:
    """Every equation of a jaxpr, sub-jaxprs (jit, custom_jvp, ...) included."""
    out = []
    for eqn in jaxpr.eqns:
        out.append(eqn)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out.extend(equations(inner))
    return out


def input_dtypes(eqns, primitives) -> list[set]:
    return [
        {jnp.dtype(v.aval.dtype) for v in e.invars} for e in eqns if e.primitive.name in primitives
    ]


def test_policy_validation_and_names():
    assert Policy.from_name("bf16") == Policy(jnp.float32, jnp.bfloat16, jnp.float32)
    assert Policy.from_name("mixed_float16").compute_dtype == jnp.dtype(jnp.float16)
    assert Policy() == Policy.float32()
    with pytest.raises(ValueError, match="floating"):
        Policy(compute_dtype=jnp.int8)
    with pytest.raises(ValueError, match="unknown precision policy"):
        Policy.from_name("fp8")
    tree = {"w": jnp.ones(2), "n": jnp.arange(3), "b": np.ones(2, np.float64)}
    cast = cast_floating(tree, jnp.bfloat16)
    assert (cast["w"].dtype, cast["n"].dtype, cast["b"].dtype) == (BF16, tree["n"].dtype, BF16)


def test_with_policy_layer_keeps_tree_and_float32_params():
    net = bn_net()
    wrapped = with_policy(net, Policy.mixed_bfloat16())
    assert (wrapped.name, wrapped.children) == (net.name, net.children)
    _, params, state = jcnn.init_shapes(wrapped, (9, 9, 1))
    _, params0, state0 = jcnn.init_shapes(net, (9, 9, 1))
    assert jax.tree.structure(params) == jax.tree.structure(params0)
    assert {leaf.dtype for leaf in jax.tree.leaves((params, state))} == {F32}
    half = with_policy(net, Policy(jnp.bfloat16, jnp.bfloat16, jnp.float32))
    assert {leaf.dtype for leaf in jax.tree.leaves(jcnn.init_shapes(half, (9, 9, 1))[1])} == {BF16}


def test_forward_dtypes_conv_dense_bf16_batchnorm_statistics_float32():
    net = with_policy(bn_net(), Policy.mixed_bfloat16())
    _, params, state = jcnn.init_shapes(net, (9, 9, 1))
    x = jax.ShapeDtypeStruct((4, 9, 9, 1), jnp.float32)
    fwd = jax.make_jaxpr(lambda p, s, x: jcnn.batched(net.apply)(p, s, x, train=True))
    closed = fwd(params, state, x)
    eqns = equations(closed.jaxpr)
    mm = input_dtypes(eqns, {"conv_general_dilated", "dot_general"})
    assert len(mm) == 3 and all(d == {BF16} for d in mm)
    # BatchNorm: per-example sums and the pmean over the vmapped batch axis, all float32.
    reductions = input_dtypes(eqns, {"reduce_sum", "psum"})
    assert len(reductions) >= 4 and all(d == {F32} for d in reductions)
    y, new_state = jax.eval_shape(
        lambda p, s, x: jcnn.batched(net.apply)(p, s, x, train=True), params, state, x
    )
    assert y.dtype == F32
    assert {leaf.dtype for leaf in jax.tree.leaves(new_state)} == {F32}


def test_backward_dtypes_bf16_matmuls_float32_grads():
    net = with_policy(bn_net(), Policy.mixed_bfloat16())
    _, params, state = jcnn.init_shapes(net, (9, 9, 1))
    batch = (jax.ShapeDtypeStruct((4, 9, 9, 1), jnp.float32), jax.ShapeDtypeStruct((4,), jnp.int32))

    def grads(p, s, b):
        return loss_and_grads(net.apply, softmax_cross_entropy, p, s, b, key=None)

    # The jaxpr holds every platform's derivative rule (lowering="auto" picks one when the
    # program is lowered), so count the matmuls of the program as lowered for each platform.
    for platform in ("cpu", "cuda"):
        lowered = jax.jit(grads).trace(params, state, batch).lower(lowering_platforms=(platform,))
        lines = lowered.as_text().splitlines()
        ops = [ln for ln in lines if re.search(r"stablehlo\.(convolution|dot_general)", ln)]
        operands = [re.search(r": \((.*?)\) ->", ln).group(1) for ln in ops]
        # 3 forward; backward: 2 per conv/dense except the first conv's input gradient.
        assert len(ops) == 3 + 5, platform
        assert all(o.count("xbf16>") == 2 for o in operands), (platform, operands)
    (loss, (new_state, _)), g = jax.eval_shape(grads, params, state, batch)
    assert loss.dtype == F32
    assert jax.tree.map(lambda a: a.dtype, g) == jax.tree.map(lambda a: a.dtype, params)
    assert {leaf.dtype for leaf in jax.tree.leaves((g, new_state))} == {F32}


def test_float32_policy_is_the_control():
    """The dtype inspection is not vacuous: without bf16 compute the matmuls are float32."""
    net = with_policy(bn_net(), Policy.float32())
    _, params, state = jcnn.init_shapes(net, (9, 9, 1))
    x = jax.ShapeDtypeStruct((4, 9, 9, 1), jnp.float32)
    fwd = jax.make_jaxpr(lambda p, s, x: jcnn.batched(net.apply)(p, s, x)[0])
    eqns = equations(fwd(params, state, x).jaxpr)
    mm = input_dtypes(eqns, {"conv_general_dilated", "dot_general"})
    assert len(mm) == 3 and all(d == {F32} for d in mm)


def _mnist_or_synthetic(n: int) -> tuple[np.ndarray, np.ndarray]:
    env = os.environ.get("JCNN_TEST_MNIST_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if path.is_dir():
        from jcnn.data import load_mnist

        x, y = load_mnist("test", data_dir=path, download=False)
        return x[:n], y[:n]
    # Fallback: ten noisy class templates (learnable in a few dozen steps).
    rng = np.random.default_rng(0)
    templates = rng.random((10, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return templates[y] + 0.3 * rng.normal(size=(n, 28, 28, 1)).astype(np.float32), y


def test_bfloat16_loss_curve_tracks_float32_on_course_cnn():
    """30 Adam steps of the course CNN: bf16 compute stays within 0.05 of float32 at every step.

    (Measured on MNIST: largest gap 0.005; both curves fall from 2.36 to about 1.0.)
    """
    steps, batch = 30, 32
    x, y = _mnist_or_synthetic(steps * batch)
    xs, ys = x.reshape(steps, batch, 28, 28, 1), y.reshape(steps, batch)
    opt = optax.adam(3e-3)
    ts0 = jax.jit(lambda: create_train_state(cnn(), (28, 28, 1), opt), compiler_options=FAST)()

    def curve(policy):
        net = with_policy(cnn(), policy)

        def run(ts, xs, ys):
            def body(ts, b):
                ts, metrics = train_step(net.apply, softmax_cross_entropy, opt, ts, b)
                return ts, metrics["loss"]

            return jax.lax.scan(body, ts, (xs, ys))

        # Default optimisation here: -O0 code would run these convolutions ~20x slower.
        ts, losses = jax.jit(run)(ts0, xs, ys)
        assert {leaf.dtype for leaf in jax.tree.leaves(ts.params)} == {F32}
        return np.asarray(losses)

    f32, bf16 = curve(Policy.float32()), curve(Policy.mixed_bfloat16())
    assert np.all(np.isfinite(bf16))
    np.testing.assert_allclose(bf16, f32, atol=0.05)
    drop = 0.8 if len(np.unique(x)) <= 256 else 0.4  # real MNIST (256 grey levels) learns faster
    assert f32[-10:].mean() < f32[0] - drop and bf16[-10:].mean() < bf16[0] - drop


def test_the_wrappers_live_in_one_module():
    from jcnn.layers import precision, wrappers
    from jcnn.models import transfer

    assert precision.PolicyWrapper is wrappers.PolicyWrapper
    assert transfer.inference_mode is wrappers.inference_mode
    assert transfer.InferenceMode is wrappers.InferenceMode
    net = with_policy(L.Dense(2), Policy.mixed_bfloat16())
    assert net.wrappers == (wrappers.PolicyWrapper(Policy.mixed_bfloat16()),)
