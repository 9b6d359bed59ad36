"""The modern zoo: MobileNetV2, EfficientNet-B0, ConvNeXt-Tiny, DenseNet-121.

torchvision's parameter counts, output shapes (integer arithmetic against a traced init), the
structure torchvision fixes (BatchNorm conventions, the stochastic-depth spread), the torchvision
state dicts ``to_torchvision`` writes (the exact keys and shapes torchvision 0.28 has, by
digest), and real forwards at 64x64: eval (jitted) and train (batch statistics, dropout and
stochastic depth with a key). No torch: logits against torchvision were compared outside the
suite (max |difference| / max |torch logit| at most 1.2e-6 for all four).
"""

from __future__ import annotations

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.layers import paths
from jcnn.models import convnext, densenet, efficientnet, mobilenet

IMAGENET = (224, 224, 3)
SMALL = (64, 64, 3)

#: name -> (module, builder, torchvision's parameter count at 1,000 classes, its state_dict's
#: number of keys, sha256 of its sorted "key:shape" lines, the features' shapes at 224 and 64).
ZOO = {
    "mobilenet_v2": (
        mobilenet, mobilenet.mobilenet_v2, 3_504_872, 314,
        "8e46697c9016e57631f74477e7ee4b63a909bd7e783f9ea3a69c85d6cbc23e15",
        (7, 7, 1280), (2, 2, 1280),
    ),
    "efficientnet_b0": (
        efficientnet, efficientnet.efficientnet_b0, 5_288_548, 360,
        "f283c10a15eb79f3cd7d197355cee00e04cc78d0f0bc11ac99c2b230632d4b85",
        (7, 7, 1280), (2, 2, 1280),
    ),
    "convnext_tiny": (
        convnext, convnext.convnext_tiny, 28_589_128, 182,
        "ac823e08e31e87ceefddc4e4f48e94c20472726fea23d81502d70f7dbfbc9ef1",
        (7, 7, 768), (2, 2, 768),
    ),
    "densenet121": (
        densenet, densenet.densenet121, 7_978_856, 727,
        "ab49849b3ca214f51d2edb7c1e8c9e7f5096f904d9b1bb484f4167448a664023",
        (7, 7, 1024), (2, 2, 1024),
    ),
}  # fmt: skip
NAMES = sorted(ZOO)


@functools.cache
def _net(name: str) -> L.Layer:
    return ZOO[name][1]()


@functools.cache
def _shapes(name: str) -> tuple:
    """``init_shapes`` at 64x64 (one trace per model for the whole file)."""
    return jcnn.init_shapes(_net(name), SMALL)


def _leaves(layer):
    if not layer.children:
        yield layer
    for _, child in layer.children:
        yield from _leaves(child)


def _child(layer, *keys):
    for key in keys:
        layer = dict(layer.children)[key]
    return layer


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_shapes(name):
    _, make, count, *_, feat_224, feat_64 = ZOO[name]
    net = _net(name)
    assert jcnn.count_params(net, IMAGENET) == count
    assert jcnn.output_shape(net, IMAGENET) == jcnn.output_shape(net, SMALL) == (1000,)
    features = _child(net, "features")
    assert jcnn.output_shape(features, IMAGENET) == feat_224
    assert jcnn.output_shape(features, SMALL) == feat_64
    # The integer shape arithmetic agrees with a traced init.
    assert _shapes(name)[0] == net.output_shape(SMALL)
    assert jcnn.init_shapes(features, SMALL)[0] == feat_64
    # num_classes changes only the last dense layer: (features + 1) * K parameters.
    assert jcnn.count_params(make(num_classes=10), SMALL) == count - (feat_64[-1] + 1) * 990


@pytest.mark.parametrize(
    ("kwargs", "count"),
    [({"width_mult": 0.5}, 1_968_680), ({"width_mult": 1.4}, 6_108_776)],
)
def test_mobilenet_v2_width_mult_counts(kwargs, count):
    # torchvision's mobilenet_v2(**kwargs): widths make_divisible(c * width_mult, 8), the last
    # conv 1280 * max(1, width_mult).
    assert jcnn.count_params(mobilenet.mobilenet_v2(**kwargs), SMALL) == count


