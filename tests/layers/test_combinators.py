"""Combinators: values vs composing the children by hand, param naming, key splitting, shape
errors, Inception and ResNet blocks with hand-counted params, jit/vmap agreement, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.layers.shapes import ShapeError


def random_init(layer, input_shape, seed=0):
    """Params/state with the structure of ``layer.init`` but random NumPy values.

    Shapes come from ``jcnn.init_shapes`` (no allocation, no PRNG compilation); BatchNorm
    running variances are drawn positive.
    """
    out, p_abs, s_abs = jcnn.init_shapes(layer, input_shape)
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if getattr(path[-1], "key", None) == "var":
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        return jnp.asarray(rng.standard_normal(leaf.shape) * 0.5, leaf.dtype)

    params = jax.tree_util.tree_map_with_path(draw, p_abs)
    state = jax.tree_util.tree_map_with_path(draw, s_abs)
    return out, params, state


def _x(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _leaves(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


# ---------------------------------------------------------------------------------------------
# Values vs the children applied by hand
# ---------------------------------------------------------------------------------------------


def test_serial_equals_children_in_order():
    children = [L.Conv(3, (3, 3)), L.Relu(), L.Flatten(), L.Dense(2)]
    net = L.serial(*children)
    out, params, state = random_init(net, (6, 6, 2))
    x = _x((6, 6, 2))
    y, new_state = net.apply(params, state, x)
    h = x
    for key, child in zip(["Conv_0", "Relu_0", "Flatten_0", "Dense_0"], children):
        h, _ = child.apply(params[key], state[key], h)
    assert out == y.shape == (2,)
    _close(y, h)
    assert set(new_state) == set(params)


def test_parallel_applies_ith_layer_to_ith_input():
    dense, conv = L.Dense(3), L.Conv(2, (3, 3))
    net = L.parallel(dense, conv)
    out, params, state = random_init(net, ((4,), (6, 6, 2)))
    assert out == ((3,), (4, 4, 2))
    xs = (_x((4,)), _x((6, 6, 2)))
    ys, _ = net.apply(params, state, xs)
    _close(ys[0], dense.apply(params["Dense_0"], {}, xs[0])[0])
    _close(ys[1], conv.apply(params["Conv_0"], {}, xs[1])[0])
    with pytest.raises(ValueError, match="parallel: expected a tuple of 2 inputs"):
        net.init(jax.random.key(0), (4,))


def test_fan_out_fan_in_sum_and_concat():
    x = _x((5, 3))
    ys, _ = L.fan_out(3).apply({}, {}, x)
    assert L.fan_out(3).init(None, (5, 3))[0] == ((5, 3),) * 3
    assert len(ys) == 3 and all(y is x for y in ys)
    a, b, c = _x((5, 3), 2), _x((5, 3), 3), _x((5, 3), 4)
    s, _ = L.fan_in_sum().apply({}, {}, (a, b, c))
    assert L.fan_in_sum().init(None, ((5, 3),) * 3)[0] == (5, 3)
    _close(s, np.asarray(a) + np.asarray(b) + np.asarray(c))
    d = _x((5, 2), 5)
    cat, _ = L.fan_in_concat().apply({}, {}, (a, d))
    assert L.fan_in_concat().init(None, ((5, 3), (5, 2)))[0] == (5, 5) == cat.shape
    np.testing.assert_array_equal(cat, np.concatenate([a, d], axis=-1))
    e = _x((2, 3), 6)
    cat0, _ = L.fan_in_concat(axis=0).apply({}, {}, (a, e))
    assert L.fan_in_concat(axis=0).init(None, ((5, 3), (2, 3)))[0] == (7, 3) == cat0.shape
    np.testing.assert_array_equal(cat0, np.concatenate([a, e], axis=0))
    with pytest.raises(ShapeError, match="every axis except -1"):
        L.fan_in_concat().init(None, ((5, 3), (4, 3)))


def test_fan_out_sum_network_equals_manual_sum():
    branches = [L.Dense(4), L.serial(L.Dense(4), L.Tanh())]
    net = L.serial(L.fan_out(2), L.parallel(*branches), L.fan_in_sum())
    _, params, state = random_init(net, (6,))
    x = _x((6,))
    y, _ = net.apply(params, state, x)
    p = params["parallel_0"]
    want = (
        branches[0].apply(p["Dense_0"], {}, x)[0]
        + branches[1].apply(p["serial_0"], state["parallel_0"]["serial_0"], x)[0]
    )
    _close(y, want)


def test_concat_equals_manual_concatenation():
    b1 = L.Conv(2, (1, 1))
    b2 = L.serial(L.Conv(3, (3, 3), padding="SAME"), L.Relu())
    net = L.concat(b1, b2)
    out, params, state = random_init(net, (6, 6, 2))
    assert set(params) == {"Conv_0", "serial_0"}
    x = _x((6, 6, 2))
    y, _ = net.apply(params, state, x)
    want = np.concatenate(
        [
            b1.apply(params["Conv_0"], {}, x)[0],
            b2.apply(params["serial_0"], state["serial_0"], x)[0],
        ],
        axis=-1,
    )
    assert out == y.shape == (6, 6, 5)
    _close(y, want)


def test_residual_is_block_plus_shortcut():
    block = L.serial(L.Conv(2, (3, 3), padding="SAME"), L.Tanh())
    net = L.residual(block)
    out, params, state = random_init(net, (6, 6, 2))
    assert set(params) == {"block", "shortcut"} and params["shortcut"] == {}
    x = _x((6, 6, 2))
    y, _ = net.apply(params, state, x)
    _close(y, np.asarray(block.apply(params["block"], state["block"], x)[0]) + np.asarray(x))
    assert out == y.shape

    conv_block, conv_sc = L.Conv(4, (3, 3), padding="SAME"), L.Conv(4, (1, 1))
    net = L.residual(conv_block, conv_sc)
    _, params, state = random_init(net, (6, 6, 2))
    y, _ = net.apply(params, state, x)
    want = conv_block.apply(params["block"], {}, x)[0] + conv_sc.apply(params["shortcut"], {}, x)[0]
    _close(y, want)


# ---------------------------------------------------------------------------------------------
# Param naming
# ---------------------------------------------------------------------------------------------


def test_children_numbered_per_name_in_order():
    net = L.serial(L.Conv(4, 3), L.Relu(), L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(2))
    keys = ["Conv_0", "Relu_0", "Conv_1", "Relu_1", "Flatten_0", "Dense_0"]
    assert [k for k, _ in net.children] == keys
    # (dict order is not kept through jax.eval_shape, which sorts keys: compare as sets)
    _, params, state = jcnn.init_shapes(net, (9, 9, 1))
    assert set(params) == set(state) == set(keys)
    assert set(params["Conv_1"]) == {"kernel", "bias"}
    assert params["Conv_1"]["kernel"].shape == (3, 3, 4, 4)


def test_conv_kind_is_rank_independent_with_ndim_a_fact():
    net = L.serial(L.Conv(2, (3,)), L.Conv(2, (1, 1, 1)).named("c3"), L.Conv(2, (3,)))
    assert [k for k, _ in net.children] == ["Conv_0", "c3", "Conv_1"]
    assert {c.kind for _, c in net.children} == {"Conv"}
    assert [c.hparams["ndim"] for _, c in net.children] == [1, 3, 1]
    assert L.ConvTranspose(2, (3, 3, 3)).kind == "ConvTranspose"


def test_named_kept_verbatim_and_nested_serial_keys():
    net = L.serial(
        L.Conv(4, 3).named("stem"),
        L.serial(L.Conv(4, 3), L.Relu(), name="features"),
        L.serial(L.Flatten(), L.Dense(2)),
        L.serial(L.Dense(2)),
        L.Dense(3).named("head"),
    )
    _, params, _ = jcnn.init_shapes(net, (9, 9, 1))
    keys = ["stem", "features", "serial_0", "serial_1", "head"]
    assert [k for k, _ in net.children] == keys and set(params) == set(keys)
    assert set(params["features"]) == {"Conv_0", "Relu_0"}
    assert params["stem"]["kernel"].shape == (3, 3, 1, 4)
    assert params["head"]["kernel"].shape == (2, 3)
    # .named returns a new layer; the original keeps its automatic name.
    conv = L.Conv(4, 3)
    assert conv.named("stem").name == "stem" and conv.name == "Conv"
    assert conv.named("stem").kind == "Conv" and not conv.explicit_name


def test_duplicate_names_error():
    with pytest.raises(ValueError, match="two children are named 'a'"):
        L.serial(L.Relu().named("a"), L.Tanh().named("a"))
    with pytest.raises(ValueError, match="'Conv_0'"):
        L.serial(L.Conv(2, 3).named("Conv_0"), L.Conv(2, 3))
    with pytest.raises(ValueError, match="two children"):
        L.concat(L.Conv(2, 1).named("b"), L.Conv(2, 1).named("b"))


@pytest.mark.parametrize("bad", ["", "a/b", 3])
def test_bad_names_error(bad):
    with pytest.raises(ValueError, match="layer name"):
        L.Relu().named(bad)


# ---------------------------------------------------------------------------------------------
# PRNG keys
# ---------------------------------------------------------------------------------------------


def test_two_dropouts_in_serial_get_different_masks():
    n = 4096
    x = jnp.asarray(np.random.default_rng(2).uniform(0.5, 2.0, (n,)), jnp.float32)
    d = L.Dropout(0.5)
    net = L.serial(d, d)
    key = jax.random.key(3)
    y, _ = net.apply(
        {"Dropout_0": {}, "Dropout_1": {}},
        {"Dropout_0": {}, "Dropout_1": {}},
        x,
        key=key,
        train=True,
    )
    # Independent masks keep 1/4 of the values (the same mask twice would keep 1/2).
    kept = float(np.mean(np.asarray(y) != 0))
    assert abs(kept - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n)
    k0, k1 = jax.random.split(key, 2)
    h, _ = d.apply({}, {}, x, key=k0, train=True)
    want, _ = d.apply({}, {}, h, key=k1, train=True)
    np.testing.assert_array_equal(y, want)
    # Branches of a parallel also get their own keys.
    par = L.serial(L.fan_out(2), L.parallel(d, d))
    _, params, state = jcnn.init_shapes(par, (n,))
    (a, b), _ = par.apply(params, state, x, key=key, train=True)
    assert np.mean((np.asarray(a) == 0) != (np.asarray(b) == 0)) > 0.3


def test_init_splits_key_per_child():
    normal = jax.nn.initializers.normal(1.0)  # cheaper to compile than the truncated default
    net = L.serial(L.Dense(3, kernel_init=normal), L.Dense(3, kernel_init=normal))
    _, params, _ = net.init(jax.random.key(0), (3,))
    assert not np.allclose(params["Dense_0"]["kernel"], params["Dense_1"]["kernel"])
    _, again, _ = net.init(jax.random.key(0), (3,))
    np.testing.assert_array_equal(params["Dense_1"]["kernel"], again["Dense_1"]["kernel"])


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes_in", [((3, 4), (4,)), ((3, 1), (3, 4)), ((2, 3), (3, 2))])
def test_fan_in_sum_does_not_broadcast(shapes_in):
    with pytest.raises(ShapeError, match="no broadcasting"):
        L.fan_in_sum().init(None, shapes_in)
    xs = tuple(jnp.full(s, 0.5) for s in shapes_in)
    with pytest.raises(ShapeError, match="fan_in_sum"):
        L.fan_in_sum().apply({}, {}, xs)


@pytest.mark.parametrize(
    ("block", "shortcut"),
    [
        (L.Conv(4, 3), None),  # VALID conv shrinks the block output
        (L.Conv(8, 3, padding="SAME"), None),  # channels differ
        (L.Conv(8, 3, stride=2, padding="SAME"), L.Conv(8, 1)),  # shortcut not strided
    ],
)
def test_residual_shape_mismatch_errors_at_init(block, shortcut):
    net = L.residual(block, shortcut)
    with pytest.raises(ShapeError, match=r"residual: input shape \(6, 6, 4\): block gives"):
        jcnn.init_shapes(net, (6, 6, 4))


def test_errors_name_the_path_of_the_failing_layer():
    """Each combinator on the way up puts the child's key in place of its kind."""
    with pytest.raises(ShapeError, match=r"^cnn/Conv_1: input shape \(2, 2, 8\): spatial dim 0"):
        models.cnn().init(jax.random.key(0), (8, 8, 1))
    with pytest.raises(ShapeError, match=r"^cnn/Conv_1: input shape \(2, 2, 8\)"):
        models.cnn().output_shape((8, 8, 1))
    deep = L.serial(L.Conv(4, 3, padding=1), L.residual(L.serial(L.Conv(4, 3), L.Relu())))
    with pytest.raises(ShapeError, match=r"^serial/residual_0: input shape .*block gives"):
        deep.init(jax.random.key(0), (6, 6, 1))
    net = L.serial(L.repeat(L.residual(L.serial(L.Conv(2, 3, padding=1), L.Dense(3))), 2))
    with pytest.raises(
        ShapeError, match=r"^serial/repeat_0/blocks: input shape \(5, 5, 2\): block gives"
    ):
        net.init(jax.random.key(0), (5, 5, 2))
    two = L.serial(L.Conv(4, 3), L.Flatten(), L.Dense(2))
    _, params, state = random_init(two, (6, 6, 1))
    with pytest.raises(ShapeError, match=r"^serial/Conv_0: input shape \(6, 6\): expected rank 3"):
        two.apply(params, state, _x((6, 6)))


