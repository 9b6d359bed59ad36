"""Layer.walk: every layer once, depth first, at the address of its params, with its shapes."""

from __future__ import annotations

import jax
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers import paths


def _block(name: str) -> L.Layer:
    """A torchvision-style block: the body's children keyed in the block (an inlined serial)."""
    body = L.serial(
        L.Conv(4, 3, padding=1).named("conv1"), L.BatchNorm().named("bn1"), L.Relu().named("relu")
    )
    return L.residual(body.inlined(), name=name).named(name)


def _net() -> L.Layer:
    return L.serial(
        L.Conv(4, 3).named("stem"),
        L.serial(_block("0"), _block("1"), name="layer1"),
        L.repeat(L.residual(L.serial(L.Conv(4, 3, padding=1))), 2).named("deep"),
        L.concat(L.Conv(2, 1), L.MaxPool(3, stride=1, padding=1)).named("mix"),
        L.GlobalAvgPool(),
        L.Dense(3).named("fc"),
        name="net",
    )


SHAPE = (10, 10, 2)


def test_paths_are_depth_first_and_inlined_children_share_their_parents():
    visits = list(_net().walk(SHAPE))
    assert [(v.path, v.layer.kind) for v in visits][:9] == [
        ("", "serial"),
        ("stem", "Conv"),
        ("layer1", "serial"),
        ("layer1/0", "residual"),
        ("layer1/0", "serial"),  # the inlined body: its children sit in the block's dict
        ("layer1/0/conv1", "Conv"),
        ("layer1/0/bn1", "BatchNorm"),
        ("layer1/0/relu", "Relu"),
        ("layer1/0/shortcut", "Identity"),
    ]
    assert [v.path for v in visits if v.path.startswith("deep")] == [
        "deep", "deep/blocks", "deep/blocks/block", "deep/blocks/block/Conv_0",
        "deep/blocks/shortcut",
    ]  # fmt: skip
    assert jcnn.walk(_net(), SHAPE).__next__().path == ""


def test_every_path_addresses_the_params_and_state_of_its_layer():
    net = _net()
    _, params, state = jcnn.init_shapes(net, SHAPE)
    for visit in net.walk(SHAPE):
        sub = paths.subtree(params, visit.path)
        if not visit.layer.children:
            assert set(sub) <= {"kernel", "bias", "scale", "offset"}, visit.path
            assert set(paths.subtree(state, visit.path)) <= {"mean", "var"}
        elif visit.layer.inline:
            assert set(visit.layer.tree_keys) <= set(sub)
        else:
            assert set(sub) == set(visit.layer.tree_keys), visit.path
        if visit.path and not visit.layer.inline:
            assert net.at(visit.path) == visit.layer


def test_shapes_are_those_of_the_dataflow():
    net = _net()
    visits = {v.path: v for v in net.walk(SHAPE) if not v.layer.inline}
    assert visits[""].in_shape == SHAPE and visits[""].out_shape == net.output_shape(SHAPE)
    assert visits["stem"].out_shape == (8, 8, 4) == visits["layer1"].in_shape
    assert visits["mix/Conv_0"].in_shape == visits["mix/MaxPool_0"].in_shape == (8, 8, 4)
    assert visits["mix"].out_shape == (8, 8, 6)
    assert visits["fc"].in_shape == (6,) and visits["fc"].out_shape == (3,)
    for visit in net.walk(SHAPE):
        assert visit.layer.output_shape(visit.in_shape) == visit.out_shape


def test_parallel_children_get_their_own_inputs():
    net = L.parallel(L.Dense(3), L.Flatten())
    visits = list(net.walk(((4,), (2, 3))))
    assert [(v.path, v.in_shape, v.out_shape) for v in visits] == [
        ("", ((4,), (2, 3)), ((3,), (6,))),
        ("Dense_0", (4,), (3,)),
        ("Flatten_0", (2, 3), (6,)),
    ]


def test_replace_at_by_a_walk_path_keeps_every_other_key():
    net = _net()
    new = net.replace_at("layer1/1/conv1", L.Conv(4, 5, padding=2))
    assert new.at("layer1/1/conv1").window.kernel_size == (5, 5)
    before = [v.path for v in net.walk(SHAPE)]
    assert [v.path for v in new.walk(SHAPE)] == before
    with pytest.raises(KeyError, match="no child 'conv9'"):
        net.at("layer1/0/conv9")


def test_walk_takes_the_shape_of_one_example():
    with pytest.raises(TypeError, match="SHAPE of one example"):
        list(_net().walk(jax.numpy.zeros(SHAPE)))


def test_shape_free_walk_gives_the_same_paths_and_layers():
    import jcnn

    net = jcnn.models.resnet18()
    with_shapes = list(net.walk((64, 64, 3)))
    bare = list(net.walk(None))
    assert [(v.path, v.layer) for v in bare] == [(v.path, v.layer) for v in with_shapes]
    assert all(v.in_shape is None and v.out_shape is None for v in bare)
