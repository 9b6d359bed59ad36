"""The Layer type: an immutable value with explicit facts, equal and hashed over all of them."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.layers.core import COMBINES, Hparams, Window
from jcnn.layers.custom import custom
from jcnn.layers.precision import Policy, with_policy
from jcnn.layers.remat import remat
from jcnn.layers.shapes import ShapeError
from jcnn.models.transfer import inference_mode


def test_renamed_layer_is_another_layer_and_equal_layers_hash_alike():
    assert L.Relu() != L.Relu().named("x")
    assert L.Relu() == L.Relu() and hash(L.Relu()) == hash(L.Relu())
    assert L.Conv(8, 3) == L.Conv(8, (3, 3)) and L.Conv(8, 3) != L.Conv(8, 3, stride=2)
    assert L.Conv(8, 3, padding=[(1, 1), (0, 2)]) == L.Conv(8, 3, padding=((1, 1), (0, 2)))
    assert L.elementwise(jnp.sin, "F") != L.elementwise(jnp.cos, "F")
    assert models.resnet18() == models.resnet18() and models.resnet18() != models.resnet34()
    assert len({models.cnn(), models.cnn(), models.mlp()}) == 2  # usable as dict keys / static args


def test_layers_are_immutable():
    conv = L.Conv(8, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        conv.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        conv.hparams.stride = (2, 2)
    with pytest.raises(TypeError):
        conv.hparams["stride"] = (2, 2)
    assert not hasattr(conv, "_replace")  # NamedTuple's copy without the metadata is gone
    moved = conv.replace(name="stem", explicit_name=True)
    assert moved == conv.named("stem") and moved.kind == "Conv" and conv.name == "Conv"


def test_unhashable_hyperparameter_is_a_clear_error():
    with pytest.raises(TypeError, match="alpha=.*not hashable.*Python numbers"):
        L.elementwise(jax.nn.elu, "Elu", alpha=jnp.ones(3))


def test_still_a_pair():
    net = models.cnn()
    init, apply = net
    assert init is net.init and apply is net.apply and net[0] is net.init and len(net) == 2
    out, params, state = init(jax.random.key(0), (28, 28, 1))
    y, _ = apply(params, state, jnp.ones((28, 28, 1)))
    assert out == y.shape == (10,)


def test_facts_of_leaves():
    conv = L.Conv(4, (3, 5), stride=(1, 2), padding="SAME", dilation=2)
    assert conv.kind == "Conv" and conv.name == "Conv" and not conv.explicit_name
    assert conv.window == Window((3, 5), (1, 2), (2, 2), "SAME")
    assert conv.hparams["out_channels"] == 4 and isinstance(conv.hparams, Hparams)
    assert not conv.pointwise and conv.children == () and conv.combine is None
    assert L.Conv(2, (3,)).kind == "Conv" and L.ConvTranspose(2, 3).window.transposed
    assert L.MaxPool(2).window == Window((2, 2), (2, 2), (1, 1), "VALID")
    pointwise = [L.Relu(), L.Gelu(), L.Dropout(0.5), L.BatchNorm(), L.Identity(), L.Dense(3)]
    assert all(layer.pointwise and layer.window is None for layer in pointwise)
    mixing = [L.Flatten(), L.GlobalAvgPool(), L.GroupNorm(2), L.Softmax(axis=0), L.Reshape((-1,))]
    assert not any(layer.pointwise or layer.window for layer in mixing)
    assert L.LayerNorm().pointwise and not L.LayerNorm(axes=(0, 1, 2)).pointwise


def test_facts_of_combinators():
    block = L.serial(L.Conv(4, 3, padding=1), L.Relu())
    assert block.combine == "serial" and [k for k, _ in block.children] == ["Conv_0", "Relu_0"]
    res = L.residual(block)
    assert res.combine == "sum" and [k for k, _ in res.children] == ["block", "shortcut"]
    cat = L.concat(L.Conv(2, 1), L.Conv(3, 1), axis=-1)
    assert cat.combine == "concat" and cat.hparams["axis"] == -1
    assert L.parallel(L.Relu(), L.Relu()).combine == "parallel"
    rep = L.repeat(res, 3)
    assert rep.combine == "repeat" and rep.hparams["n"] == 3 and rep.children == (("blocks", res),)
    gated = L.gate(L.GlobalAvgPool(), L.Dense(4), L.Sigmoid())
    assert gated.combine == "gate" and gated.child_input_shapes((5, 5, 4)) == [
        (5, 5, 4),
        (4,),
        (4,),
    ]
    assert {res.combine, cat.combine, rep.combine, block.combine, gated.combine} <= set(COMBINES)
    assert res.child_input_shapes((8, 8, 4)) == [(8, 8, 4), (8, 8, 4)]
    net = L.serial(L.Conv(4, 3), L.MaxPool(2), L.Flatten())
    assert net.child_input_shapes((10, 10, 1)) == [(10, 10, 1), (8, 8, 4), (4, 4, 4)]


def test_repr_prints_the_tree_with_settings():
    text = repr(L.serial(L.Conv(8, (5, 5), stride=2), L.Relu(), L.Dense(10).named("head")))
    assert text.splitlines() == [
        "serial(",
        "  Conv(out_channels=8, kernel_size=(5, 5), stride=(2, 2)),",
        "  Relu(),",
        "  Dense(out_features=10).named('head'),",
        ")",
    ]
    assert repr(L.serial(L.Relu(), name="act")).endswith(").named('act')")
    assert repr(remat(L.Relu())) == "remat(Relu())"


ZOO = {
    "cnn": (models.cnn, (28, 28, 1)),
    "mlp": (models.mlp, (28, 28, 1)),
    "resnet18": (models.resnet18, (64, 64, 3)),
    "resnet50": (models.resnet50, (96, 96, 3)),
    "cifar_resnet18": (models.cifar_resnet18, (32, 32, 3)),
    "vgg11_bn": (models.vgg11_bn, (224, 224, 3)),
    "alexnet": (models.alexnet, (224, 224, 3)),
    "googlenet": (models.googlenet, (224, 224, 3)),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_pure_shape_function_equals_traced_init_for_every_sublayer(name):
    """``layer.output_shape`` (integer arithmetic) == the shape init returns under eval_shape,
    for the whole net and, through ``child_input_shapes``, for every layer inside it."""
    make, shape = ZOO[name]

    def check(layer, input_shape):
        traced = jcnn.init_shapes(layer, input_shape)[0]
        assert layer.output_shape(input_shape) == traced, (layer.name, input_shape)
        if layer.combine != "repeat":
            for (_, child), child_in in zip(layer.children, layer.child_input_shapes(input_shape)):
                if child.children or child.window is not None:
                    check(child, child_in)

    check(make(), shape)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (L.Conv(3, (3,), stride=2, padding="SAME"), (9, 2)),
        (L.Conv(4, (2, 3, 3), dilation=(1, 2, 1), padding=1, groups=2), (5, 9, 7, 2)),
        (L.ConvTranspose(3, (3, 3), stride=2, padding=1, output_padding=1), (5, 6, 2)),
        (L.AvgPool((3, 3), stride=2, padding=1, count_include_pad=False), (7, 8, 3)),
        (L.MaxPool((2,), padding="SAME"), (7, 3)),
        (L.Reshape((-1, 4)), (2, 3, 4)),
        (L.repeat(L.residual(L.serial(L.Conv(2, 3, padding=1), L.Relu())), 2), (6, 6, 2)),
        (L.parallel(L.Dense(3), L.Flatten()), ((4,), (2, 3))),
        (
            L.serial(L.fan_out(2), L.parallel(L.Conv(2, 1), L.Conv(3, 1)), L.fan_in_concat()),
            (4, 4, 1),
        ),
    ],
)
def test_pure_shape_function_of_layers(layer, shape):
    assert layer.output_shape(shape) == jcnn.init_shapes(layer, shape)[0]


def test_shape_function_raises_what_init_raises():
    conv = L.Conv(8, 5)
    with pytest.raises(ShapeError) as pure:
        conv.output_shape((3, 3, 1))
    with pytest.raises(ShapeError) as traced:
        conv.init(jax.random.key(0), (3, 3, 1))
    assert str(pure.value) == str(traced.value) and "window does not fit" in str(pure.value)


def test_summary_traces_each_layer_once():
    """One eval_shape of the whole init; output shapes by arithmetic (no init re-runs)."""
    calls = []

    def init(key, shape):
        calls.append(shape)
        return shape, {"g": jnp.ones(shape[-1:])}, {}

    def apply(params, state, x, *, key=None, train=False):
        return x * params["g"], state

    gain = custom(init, apply, "Gain", output_shape=lambda s: s, pointwise=True)
    net = L.serial(gain, L.serial(L.Conv(2, 3), gain, name="inner"), L.Flatten(), gain)
    text = jcnn.summary(net, (6, 6, 1))
    assert len(calls) == 3 and "Gain()" in text and "inner" in text


def test_custom_layer_without_shape_function_is_traced_for_its_shape():
    def init(key, shape):
        return (shape[0] * 2,), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        return jnp.concatenate([x, x]), state

    twice = custom(init, apply, "Twice")
    assert twice.output_shape((3,)) == (6,) and jcnn.count_params(twice, (3,)) == 0
    assert custom(init, apply, "Twice") == twice and custom(init, apply, "Other") != twice


def test_wrappers_keep_facts_and_trees_and_print():
    block = L.serial(L.Conv(4, 3, padding=1), L.BatchNorm(), L.Relu())
    wrapped = inference_mode(remat(with_policy(block, Policy.mixed_bfloat16())))
    assert (wrapped.kind, wrapped.name, wrapped.children) == (
        block.kind,
        block.name,
        block.children,
    )
    assert wrapped.output_shape((8, 8, 2)) == block.output_shape((8, 8, 2))
    assert wrapped != block and [w.label for w in wrapped.wrappers][1:] == [
        "remat",
        "inference_mode",
    ]
    assert wrapped.describe().startswith("inference_mode(remat(with_policy[float32/bfloat16/")
    t1 = jax.tree.structure(jcnn.init_shapes(block, (8, 8, 2))[1:])
    assert jax.tree.structure(jcnn.init_shapes(wrapped, (8, 8, 2))[1:]) == t1


def test_custom_apply_returning_only_y_is_named_with_the_fix():
    def init(key, shape):
        return shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        return 2 * x  # forgot the state

    twice = L.custom(init, apply, "Twice", output_shape=lambda s: s, stochastic=False)
    net = L.serial(L.Dense(3), twice)
    _, params, state = net.init(jax.random.key(0), (4,))
    with pytest.raises(TypeError, match=r"Twice_0: .*returned ArrayImpl.*\(y, state\)"):
        net.apply(params, state, jnp.ones(4))
    with pytest.raises(TypeError, match="return y, state"):
        jcnn.batched(net.apply)(params, state, jnp.ones((2, 4)))
    deep = L.serial(L.serial(twice, name="block"), name="net")
    _, params, state = deep.init(jax.random.key(0), (4,))
    with pytest.raises(TypeError, match=r"^net/block/Twice_0: .*\(y, state\)"):
        deep.apply(params, state, jnp.ones(4))


@pytest.mark.parametrize(
    "returned, said",
    [
        (lambda shape: ({}, {}), "a tuple of 2"),
        (lambda shape: shape, "tuple of 1"),
        (lambda shape: ({}, {}, shape), "first element of type dict"),
        (lambda shape: None, "NoneType"),
    ],
)
def test_custom_init_not_returning_shape_params_state_is_named(returned, said):
    def init(key, shape):
        return returned(shape)

    def apply(params, state, x, *, key=None, train=False):
        return x, state

    odd = L.custom(init, apply, "Odd", output_shape=lambda s: s, stochastic=False)
    net = L.serial(L.Dense(3), odd.named("odd"), name="net")
    with pytest.raises(
        TypeError, match=r"^net/odd: .*" + said + r".*\(output_shape, params, state\)"
    ):
        net.init(jax.random.key(0), (4,))


def test_batch_norm_unbound_axis_hint_keeps_the_state_unbatched():
    _, params, state = L.BatchNorm().init(jax.random.key(0), (3,))
    with pytest.raises(NameError, match=r"out_axes=\(0, None\)"):
        L.BatchNorm().apply(params, state, jnp.ones(3), train=True)