def test_densenet_growth_rate_and_bn_size_count():
    # torchvision's DenseNet(growth_rate=12, bn_size=2, block_config=(6, 12, 24, 16)), whose
    # stem stays 64 wide.
    net = densenet.densenet121(growth_rate=12, bn_size=2)
    assert jcnn.count_params(net, SMALL) == 992_376
    # 64 + 6 * 12 = 136 -> 68, + 12 * 12 = 212 -> 106, + 24 * 12 = 394 -> 197, + 16 * 12 = 389.
    assert jcnn.output_shape(_child(net, "features"), IMAGENET) == (7, 7, 389)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "densenet121"])
def test_batchnorm_conventions_and_bias_free_convs(name):
    net = _net(name)
    norms = [x for x in _leaves(net) if x.kind == "BatchNorm"]
    assert norms and all(
        (n.hparams["eps"], n.hparams["momentum"], n.hparams["unbiased_running_var"])
        == (1e-5, 0.9, True)
        for n in norms
    )  # PyTorch's defaults (EfficientNet only changes them from B5 on)
    convs = [x for x in _leaves(net) if x.kind == "Conv"]
    # Only the squeeze-excitation convs (fc1, fc2) have biases.
    assert [c.hparams["use_bias"] for c in convs].count(True) == (32 if name[0] == "e" else 0)
    custom = ZOO[name][1](batch_norm=lambda **kw: L.BatchNorm(eps=1e-3))
    assert {x.hparams["eps"] for x in _leaves(custom) if x.kind == "BatchNorm"} == {1e-3}


def test_stochastic_depth_spread():
    # torchvision: EfficientNet p * i / 16 over its 16 blocks (only the 9 with a residual use
    # it), ConvNeXt p * i / 17 over its 18 blocks; "row" mode (one draw per example).
    def probs(net):
        depth = [x for x in _leaves(net) if x.kind == "StochasticDepth"]
        assert {x.hparams["mode"] for x in depth} == {"row"}
        return [x.hparams["p"] for x in depth]

    assert probs(_net("efficientnet_b0")) == pytest.approx(
        [0.2 * i / 16 for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    )
    assert probs(efficientnet.efficientnet_b0(stochastic_depth_prob=0.0)) == [0.0] * 9
    assert probs(_net("convnext_tiny")) == pytest.approx([0.1 * i / 17 for i in range(18)])


def test_convnext_norms_and_layer_scale():
    net = _net("convnext_tiny")
    leaves = list(_leaves(net))
    assert {x.hparams["eps"] for x in leaves if x.kind == "LayerNorm"} == {1e-6}
    assert {x.hparams["approximate"] for x in leaves if x.kind == "Gelu"} == {False}
    scales = [x for x in leaves if x.kind == "LayerScale"]
    assert len(scales) == 18 and {x.hparams["init_value"] for x in scales} == {1e-6}
    block = _shapes("convnext_tiny")[1]["features"]["5"]["8"]  # torchvision's features.5.8
    assert block["layer_scale"]["scale"].shape == (384,)
    assert block["block"]["0"]["kernel"].shape == (7, 7, 1, 384)
    scaled = convnext.convnext_tiny(layer_scale=0.5)
    assert {x.hparams["init_value"] for x in _leaves(scaled) if x.kind == "LayerScale"} == {0.5}


def _zeros(tree):
    """Zero arrays of the given shapes that allocate nothing (broadcast views)."""
    return jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape), tree)


@pytest.mark.parametrize("name", NAMES)
def test_to_torchvision_gives_torchvisions_state_dict(name):
    n_keys, digest = ZOO[name][3], ZOO[name][4]
    _, params, state = _shapes(name)
    sd = models.to_torchvision(name, _zeros(params), _zeros(state))
    spec = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(sd.items()))
    assert len(sd) == n_keys
    assert hashlib.sha256(spec.encode()).hexdigest() == digest, spec[:2000]


def test_torchvision_keys_by_the_rule():
    _, params, state = _shapes("convnext_tiny")
    sd = models.to_torchvision("convnext_tiny", _zeros(params), _zeros(state))
    assert sd["features.3.1.layer_scale"].shape == (192, 1, 1)  # the exception: on the block
    assert sd["features.4.0.weight"].shape == (192,)  # downsample's LayerNorm
    assert sd["classifier.2.weight"].shape == (1000, 768)
    _, params, state = _shapes("efficientnet_b0")
    sd = models.to_torchvision("efficientnet_b0", _zeros(params), _zeros(state))
    assert sd["features.6.3.block.3.1.running_var"].shape == (192,)
    assert sd["features.1.0.block.2.0.weight"].shape == (16, 32, 1, 1)
    _, params, state = _shapes("mobilenet_v2")
    sd = models.to_torchvision("mobilenet_v2", _zeros(params), _zeros(state))
    assert sd["features.17.conv.3.weight"].shape == (320,)
    assert sd["features.18.1.bias"].shape == (1280,)


