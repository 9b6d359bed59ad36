"""``from_torchvision`` / ``to_torchvision`` against torchvision's own logits.

The fixture (``tests/fixtures/make_torchvision_fixtures.py``, torch 2.13 / torchvision 0.28)
holds each model's state-dict keys and shapes, a seed and torchvision's eval logits on one
``(2, 3, 64, 64)`` input; the weights are regenerated here from the seed
(``tests/torchvision_weights.py``), so no weight file is committed and torch is not needed.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from torchvision_weights import fixture_state_dict

import jcnn
from jcnn import layers as L
from jcnn import models, porting
from jcnn.interop import torchvision as bridge
from jcnn.layers import paths

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "torchvision_models.npz"

#: torchvision's parameter counts, as the issue states them (the fixture's are checked equal too).
COUNTS = {
    "alexnet": 61_100_840,
    "convnext_tiny": 28_589_128,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "efficientnet_b0": 5_288_548,
    "googlenet": 6_624_904,
    "mobilenet_v2": 3_504_872,
    "mnasnet1_0": 4_383_312,
    "regnet_y_400mf": 4_344_144,
    "inception_v3": 23_834_568,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "squeezenet1_1": 1_235_496,
    "shufflenet_v2_x1_0": 2_278_604,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "wide_resnet50_2": 68_883_240,
}


@functools.cache
def fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def torch_keys(name: str) -> tuple[list[str], list[tuple[int, ...]]]:
    f = fixture()
    keys = [str(k) for k in f[f"{name}/keys"]]
    shapes = [tuple(int(n) for n in row if n >= 0) for row in f[f"{name}/shapes"]]
    return keys, shapes


def torch_state_dict(name: str) -> dict[str, np.ndarray]:
    return fixture_state_dict(fixture(), name)


def eval_logits(net, params, state, x_nchw: np.ndarray) -> np.ndarray:
    """Channels-last eval forward of a batch; params are arguments, not baked-in constants."""

    @jax.jit
    def run(params, state, x):
        return jax.vmap(lambda xi: net.apply(params, state, xi)[0])(x)

    return np.asarray(run(params, state, jnp.asarray(porting.nchw_to_nhwc(x_nchw))))


def test_supported_names_are_the_fixture_names() -> None:
    assert set(models.SUPPORTED) == set(COUNTS)
    for name in COUNTS:
        assert f"{name}/logits" in fixture(), name


#: Variants whose every layer kind a cheaper sibling already checks (vgg11 / vgg19 with and
#: without BatchNorm stay in the default run): run with ``pytest -m slow``.
SLOW = {"vgg13", "vgg13_bn", "vgg16", "vgg16_bn"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(COUNTS)]
)
def test_logits_counts_and_round_trip(name: str) -> None:
    sd = torch_state_dict(name)
    net, params, state = models.from_torchvision(name, sd)
    assert (
        jcnn.count_params(net, (80, 80, 3)) == COUNTS[name] == int(fixture()[f"{name}/num_params"])
    )
    want = fixture()[f"{name}/logits"]
    # Inception v3 needs 75x75 inputs: its own (2, 3, 80, 80) one.
    x = fixture().get(f"{name}/x", fixture()["x"])
    got = eval_logits(net, params, state, x)
    assert got.shape == want.shape == (2, 1000)
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < 1e-4, (name, rel)
    # The exact inverse: the same keys, shapes and values torchvision's load_state_dict(strict)
    # would see (num_batches_tracked written as 0).
    back = models.to_torchvision(name, params, state)
    keys, shapes = torch_keys(name)
    assert sorted(back) == sorted(keys)
    for key, shape in zip(keys, shapes):
        assert back[key].shape == shape, key
        np.testing.assert_array_equal(back[key], sd[key], err_msg=key)
        # C-contiguous: writers that copy raw memory (safetensors) would scramble a view.
        assert back[key].flags["C_CONTIGUOUS"], key


def test_resnet18_train_forward_updates_running_stats_as_torch() -> None:
    sd = torch_state_dict("resnet18")
    net, params, state = models.from_torchvision("resnet18", sd)
    x = jnp.asarray(porting.nchw_to_nhwc(fixture()["x"]))
    apply = jcnn.batched(net.apply)
    logits, new_state = jax.jit(lambda p, s, x: apply(p, s, x, train=True))(params, state, x)
    f = fixture()
    want = f["resnet18/train/logits"]
    assert np.abs(np.asarray(logits) - want).max() / np.abs(want).max() < 1e-4
    after = models.to_torchvision("resnet18", params, new_state)
    stats = [k for k in f if k.startswith("resnet18/train/") and k != "resnet18/train/logits"]
    assert len(stats) == 2 * 20  # every BatchNorm's running mean and variance
    for entry in stats:
        key = entry.removeprefix("resnet18/train/")
        np.testing.assert_allclose(after[key], f[entry], rtol=2e-5, atol=2e-6, err_msg=key)
        assert not np.allclose(after[key], sd[key])  # the statistics moved


def test_a_retrained_head_gives_its_width() -> None:
    sd = torch_state_dict("resnet18")
    rng = np.random.default_rng(3)
    sd["fc.weight"] = rng.standard_normal((10, 512)).astype(np.float32)
    sd["fc.bias"] = rng.standard_normal(10).astype(np.float32)
    net, params, state = models.from_torchvision("resnet18", sd)
    assert jcnn.output_shape(net, (64, 64, 3)) == (10,)
    back = models.to_torchvision("resnet18", params, state)
    np.testing.assert_array_equal(back["fc.weight"], sd["fc.weight"])


def test_missing_num_batches_tracked_is_accepted() -> None:
    sd = {k: v for k, v in torch_state_dict("resnet18").items() if "num_batches" not in k}
    models.from_torchvision("resnet18", sd)


def test_errors_name_the_key_and_the_jcnn_path() -> None:
    sd = torch_state_dict("resnet18")
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
        models.from_torchvision("resnet19", sd)
    missing = dict(sd)
    del missing["layer2.0.downsample.0.weight"]
    with pytest.raises(
        ValueError,
        match=r"lacks 1 key.*'layer2\.0\.downsample\.0\.weight' \(for jcnn "
        r"layer2/0/downsample/0, shape \(128, 64, 1, 1\)\)",
    ):
        models.from_torchvision("resnet18", missing)
    extra = {**sd, "layer5.0.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)}
    with pytest.raises(ValueError, match=r"1 key\(s\) with no place.*layer5\.0\.conv1\.weight"):
        models.from_torchvision("resnet18", extra)
    bad = {**sd, "layer1.0.conv2.weight": np.zeros((64, 64, 1, 3), np.float32)}
    with pytest.raises(
        ValueError,
        match=r"'layer1\.0\.conv2\.weight' has shape \(64, 64, 1, 3\), but jcnn "
        r"layer1/0/conv2 needs torch shape \(64, 64, 3, 3\)",
    ):
        models.from_torchvision("resnet18", bad)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        models.from_torchvision("resnet18", list(sd.items()))


def test_googlenet_aux_heads_get_a_hint() -> None:
    sd = {**torch_state_dict("googlenet"), "aux1.conv.conv.weight": np.zeros((128, 512, 1, 1))}
    with pytest.raises(ValueError, match="no auxiliary heads"):
        models.from_torchvision("googlenet", sd)
    sd = {**torch_state_dict("inception_v3"), "AuxLogits.fc.weight": np.zeros((1000, 768))}
    with pytest.raises(ValueError, match="inception_v3 has no auxiliary heads.*AuxLogits"):
        models.from_torchvision("inception_v3", sd)


#: The jcnn leaf name's torch name: the rule's half that is not the path.
TORCH_LEAF_NAMES = {
    "kernel": "weight", "bias": "bias", "scale": "weight", "offset": "bias",
    "mean": "running_mean", "var": "running_var",
}  # fmt: skip


def _by_the_rule(path: str) -> str:
    """``layer1/0/conv1/kernel`` -> ``layer1.0.conv1.weight``."""
    module, _, leaf = path.rpartition("/")
    return f"{module.replace('/', '.')}.{TORCH_LEAF_NAMES[leaf]}"


def test_resnet18_params_have_torchvisions_names() -> None:
    _, params, state = jcnn.init_shapes(models.resnet18(), (64, 64, 3))
    assert params["layer1"]["0"]["conv1"]["kernel"].shape == (3, 3, 64, 64)
    assert paths.subtree(state, "layer2/0/downsample/1/var").shape == (128,)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_torchvision_keys_are_jcnn_paths_by_the_rule(name: str) -> None:
    """Every torchvision key is a jcnn path with "/" as "." and the leaf's torch name, except
    the listed ones: BatchNorm's step counter (torch only) and ConvNeXt's layer scale (a
    parameter of the block module: ``features.1.0.layer_scale``, not ``...layer_scale.weight``)."""
    _, params, state = jcnn.init_shapes(getattr(models, name)(), (80, 80, 3))
    ours = {_by_the_rule(p) for tree in (params, state) for p, _ in paths.leaf_paths(tree)}
    torch = set(torch_keys(name)[0])
    step_counters = {k for k in torch if k.endswith(".num_batches_tracked")}
    layer_scales = {k for k in torch if k.endswith(".layer_scale")}
    assert len(layer_scales) == (18 if name == "convnext_tiny" else 0)
    assert ours == (torch - step_counters - layer_scales) | {f"{k}.weight" for k in layer_scales}
    # The exceptions table says the same.
    assert bridge.EXCEPTIONS == {"layer_scale": {"scale": ("layer_scale", (-1, 1, 1))}}
    assert bridge.TORCH_ONLY == ("num_batches_tracked",)


def test_the_bridge_builds_with_torch_batch_norm_conventions() -> None:
    net, _, _ = models.from_torchvision("resnet18", torch_state_dict("resnet18"))
    norms = [leaf.layer for leaf in porting.torch_leaves(net, (64, 64, 3))]
    norms = [layer for layer in norms if layer.kind == "BatchNorm"]
    assert norms and all(
        layer.hparams["unbiased_running_var"] and layer.hparams["momentum"] == pytest.approx(0.9)
        for layer in norms
    )


def test_layer_scale_ports_as_a_block_parameter() -> None:
    sd = torch_state_dict("convnext_tiny")
    _, params, state = models.from_torchvision("convnext_tiny", sd)
    scale = params["features"]["3"]["1"]["layer_scale"]["scale"]
    np.testing.assert_array_equal(scale, sd["features.3.1.layer_scale"][:, 0, 0])
    back = models.to_torchvision("convnext_tiny", params, state)
    assert back["features.3.1.layer_scale"].shape == (192, 1, 1)
    assert bridge.torch_key("features/3/1/layer_scale", "scale") == ("features.3.1.layer_scale")


# ------------------------------------------------------------------ safetensors


def test_safetensors_round_trip_of_jcnn_trees(tmp_path) -> None:
    net = models.resnet18(num_classes=10)
    _, params, state = net.init(jax.random.key(0), (32, 32, 3))
    state = jax.tree_util.tree_map(lambda v: v + 0.25, state)
    path = tmp_path / "resnet18.safetensors"
    porting.save_safetensors(path, params, state)
    assert [p.name for p in tmp_path.iterdir()] == ["resnet18.safetensors"]  # no temp file left
    p2, s2 = porting.load_safetensors(path, net, (32, 32, 3))
    assert jax.tree_util.tree_structure(p2) == jax.tree_util.tree_structure(params)
    for a, b in zip(
        jax.tree_util.tree_leaves((params, state)), jax.tree_util.tree_leaves((p2, s2))
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        assert "params/fc/kernel" in f.keys() and f.metadata()["format"] == "jcnn"


def test_safetensors_load_checks_the_net(tmp_path) -> None:
    net = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(2))
    _, params, state = net.init(jax.random.key(0), (6, 6, 1))
    path = tmp_path / "small.safetensors"
    porting.save_safetensors(path, params, state)
    with pytest.raises(ValueError, match=r"params/Dense_0/kernel is float32\[64, 2\].*\[144, 2\]"):
        porting.load_safetensors(path, net, (8, 8, 1))
    other = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(2), L.Dense(3))
    with pytest.raises(
        ValueError, match=r"missing \['params/Dense_1/bias', 'params/Dense_1/kernel'\]"
    ):
        porting.load_safetensors(path, other, (6, 6, 1))
    with pytest.raises(ValueError, match="not an array"):
        porting.save_safetensors(tmp_path / "x.safetensors", {"a": {"b": 1.0}}, {})


def test_to_torchvision_written_with_safetensors_reads_back_bit_for_bit(tmp_path) -> None:
    # The docs' recipe: safetensors.numpy.save_file(to_torchvision(...)). It copies raw memory,
    # so a transposed (non-contiguous) kernel would come back scrambled with the right shape.
    from safetensors.numpy import load_file, save_file

    _, params, state = models.resnet18().init(jax.random.key(1), (64, 64, 3))
    path = tmp_path / "resnet18.safetensors"
    save_file(models.to_torchvision("resnet18", params, state), str(path))
    _, p2, s2 = models.from_torchvision("resnet18", load_file(str(path)))
    for a, b in zip(
        jax.tree_util.tree_leaves((params, state)), jax.tree_util.tree_leaves((p2, s2))
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_torchvision_layout_safetensors_file_goes_through_from_torchvision(tmp_path) -> None:
    from safetensors.numpy import load_file, save_file

    sd = torch_state_dict("mobilenet_v2")
    path = tmp_path / "mobilenet_v2.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="from_torchvision"):
        porting.load_safetensors(path, models.resnet18(), (64, 64, 3))
    net, params, state = models.from_torchvision("mobilenet_v2", load_file(str(path)))
    want = fixture()["mobilenet_v2/logits"]
    got = eval_logits(net, params, state, fixture()["x"])
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
