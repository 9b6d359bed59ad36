"""jcnn.layers.paths: the one way a part of a network and of its params is addressed."""

from __future__ import annotations

import jax
import pytest

from jcnn import layers as L
from jcnn.layers import paths

TREE = {"layer1": {"0": {"conv1": {"kernel": 1, "bias": 2}, "relu": {}}}, "fc": {"kernel": 3}}


def test_join_skips_the_root_and_split_inverts_it():
    assert paths.join("", "layer1", "0/conv1") == "layer1/0/conv1"
    assert paths.join() == "" and paths.join("", "") == ""
    assert paths.split("layer1/0/conv1") == ("layer1", "0", "conv1")
    assert paths.split("") == ()
    for path in ("", "fc", "layer1/0/conv1"):
        assert paths.join(*paths.split(path)) == path


def test_key_path_and_leaf_paths_write_dict_and_sequence_keys():
    tree = {"a": {"b": 1}, "c": [10, 20]}
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    assert [paths.key_path(p) for p, _ in flat] == ["a/b", "c/0", "c/1"]
    assert list(paths.leaf_paths(tree)) == [("a/b", 1), ("c/0", 10), ("c/1", 20)]
    assert list(paths.leaf_paths(TREE)) == [
        ("fc/kernel", 3),
        ("layer1/0/conv1/bias", 2),
        ("layer1/0/conv1/kernel", 1),
    ]


def test_subtree_gets_every_level():
    assert paths.subtree(TREE, "") is TREE
    assert paths.subtree(TREE, "layer1/0/conv1") == {"kernel": 1, "bias": 2}
    assert paths.subtree(TREE, "layer1/0/conv1/kernel") == 1
    assert paths.subtree(TREE, "layer1/0/relu") == {}


def test_subtree_errors_name_the_level_and_its_keys():
    with pytest.raises(KeyError, match=r"no 'conv9' under layer1/0; there: \['conv1', 'relu'\]"):
        paths.subtree(TREE, "layer1/0/conv9")
    with pytest.raises(KeyError, match=r"no 'nope' under <root>; there: \['fc', 'layer1'\]"):
        paths.subtree(TREE, "nope")
    with pytest.raises(KeyError, match="no 'x' under fc/kernel; there: int"):
        paths.subtree(TREE, "fc/kernel/x")


def test_with_subtree_copies_the_path_only():
    new = paths.with_subtree(TREE, "layer1/0/conv1/kernel", 9)
    assert new["layer1"]["0"]["conv1"] == {"kernel": 9, "bias": 2}
    assert TREE["layer1"]["0"]["conv1"]["kernel"] == 1  # the original is unchanged
    assert new["fc"] is TREE["fc"]  # off the path: shared, not copied
    assert new["layer1"]["0"]["relu"] is TREE["layer1"]["0"]["relu"]
    added = paths.with_subtree(TREE, "layer1/0/head", {"kernel": 4})
    assert sorted(added["layer1"]["0"]) == ["conv1", "head", "relu"]
    assert paths.with_subtree(TREE, "", {"x": 1}) == {"x": 1}


def test_with_subtree_errors():
    with pytest.raises(KeyError, match="no 'nope' under layer1"):
        paths.with_subtree(TREE, "layer1/nope/conv1", 1)
    with pytest.raises(KeyError, match="fc/kernel is a leaf"):
        paths.with_subtree(TREE, "fc/kernel/x", 1)


def test_a_layers_walk_path_is_its_params_address():
    body = L.serial(L.Conv(4, 3, padding=1).named("conv1"), L.Relu().named("relu"))
    net = L.serial(L.residual(body.inlined(), name="0").named("0"), L.Flatten(), L.Dense(2))
    _, params, _ = net.init(jax.random.key(0), (6, 6, 4))
    conv = paths.subtree(params, "0/conv1")
    assert conv["kernel"].shape == (3, 3, 4, 4)
    new = paths.with_subtree(params, "0/conv1/bias", conv["bias"] + 1)
    assert float(new["0"]["conv1"]["bias"][0]) == float(conv["bias"][0]) + 1
    assert [p for p, _ in paths.leaf_paths(params)] == [
        "0/conv1/bias", "0/conv1/kernel", "Dense_0/bias", "Dense_0/kernel",
    ]  # fmt: skip