# ---------------------------------------------------------------------------------------------
# Real forwards at 64x64, batch 2
# ---------------------------------------------------------------------------------------------


def _random_init(name, seed=0):
    """Params and state from NumPy, shaped by the traced init: kernels ~ N(0, 1/fan_in), scales
    ~ U(0.5, 1.5), other params ~ 0.1 N(0, 1); running means ~ U(-0.5, 0.5), vars ~ U(0.5, 1.5)."""
    _, params, state = _shapes(name)
    rng = np.random.default_rng(seed)

    def param(path, s):
        leaf = path[-1].key
        if leaf == "kernel":
            value = rng.standard_normal(s.shape, np.float32) / np.sqrt(np.prod(s.shape[:-1]))
        elif leaf == "scale":
            value = rng.uniform(0.5, 1.5, s.shape)
        else:
            value = 0.1 * rng.standard_normal(s.shape, np.float32)
        return jnp.asarray(value, s.dtype)

    def stat(path, s):
        low = -0.5 if path[-1].key == "mean" else 0.5
        return jnp.asarray(rng.uniform(low, low + 1.0, s.shape), s.dtype)

    return (
        jax.tree_util.tree_map_with_path(param, params),
        jax.tree_util.tree_map_with_path(stat, state),
    )


X = jnp.asarray(np.random.default_rng(1).standard_normal((2, *SMALL)), jnp.float32)


@pytest.mark.parametrize("name", NAMES)
def test_eval_forward(name):
    net = _net(name)
    params, state = _random_init(name)
    logits, new_state = jax.jit(jcnn.batched(net.apply))(params, state, X)
    logits = np.asarray(logits)
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()
    assert np.abs(logits).max() > 1e-2 and not np.allclose(logits[0], logits[1])
    same = jax.tree.map(lambda a, b: bool((a == b).all()), state, new_state)
    assert all(jax.tree.leaves(same))  # eval leaves the running statistics alone


#: Randomness in train mode: dropout before the classifier (MobileNetV2, EfficientNet) and
#: stochastic depth (EfficientNet, ConvNeXt); DenseNet-121 has none (drop_rate 0).
RANDOM_IN_TRAIN = {"mobilenet_v2": True, "efficientnet_b0": True, "convnext_tiny": True}


@pytest.mark.parametrize("name", NAMES)
def test_train_forward_with_key(name):
    net = _net(name)
    params, state = _random_init(name)
    # An "unsafe_rbg" key: each threefry key split or draw costs XLA:CPU about 0.1 s of compile,
    # and the combinators split a key per child, so ConvNeXt's 18 stochastic depths compile in
    # ~19 s with the default threefry keys against ~3 s with these (the layers take any key).
    keys = jax.random.split(jax.random.key(0, impl="unsafe_rbg"), 2)
    run = jax.jit(lambda p, s, x, k: jcnn.batched(net.apply)(p, s, x, key=k, train=True))
    logits, new_state = run(params, state, X, keys[0])
    logits = np.asarray(logits)
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    other = np.asarray(run(params, state, X, keys[1])[0])
    assert (not np.allclose(logits, other)) == RANDOM_IN_TRAIN.get(name, False)
    if name == "convnext_tiny":
        assert not jax.tree.leaves(new_state)  # LayerNorm only: no state
        return
    # BatchNorm took batch statistics: the stem's running mean moved to 0.9 * old + 0.1 * the
    # batch mean (a move of 0.1 * (batch - old), batch means of a conv of N(0, 1) inputs).
    stem = "0/1" if name != "densenet121" else "norm0"  # the stem's BatchNorm
    old = paths.subtree(state["features"], stem)
    new = paths.subtree(new_state["features"], stem)
    moved = np.abs(np.asarray(new["mean"]) - np.asarray(old["mean"]))
    assert np.isfinite(moved).all() and moved.max() > 1e-3
