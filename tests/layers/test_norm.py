"""BatchNorm, LayerNorm and GroupNorm against NumPy formulas written here."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers.shapes import ShapeError

MAX_ERR: dict[str, float] = {}


@pytest.fixture(autouse=True, scope="module")
def _print_max_errors():
    yield
    if MAX_ERR:
        print("\n[test_norm] max abs errors:", {k: f"{v:.1e}" for k, v in MAX_ERR.items()})


def _record(name: str, got, want) -> float:
    err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    MAX_ERR[name] = max(MAX_ERR.get(name, 0.0), err)
    return err


def _random_affine(rng, shape):
    return {"scale": rng.uniform(0.5, 2.0, shape), "offset": rng.standard_normal(shape)}


def _random_stats(rng, c):
    return {"mean": rng.standard_normal(c), "var": rng.uniform(0.5, 2.0, c)}


# ---------------------------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------------------------


def np_batchnorm_train(xs, params, state, momentum, eps, unbiased):
    axes = tuple(range(xs.ndim - 1))  # batch and spatial axes
    mean = xs.mean(axis=axes)
    var = ((xs - mean) ** 2).mean(axis=axes)  # biased
    y = (xs - mean) / np.sqrt(var + eps) * params["scale"] + params["offset"]
    n = xs.size // xs.shape[-1]
    stored = var * n / (n - 1) if unbiased else var
    new = {
        "mean": momentum * state["mean"] + (1 - momentum) * mean,
        "var": momentum * state["var"] + (1 - momentum) * stored,
    }
    return y, new


def np_batchnorm_eval(xs, params, state, eps):
    return (xs - state["mean"]) / np.sqrt(state["var"] + eps) * params["scale"] + params["offset"]


@pytest.mark.parametrize(
    ("example_shape", "momentum", "unbiased"),
    [((5,), 0.9, False), ((4, 5, 3), 0.9, False), ((4, 5, 3), 0.9, True), ((4, 5, 3), 0.5, False)],
)
def test_batchnorm_train_matches_numpy(example_shape, momentum, unbiased):
    rng = np.random.default_rng(0)
    c = example_shape[-1]
    xs = rng.standard_normal((4, *example_shape)) * 3 + 1
    params, state = _random_affine(rng, c), _random_stats(rng, c)
    layer = L.BatchNorm(momentum=momentum, eps=1e-3, unbiased_running_var=unbiased)
    with jax.enable_x64(True):
        assert layer.init(None, example_shape)[0] == example_shape
        ys, new_state = jcnn.batched(layer.apply)(params, state, jnp.asarray(xs), train=True)
    want_y, want_state = np_batchnorm_train(xs, params, state, momentum, 1e-3, unbiased)
    assert ys.shape == xs.shape
    assert _record("BatchNorm train y", ys, want_y) < 1e-12
    for k in ("mean", "var"):
        assert new_state[k].shape == (c,)
        assert _record(f"BatchNorm running {k}", new_state[k], want_state[k]) < 1e-12


def test_batchnorm_flax_momentum_convention_by_hand():
    """One channel, batch [1, 3] (mean 2, biased var 1, unbiased var 2), momentum 0.9."""
    layer = L.BatchNorm()
    _, params, state = layer.init(None, (1,))
    xs = jnp.array([[1.0], [3.0]])
    _, new = jcnn.batched(layer.apply)(params, state, xs, train=True)
    np.testing.assert_allclose(new["mean"], [0.9 * 0 + 0.1 * 2], rtol=1e-6)
    np.testing.assert_allclose(new["var"], [0.9 * 1 + 0.1 * 1], rtol=1e-6)
    unbiased = L.BatchNorm(unbiased_running_var=True)
    _, new = jcnn.batched(unbiased.apply)(params, state, xs, train=True)
    np.testing.assert_allclose(new["var"], [0.9 * 1 + 0.1 * 2], rtol=1e-6)


@pytest.mark.parametrize("example_shape", [(5,), (4, 5, 3)])
def test_batchnorm_eval_uses_running_stats_and_keeps_state(example_shape):
    rng = np.random.default_rng(1)
    c = example_shape[-1]
    xs = rng.standard_normal((4, *example_shape))
    params, state = _random_affine(rng, c), _random_stats(rng, c)
    layer = L.BatchNorm(eps=1e-4)
    with jax.enable_x64(True):
        ys, new_state = jcnn.batched(layer.apply)(params, state, jnp.asarray(xs), train=False)
        y0, state0 = layer.apply(params, state, jnp.asarray(xs[0]))  # no named axis needed
    want = np_batchnorm_eval(xs, params, state, 1e-4)
    assert _record("BatchNorm eval y", ys, want) < 1e-12
    assert _record("BatchNorm eval y", y0, want[0]) < 1e-12
    for k in ("mean", "var"):
        np.testing.assert_array_equal(new_state[k], state[k])
        np.testing.assert_array_equal(state0[k], state[k])


def test_batchnorm_init_params_and_state():
    out, params, state = L.BatchNorm().init(jax.random.key(0), (5, 5, 7))
    assert out == (5, 5, 7)
    assert {k: v.shape for k, v in params.items()} == {"scale": (7,), "offset": (7,)}
    np.testing.assert_array_equal(state["mean"], np.zeros(7))
    np.testing.assert_array_equal(state["var"], np.ones(7))
    assert all(v.dtype == jnp.float32 for v in (*params.values(), *state.values()))


def test_batchnorm_under_batched_and_jit():
    rng = np.random.default_rng(2)
    layer = L.BatchNorm()
    _, params, state = layer.init(None, (4, 5, 3))
    xs = jnp.asarray(rng.standard_normal((4, 4, 5, 3)), jnp.float32)
    f = jax.jit(jcnn.batched(layer.apply), static_argnames="train")
    for train in (True, False):
        y_jit, s_jit = f(params, state, xs, train=train)
        y_eager, s_eager = jcnn.batched(layer.apply)(params, state, xs, train=train)
        np.testing.assert_allclose(y_jit, y_eager, rtol=1e-5, atol=1e-5)
        for k in ("mean", "var"):
            np.testing.assert_allclose(s_jit[k], s_eager[k], rtol=1e-6)
    # Train normalises each channel to mean 0 / variance 1 over batch and space.
    y, _ = f(params, state, xs, train=True)
    np.testing.assert_allclose(np.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.var(y, axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_batchnorm_train_without_named_axis_raises_helpful_nameerror():
    layer = L.BatchNorm()
    _, params, state = layer.init(None, (4, 4, 3))
    x = jnp.asarray(np.random.default_rng(3).standard_normal((4, 4, 3)), jnp.float32)
    with pytest.raises(NameError, match=r"jcnn\.batched.*axis_name='batch'"):
        layer.apply(params, state, x, train=True)
    with pytest.raises(NameError, match="'batch'.*not bound"):
        jax.vmap(lambda v: layer.apply(params, state, v, train=True))(x[None])


def test_batchnorm_custom_axis_name():
    layer = L.BatchNorm(axis_name="examples")
    _, params, state = layer.init(None, (3,))
    xs = jnp.asarray(np.random.default_rng(4).standard_normal((6, 3)), jnp.float32)
    f = jax.jit(jcnn.batched(layer.apply, axis_name="examples"), static_argnames="train")
    ys, _ = f(params, state, xs, train=True)
    np.testing.assert_allclose(np.mean(ys, axis=0), 0.0, atol=1e-5)
    with pytest.raises(NameError, match="'examples'"):
        jcnn.batched(layer.apply)(params, state, xs, train=True)


def test_batchnorm_bfloat16_stats_in_float32():
    rng = np.random.default_rng(5)
    layer = L.BatchNorm()
    _, params, state = layer.init(None, (4, 4, 2))
    # Large offset, small spread: bfloat16 accumulation (8-bit mantissa) would lose the mean.
    xs = jnp.asarray(100.0 + rng.standard_normal((8, 4, 4, 2)), jnp.bfloat16)
    ys, new = jax.jit(jcnn.batched(layer.apply), static_argnames="train")(
        params, state, xs, train=True
    )
    assert ys.dtype == jnp.bfloat16
    assert new["mean"].dtype == jnp.float32 and new["var"].dtype == jnp.float32
    x32 = np.asarray(xs, np.float64)
    _, want = np_batchnorm_train(x32, {"scale": 1.0, "offset": 0.0}, state, 0.9, 1e-5, False)
    assert _record("BatchNorm bf16 running mean", new["mean"], want["mean"]) < 1e-4
    np.testing.assert_allclose(new["var"], want["var"], rtol=1e-4)
    y_eval, _ = jax.jit(layer.apply)(params, new, xs[0])
    assert y_eval.dtype == jnp.bfloat16


def test_batchnorm_hyperparameter_and_channel_errors():
    with pytest.raises(ValueError, match="momentum"):
        L.BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        L.BatchNorm(eps=0.0)
    _, params, state = L.BatchNorm().init(None, (4, 4, 3))
    with pytest.raises(ShapeError, match="3 channels"):
        L.BatchNorm().apply(params, state, jnp.full((4, 4, 5), 0.5))


# ---------------------------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------------------------


def np_layernorm(x, axes, params, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    bshape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    scale = params["scale"].reshape(bshape)
    offset = params["offset"].reshape(bshape)
    return (x - mean) / np.sqrt(var + eps) * scale + offset


@pytest.mark.parametrize(
    ("shape", "axes", "norm_axes"),
    [
        ((6,), -1, (0,)),
        ((4, 6), -1, (1,)),
        ((3, 4, 5), (0, 1, 2), (0, 1, 2)),
        ((3, 4, 5), (-2, -1), (1, 2)),
    ],
)
def test_layernorm_matches_numpy(shape, axes, norm_axes):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape) * 2 + 0.5
    layer = L.LayerNorm(axes=axes, eps=1e-3)
    with jax.enable_x64(True):
        out, p0, state = layer.init(None, shape)
        feat = tuple(shape[a] for a in norm_axes)
        assert out == shape and p0["scale"].shape == feat and state == {}
        params = _random_affine(rng, feat)
        y, _ = layer.apply(params, state, jnp.asarray(x))
    assert _record("LayerNorm", y, np_layernorm(x, norm_axes, params, 1e-3)) < 1e-12


def test_layernorm_axes_out_of_range():
    with pytest.raises(ShapeError, match="LayerNorm"):
        L.LayerNorm(axes=3).init(None, (2, 3))


# ---------------------------------------------------------------------------------------------
# GroupNorm
# ---------------------------------------------------------------------------------------------


def np_groupnorm(x, groups, params, eps):
    c = x.shape[-1]
    g = x.reshape(*x.shape[:-1], groups, c // groups)
    axes = (*range(x.ndim - 1), x.ndim)
    mean = g.mean(axis=axes, keepdims=True)
    var = ((g - mean) ** 2).mean(axis=axes, keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * params["scale"] + params["offset"]


@pytest.mark.parametrize(("spatial", "groups"), [((4, 3), 1), ((4, 3), 2), ((5,), 8)])
def test_groupnorm_matches_numpy(groups, spatial):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((*spatial, 8)) * 1.5 - 0.3
    layer = L.GroupNorm(groups, eps=1e-4)
    with jax.enable_x64(True):
        out, _, state = layer.init(None, x.shape)
        params = _random_affine(rng, 8)
        y, _ = layer.apply(params, state, jnp.asarray(x))
    assert out == x.shape
    assert _record("GroupNorm", y, np_groupnorm(x, groups, params, 1e-4)) < 1e-12


@pytest.mark.parametrize(("groups", "channels"), [(3, 8), (16, 8), (5, 6)])
def test_groupnorm_groups_must_divide_channels_at_init(groups, channels):
    with pytest.raises(ShapeError, match=rf"num_groups={groups} must divide"):
        L.GroupNorm(groups).init(None, (4, 4, channels))


def test_groupnorm_zero_groups_is_a_clear_error():
    # BUG (jcnn/layers/norm.py:143, GroupNorm.check): `input_shape[-1] % num_groups` with
    # num_groups=0 raises ZeroDivisionError instead of a ValueError naming num_groups.
    with pytest.raises(ValueError, match="num_groups"):
        L.GroupNorm(0).init(None, (4, 4, 8))


# ---------------------------------------------------------------------------------------------
# Rank promotion: the layers must not lean on implicit broadcasting.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer", [L.BatchNorm(), L.GroupNorm(2), L.LayerNorm()], ids=lambda lay: lay.kind
)
def test_norm_layers_need_no_rank_promotion(layer):
    # (C,) statistics and params against a (*spatial, C) input: explicit broadcasting only.
    x = jnp.asarray(np.random.default_rng(9).standard_normal((3, 3, 4)), jnp.float32)
    _, params, state = layer.init(None, x.shape)
    with jax.numpy_rank_promotion("raise"):
        y, _ = layer.apply(params, state, x)
    assert y.shape == x.shape


def _assert_same_gradient_no_more_memory(jcnn_loss, minimal_loss, params, x):
    """Equal ``scale`` gradients, and jcnn's compiled gradient needs <= 1.05x the XLA temp
    memory of the minimal reference (i.e. no extra saved activation)."""

    def temp_bytes(f):
        grad = jax.jit(jax.grad(f, argnums=(0, 1)))
        return grad.lower(params, x).compile().memory_analysis().temp_size_in_bytes

    np.testing.assert_allclose(
        jax.grad(jcnn_loss)(params, x)["scale"],
        jax.grad(minimal_loss)(params, x)["scale"],
        rtol=1e-4,
        atol=1e-4,
    )
    assert temp_bytes(jcnn_loss) <= 1.05 * temp_bytes(minimal_loss)


def test_batchnorm_backward_keeps_one_activation():
    """Train-mode BatchNorm's gradient needs no more XLA temp memory than a minimal hand-written
    BatchNorm (centred input kept, per-channel factors folded): no extra saved activation."""
    x = jax.random.normal(jax.random.key(1), (32, 16, 16, 32))
    bn = L.BatchNorm()
    _, params, state = bn.init(jax.random.key(0), x.shape[1:])

    def jcnn_loss(params, x):
        y, _ = jcnn.batched(bn.apply)(params, state, x, train=True)
        return jnp.sum(jnp.sin(y))

    def minimal_loss(params, x):
        mean = jnp.mean(x, (0, 1, 2), keepdims=True)
        centred = x - mean
        var = jnp.mean(jnp.square(centred), (0, 1, 2), keepdims=True)
        scale, offset = params["scale"].reshape(1, 1, 1, -1), params["offset"].reshape(1, 1, 1, -1)
        y = centred * (scale * jax.lax.rsqrt(var + 1e-5)) + offset
        return jnp.sum(jnp.sin(y))

    _assert_same_gradient_no_more_memory(jcnn_loss, minimal_loss, params, x)


def test_groupnorm_backward_keeps_one_activation():
    """GroupNorm's gradient needs no more XLA temp memory than a minimal hand-written one."""
    x = jax.random.normal(jax.random.key(2), (16, 16, 32))
    gn = L.GroupNorm(4)
    _, params, state = gn.init(jax.random.key(0), x.shape)

    def jcnn_loss(params, x):
        return jnp.sum(jnp.sin(gn.apply(params, state, x)[0]))

    def minimal_loss(params, x):
        g = x.reshape(16, 16, 4, 8)
        mean = jnp.mean(g, (0, 1, 3), keepdims=True)
        centred = g - mean
        var = jnp.mean(jnp.square(centred), (0, 1, 3), keepdims=True)
        mul = params["scale"].reshape(1, 1, 4, 8) * jax.lax.rsqrt(var + 1e-5)
        y = (centred * mul).reshape(x.shape) + params["offset"].reshape(1, 1, -1)
        return jnp.sum(jnp.sin(y))

    _assert_same_gradient_no_more_memory(jcnn_loss, minimal_loss, params, x)