def test_params_from_another_architecture_error():
    net_a = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(2))
    net_b = L.serial(L.Flatten(), L.Dense(5), L.Relu(), L.Dense(2))
    _, p_a, s_a = jcnn.init_shapes(net_a, (6, 6, 1))
    _, p_b, s_b = random_init(net_b, (6, 6, 1))
    x = _x((6, 6, 1))
    with pytest.raises(ValueError, match="serial: params from another architecture"):
        net_a.apply(p_b, s_a, x)
    # Same keys, different sizes: caught by the layer itself.
    net_c = L.serial(L.Conv(6, 3), L.Relu(), L.Flatten(), L.Dense(2))
    _, p_c, s_c = random_init(net_c, (6, 6, 1))
    with pytest.raises(
        ValueError, match="serial/Conv_0: params from another architecture.*'kernel'"
    ):
        net_a.apply(p_c, s_c, x)
    res = L.residual(L.Relu())
    with pytest.raises(ValueError, match="residual: params from another architecture"):
        res.apply({"Relu_0": {}}, {}, x)


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.serial(L.Conv(2, 3), L.Relu),
        lambda: L.parallel(L.Relu),
        lambda: L.concat(L.Identity, L.Relu()),
        lambda: L.residual(L.Relu),
        lambda: L.residual(L.Relu(), L.Identity),
    ],
    ids=["serial", "parallel", "concat", "residual block", "residual shortcut"],
)
def test_uncalled_constructor_is_a_typeerror(make):
    # BUG for the two residual cases (jcnn/layers/combinators.py:252-270, residual): it does not
    # check its children, so `residual(L.Relu)` fails later, at init (line 269/270), with
    # AttributeError: 'function' object has no attribute 'init'.
    with pytest.raises(TypeError, match=r"call constructors: Relu\(\), not Relu"):
        jcnn.init_shapes(make(), (6, 6, 2))


