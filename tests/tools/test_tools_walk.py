"""Every tool reads a network through ONE walk (Layer.walk): summary, receptive fields, porting,
the per-example check and head surgery see custom combinators and inlined blocks as the walk
gives them, and name layers by the walk's paths (the addresses of their params)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.interop import porting
from jcnn.layers import paths
from jcnn.layers.core import Window
from jcnn.layers.remat import remat
from jcnn.models.transfer import kept_paths, replace_head
from jcnn.tools.receptive import layer_specs, network_receptive_field
from jcnn.tools.summary import summary_rows
from jcnn.training.privacy import check_per_example

SHAPE = (9, 9, 2)


def _my_conv(out_channels: int) -> L.Layer:
    """A user's own 3x3 convolution: a custom leaf that states its window."""

    def init(key, shape):
        kernel = jax.random.normal(key, (3, 3, shape[-1], out_channels)) * 0.1
        return (shape[0] - 2, shape[1] - 2, out_channels), {"kernel": kernel}, {}

    def apply(params, state, x, *, key=None, train=False):
        y = lax.conv_general_dilated(
            x[None], params["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y[0], state

    window = Window((3, 3), (1, 1), (1, 1), "VALID")
    return L.custom(
        init,
        apply,
        "MyConv",
        output_shape=lambda s: (s[0] - 2, s[1] - 2, out_channels),
        window=window,
        stochastic=False,
    )


def _block(inline: bool, name: str = "0") -> L.Layer:
    body = L.serial(L.Conv(2, 3, padding=1).named("conv1"), L.Relu().named("relu"))
    return L.residual(body.inlined() if inline else body, name=name).named(name)


def _net(inline: bool = True) -> L.Layer:
    """A custom-kind combinator (a residual under a name no tool knows), an inlined block and a
    custom windowed leaf."""
    mine = L.residual(L.serial(L.Conv(2, 3, padding=1), L.Relu())).replace(kind="MyResidual")
    return L.serial(
        _my_conv(2).named("mine"),
        _block(inline),
        mine.named("custom"),
        L.Flatten(),
        L.Dense(3).named("fc"),
        name="net",
    )


# ------------------------------------------------------------------ summary


def test_summary_rows_are_the_walk():
    net = _net()
    rows = summary_rows(net, SHAPE)
    visits = list(net.walk(SHAPE))
    assert [r.path for r in rows] == [v.path for v in visits]
    assert [r.out_shape for r in rows] == [v.out_shape for v in visits]
    assert rows[0].params == jcnn.count_params(net, SHAPE)
    by_label = {r.label: r for r in rows}
    assert by_label["custom"].kind.startswith("MyResidual(")
    assert by_label["mine"].kind.startswith("MyConv(") and by_label["mine"].params == 36
    # The inlined body counts its own keys only (not the block's shortcut), at its children's
    # depth; the block counts the same params.
    body = by_label["(serial)"]
    assert body.path == "0" and body.depth == by_label["conv1"].depth == 2
    assert body.params == by_label["conv1"].params == by_label["0"].params == 3 * 3 * 2 * 2 + 2
    text = jcnn.summary(net, SHAPE)
    assert "\n    (serial)" in text and "\n    conv1" in text and "\n  custom" in text


# ------------------------------------------------------------------ receptive fields


def test_receptive_fields_follow_the_walk_through_inlined_and_custom_combinators():
    inlined, nested = layer_specs(_net(True), SHAPE), layer_specs(_net(False), SHAPE)
    strip = [s._replace(name="") for s in inlined]
    assert strip == [s._replace(name="") for s in nested]
    walk_paths = {v.path for v in _net().walk(SHAPE)}
    assert [s.name for s in inlined] == ["mine", "0", "custom"]
    assert {s.name for s in inlined} <= walk_paths
    assert [s.kind for s in inlined] == ["MyConv", "residual", "MyResidual"]
    rows = network_receptive_field(_net(), SHAPE)
    assert [r.rf for r in rows] == [(3, 3), (5, 5), (7, 7)]


def test_receptive_field_names_inside_a_repeat_are_walk_paths_with_the_copy():
    net = L.serial(L.repeat(L.serial(L.Conv(2, 3, padding=1)), 2).named("deep"))
    assert [s.name for s in layer_specs(net, (8, 8, 2))] == [
        "deep/blocks/Conv_0[0]",
        "deep/blocks/Conv_0[1]",
    ]


# ------------------------------------------------------------------ porting


def test_torch_leaves_are_the_walks_leaves_with_params():
    net = _net()
    _, params, _ = jcnn.init_shapes(net, SHAPE)
    expected = [
        v.path
        for v in net.walk(SHAPE)
        if not v.layer.children and jax.tree_util.tree_leaves(paths.subtree(params, v.path))
    ]
    leaves = porting.torch_leaves(net, SHAPE)
    assert [leaf.path for leaf in leaves] == expected == [
        "mine", "0/conv1", "custom/block/Conv_0", "fc",
    ]  # fmt: skip
    assert leaves[-1].flattened_from == (7, 7, 2)


def test_porting_round_trip_through_inlined_and_custom_layers():
    net = _net()
    _, params, state = net.init(jax.random.key(0), SHAPE)
    sd = porting.to_torch(net, SHAPE, params, state)
    assert sorted(sd) == sorted([
        "mine.weight", "0.conv1.weight", "0.conv1.bias", "custom.block.Conv_0.weight",
        "custom.block.Conv_0.bias", "fc.weight", "fc.bias",
    ])  # fmt: skip
    # The custom leaf states a window: its kernel is a torch conv weight (out, in, kh, kw).
    np.testing.assert_array_equal(
        sd["mine.weight"], porting.conv_kernel_to_torch(params["mine"]["kernel"])
    )
    back, back_state = porting.from_torch(net, SHAPE, sd)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for (p, a), (_, b) in zip(paths.leaf_paths(back), paths.leaf_paths(params)):
        np.testing.assert_array_equal(a, np.asarray(b), err_msg=p)
    assert back_state == state


def test_names_give_torchs_own_names_and_shapes():
    net = L.serial(L.Conv(3, 1).named("conv"), L.LayerScale(0.5).named("ls"))
    rng = np.random.default_rng(0)
    sd = {
        "conv.weight": rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
        "conv.bias": rng.standard_normal(3).astype(np.float32),
        "block.layer_scale": rng.standard_normal((3, 1, 1)).astype(np.float32),
    }
    names = {"ls/scale": porting.TorchName("block.layer_scale", (-1, 1, 1))}
    params, state = porting.from_torch(net, (4, 4, 2), sd, names=names)
    np.testing.assert_array_equal(params["ls"]["scale"], sd["block.layer_scale"][:, 0, 0])
    back = porting.to_torch(net, (4, 4, 2), params, state, names=names)
    assert sorted(back) == sorted(sd) and back["block.layer_scale"].shape == (3, 1, 1)
    np.testing.assert_array_equal(back["block.layer_scale"], sd["block.layer_scale"])
    # A plain key (same shape) works too; without names= the leaf name gives torch's "weight".
    plain = porting.to_torch(net, (4, 4, 2), params, state, names={"ls/scale": "ls.gamma"})
    assert plain["ls.gamma"].shape == (3,)
    assert "ls.weight" in porting.to_torch(net, (4, 4, 2), params, state)


def test_a_leaf_name_without_a_torch_name_asks_for_names():
    def init(key, shape):
        return shape, {"gain": jnp.ones(shape[-1])}, {}

    def apply(params, state, x, *, key=None, train=False):
        return x * params["gain"], state

    gain = L.custom(init, apply, "Gain", output_shape=lambda s: s, pointwise=True).named("g")
    net = L.serial(gain)
    _, params, state = net.init(jax.random.key(0), (2, 2, 3))
    with pytest.raises(ValueError, match=r"g has the params leaf 'gain'.*names=\{'g/gain'"):
        porting.to_torch(net, (2, 2, 3), params, state)
    sd = porting.to_torch(net, (2, 2, 3), params, state, names={"g/gain": "g.gain"})
    assert list(sd) == ["g.gain"]
    back, _ = porting.from_torch(net, (2, 2, 3), sd, names={"g/gain": "g.gain"})
    np.testing.assert_array_equal(back["g"]["gain"], np.ones(3))


# ------------------------------------------------------------------ per-example check, heads


def test_check_per_example_names_a_batch_norm_inside_an_inlined_block():
    body = L.serial(L.Conv(2, 3, padding=1).named("conv1"), L.BatchNorm().named("bn1"))
    net = L.serial(L.residual(body.inlined(), name="0").named("0"), name="net")
    walk_paths = {v.path for v in net.walk(SHAPE)}
    assert "0/bn1" in walk_paths
    with pytest.raises(ValueError, match=r"^net/0/bn1 \(BatchNorm\) is not per-example"):
        check_per_example(net)
    check_per_example(_net())


def test_head_surgery_keeps_each_serials_wrappers_and_kept_paths_are_walk_paths():
    classifier = remat(L.serial(L.Dense(8), L.Relu(), L.Dense(5), name="classifier"))
    net = L.serial(L.Flatten(), classifier, name="net")
    new = replace_head(net, L.Dense(3), head="classifier/Dense_1")
    assert new.at("classifier").wrappers == classifier.wrappers  # still rematerialised
    assert [k for k, _ in new.at("classifier").children] == ["Dense_0", "Relu_0", "head"]
    kept = [p for p, _ in kept_paths(net, "classifier/Dense_1")]
    assert kept == ["Flatten_0", "classifier/Dense_0", "classifier/Relu_0"]
    assert set(kept) <= {v.path for v in new.walk((2, 2))}
    assert jcnn.output_shape(new, (2, 2)) == (3,)


def test_check_per_example_names_batch_norms_at_their_walk_paths():
    """resnet18's blocks keep their bodies inlined: each BatchNorm is named by its params
    address (the walk's path), as torchvision names it."""
    net = models.resnet18(num_classes=10)
    coupled = [
        v.path for v in net.walk((32, 32, 3)) if v.layer.batch_coupled and not v.layer.children
    ]
    with pytest.raises(ValueError) as e:
        check_per_example(net)
    named = [
        part.split(" ")[0] for part in str(e.value).split(" are not per-example")[0].split(", ")
    ]
    assert named == [f"resnet18/{path}" for path in coupled]
    assert "resnet18/layer1/0/bn1" in named and "resnet18/layer2/0/downsample/1" in named