def test_empty_combinators_error():
    with pytest.raises(ValueError, match="at least one layer"):
        L.serial()
    with pytest.raises(ValueError, match="fan_out num"):
        L.fan_out(0)


# ---------------------------------------------------------------------------------------------
# Inception module and ResNet basic block: shapes and hand-counted params
# ---------------------------------------------------------------------------------------------


def inception(c1, c3r, c3, c5r, c5, pool_proj):
    """GoogLeNet module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated."""
    return L.concat(
        L.Conv(c1, 1),
        L.serial(L.Conv(c3r, 1), L.Relu(), L.Conv(c3, 3, padding="SAME")),
        L.serial(L.Conv(c5r, 1), L.Relu(), L.Conv(c5, 5, padding="SAME")),
        L.serial(L.MaxPool(3, stride=1, padding="SAME"), L.Conv(pool_proj, 1)),
    )


def conv_params(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def test_inception_module_shapes_params_and_values():
    net = inception(8, 4, 8, 2, 4, 4)
    out, params, state = random_init(net, (8, 8, 16))
    assert out == (8, 8, 8 + 8 + 4 + 4)
    by_hand = sum(
        [
            16 * 8 + 8,  # 1x1: 136
            (16 * 4 + 4) + (3 * 3 * 4 * 8 + 8),  # 1x1 -> 3x3: 68 + 296
            (16 * 2 + 2) + (5 * 5 * 2 * 4 + 4),  # 1x1 -> 5x5: 34 + 204
            16 * 4 + 4,  # pool -> 1x1: 68
        ]
    )
    assert by_hand == 806 == jcnn.count_params(net, (8, 8, 16)) == _leaves(params)
    assert [k for k, _ in net.children] == ["Conv_0", "serial_0", "serial_1", "serial_2"]
    x = _x((8, 8, 16))
    y, _ = jax.jit(net.apply)(params, state, x)
    assert y.shape == out
    # The pool branch: max pool (stride 1, SAME) then 1x1 conv, as the last 4 channels.
    pooled = L.MaxPool(3, stride=1, padding="SAME").apply({}, {}, x)[0]
    p_last = params["serial_2"]["Conv_0"]
    want = jnp.einsum("hwc,co->hwo", pooled, p_last["kernel"][0, 0]) + p_last["bias"][None, None]
    _close(y[..., -4:], want, 1e-4)


def test_googlenet_inception_3a_params():
    net = inception(64, 96, 128, 16, 32, 32)
    by_hand = sum(
        [
            conv_params(1, 192, 64),  # 12,352
            conv_params(1, 192, 96) + conv_params(3, 96, 128),  # 18,528 + 110,720
            conv_params(1, 192, 16) + conv_params(5, 16, 32),  # 3,088 + 12,832
            conv_params(1, 192, 32),  # 6,176
        ]
    )
    assert by_hand == 163_696
    assert jcnn.count_params(net, (28, 28, 192)) == by_hand
    assert jcnn.output_shape(net, (28, 28, 192)) == (28, 28, 256)


def basic_block(c_in, c_out, stride):
    """ResNet basic block with a strided 1x1 conv shortcut, followed by ReLU."""
    block = L.serial(
        L.Conv(c_out, 3, stride=stride, padding=1, use_bias=False),
        L.BatchNorm(),
        L.Relu(),
        L.Conv(c_out, 3, padding="SAME", use_bias=False),
        L.BatchNorm(),
    )
    shortcut = L.serial(L.Conv(c_out, 1, stride=stride, use_bias=False), L.BatchNorm())
    return L.serial(L.residual(block, shortcut), L.Relu())


def test_resnet_basic_block_shapes_params_and_run():
    net = basic_block(16, 32, 2)
    out, params, state = random_init(net, (8, 8, 16))
    assert out == (4, 4, 32)
    by_hand = sum(
        [
            3 * 3 * 16 * 32 + 2 * 32,  # conv 3x3 stride 2 + BN scale/offset: 4,608 + 64
            3 * 3 * 32 * 32 + 2 * 32,  # conv 3x3 + BN: 9,216 + 64
            1 * 1 * 16 * 32 + 2 * 32,  # shortcut conv 1x1 stride 2 + BN: 512 + 64
        ]
    )
    assert by_hand == 14_528 == jcnn.count_params(net, (8, 8, 16)) == _leaves(params)
    assert _leaves(state) == 3 * 2 * 32  # BN running mean/var, not counted as params
    assert set(params["residual_0"]) == {"block", "shortcut"}
    xs = _x((3, 8, 8, 16))
    f = jax.jit(jcnn.batched(net.apply), static_argnames="train")
    ys, new_state = f(params, state, xs, train=True)
    assert ys.shape == (3, *out) and float(jnp.min(ys)) >= 0.0
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    ys_eval, same_state = f(params, state, xs, train=False)
    assert ys_eval.shape == ys.shape
    for a, b in zip(jax.tree_util.tree_leaves(same_state), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)


def test_resnet18_layer2_first_block_params():
    by_hand = conv_params(3, 64, 128, False) + conv_params(3, 128, 128, False)
    by_hand += conv_params(1, 64, 128, False) + 3 * 2 * 128
    assert by_hand == 230_144
    net = basic_block(64, 128, 2)
    assert jcnn.count_params(net, (56, 56, 64)) == by_hand
    assert jcnn.output_shape(net, (56, 56, 64)) == (28, 28, 128)


# ---------------------------------------------------------------------------------------------
# jit == eager, batched == loop, gradients
# ---------------------------------------------------------------------------------------------


def small_net():
    return L.serial(
        L.Conv(4, 3), L.BatchNorm(), L.Relu(), L.MaxPool(2), L.Flatten(), L.Dropout(0.5), L.Dense(3)
    )


def test_jit_equals_eager_and_batched_equals_loop():
    net = small_net()
    out, params, state = random_init(net, (6, 6, 2))
    xs = _x((3, 6, 6, 2))
    # Eval mode (BatchNorm on running stats, Dropout off): per-example eager loop is the reference.
    loop = np.stack([np.asarray(net.apply(params, state, x)[0]) for x in xs])
    assert loop.shape == (3, *out)
    ys_jit, s_jit = jax.jit(jcnn.batched(net.apply))(params, state, xs)
    _close(ys_jit, loop)
    for a, b in zip(jax.tree_util.tree_leaves(s_jit), jax.tree_util.tree_leaves(state)):
        np.testing.assert_array_equal(a, b)  # eval: state unchanged


def test_gradients_match_finite_differences():
    net = L.serial(
        L.Conv(3, 3), L.Tanh(), L.Conv(4, 3, stride=2, padding=1), L.GlobalAvgPool(), L.Dense(2)
    )
    with jax.enable_x64(True):
        _, params, _ = random_init(net, (6, 6, 2))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        x = jnp.asarray(np.random.default_rng(7).standard_normal((6, 6, 2)))

        @jax.jit
        def loss(p, v):
            y, _ = net.apply(p, {name: {} for name in p}, v)
            return jnp.sum(jnp.sin(y))

        check_grads(loss, (params, x), order=1, modes=("rev",))


def test_gradients_through_batchnorm_train():
    net = L.serial(L.Dense(3), L.BatchNorm(), L.Tanh())
    with jax.enable_x64(True):
        _, params, state = random_init(net, (4,))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        state = jax.tree.map(lambda a: a.astype(jnp.float64), state)
        xs = jnp.asarray(np.random.default_rng(8).standard_normal((5, 4)))

        @jax.jit
        def loss(p, v):
            ys, _ = jcnn.batched(net.apply)(p, state, v, train=True)
            return jnp.sum(ys * jnp.arange(1.0, 4.0)[None, :])

        check_grads(loss, (params, xs), order=1, modes=("rev",))


@pytest.mark.parametrize("combinator", [L.concat, L.residual, L.serial])
def test_inlined_child_keys_sit_in_the_parent_and_values_are_unchanged(combinator):
    body = L.serial(L.Conv(3, 1).named("conv"), L.Relu().named("act"))
    plain, inlined = combinator(L.Identity(), body), combinator(L.Identity(), body.inlined())
    if combinator is L.serial:  # a chain: the body needs the identity's shape only
        plain, inlined = L.serial(body), L.serial(body.inlined())
    _, p_plain, s_plain = plain.init(jax.random.key(0), (4, 4, 3))
    _, p_inl, s_inl = inlined.init(jax.random.key(0), (4, 4, 3))
    assert {"conv", "act"} <= set(p_inl) and not {"conv", "act"} & set(p_plain)
    x = jax.random.normal(jax.random.key(1), (4, 4, 3))
    y_plain, _ = plain.apply(p_plain, s_plain, x)
    y_inl, _ = inlined.apply(p_inl, s_inl, x)
    np.testing.assert_array_equal(y_plain, y_inl)
