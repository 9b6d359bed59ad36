"""Model zoo: torchvision's parameter counts and output shapes (eval_shape, nothing allocated),
the structure torchvision fixes (dropout places, bias-free convs before BatchNorm, the v1.5
stride, ceil-mode pools), blocks against NumPy loops, and real forwards of two small ones."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import np_conv, np_pool

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.layers import paths
from jcnn.models.googlenet import CEIL_MODE_PADDING
from jcnn.models.vgg import vgg_features

IMAGENET = (224, 224, 3)

# torchvision's sum(p.numel() for p in model.parameters()), 1,000 classes (aux heads off).
TORCHVISION_COUNTS = {
    "alexnet": (models.alexnet, IMAGENET, 61_100_840),
    "vgg11": (models.vgg11, IMAGENET, 132_863_336),
    "vgg13": (models.vgg13, IMAGENET, 133_047_848),
    "vgg16": (models.vgg16, IMAGENET, 138_357_544),
    "vgg19": (models.vgg19, IMAGENET, 143_667_240),
    "vgg11_bn": (models.vgg11_bn, IMAGENET, 132_868_840),
    "vgg13_bn": (models.vgg13_bn, IMAGENET, 133_053_736),
    "vgg16_bn": (models.vgg16_bn, IMAGENET, 138_365_992),
    "vgg19_bn": (models.vgg19_bn, IMAGENET, 143_678_248),
    "resnet18": (models.resnet18, IMAGENET, 11_689_512),
    "resnet34": (models.resnet34, IMAGENET, 21_797_672),
    "resnet50": (models.resnet50, IMAGENET, 25_557_032),
    "resnet101": (models.resnet101, IMAGENET, 44_549_160),
    "resnet152": (models.resnet152, IMAGENET, 60_192_808),
    "googlenet": (models.googlenet, IMAGENET, 6_624_904),
    # kuangliu/pytorch-cifar ResNet18(), 10 classes.
    "cifar_resnet18": (models.cifar_resnet18, (32, 32, 3), 11_173_962),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_count_and_output_shape(name):
    make, shape, count = TORCHVISION_COUNTS[name]
    net = make()
    assert jcnn.count_params(net, shape) == count
    assert jcnn.output_shape(net, shape) == ((10,) if name.startswith("cifar") else (1000,))


#: Parameter paths of torchvision's module tree (its state-dict keys with "/" for "." and the
#: jcnn leaf name): nn.Sequential children by position, parameter-free modules counted.
TORCHVISION_PATHS = {
    "resnet18": ["conv1/kernel", "bn1/scale", "layer1/0/conv1/kernel", "layer1/0/bn2/offset",
                 "layer2/0/downsample/0/kernel", "layer4/1/conv2/kernel", "fc/kernel"],
    "resnet50": ["layer1/0/conv3/kernel", "layer1/0/bn3/scale", "layer3/5/conv2/kernel",
                 "layer2/0/downsample/1/scale"],
    "cifar_resnet18": ["conv1/kernel", "layer2/0/downsample/1/offset", "fc/bias"],
    "vgg11": ["features/0/kernel", "features/3/kernel", "classifier/0/kernel",
              "classifier/3/kernel", "classifier/6/kernel"],
    "vgg11_bn": ["features/0/kernel", "features/1/scale", "features/4/kernel"],
    "alexnet": ["features/0/kernel", "features/3/kernel", "features/10/kernel",
                "classifier/1/kernel", "classifier/4/kernel", "classifier/6/bias"],
    "googlenet": ["conv1/conv/kernel", "conv3/bn/scale", "inception3a/branch1/conv/kernel",
                  "inception3a/branch2/1/conv/kernel", "inception5b/branch4/1/bn/offset",
                  "fc/kernel"],
    "mobilenet_v2": ["features/0/0/kernel", "features/1/conv/0/0/kernel",
                     "features/1/conv/1/kernel", "features/2/conv/3/scale",
                     "features/18/1/scale", "classifier/1/kernel"],
    "efficientnet_b0": ["features/0/1/scale", "features/1/0/block/0/0/kernel",
                        "features/1/0/block/1/fc1/kernel", "features/2/1/block/3/1/offset",
                        "features/8/0/kernel", "classifier/1/kernel"],
    "convnext_tiny": ["features/0/0/kernel", "features/0/1/scale", "features/1/0/block/0/kernel",
                      "features/1/0/block/2/scale", "features/1/0/block/5/kernel",
                      "features/1/0/layer_scale/scale", "features/2/1/kernel",
                      "classifier/0/scale", "classifier/2/kernel"],
    "densenet121": ["features/conv0/kernel", "features/denseblock1/denselayer1/norm1/scale",
                    "features/denseblock4/denselayer16/conv2/kernel",
                    "features/transition1/conv/kernel", "features/norm5/offset",
                    "classifier/kernel"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TORCHVISION_PATHS))
def test_params_are_named_as_torchvision_modules(name):
    shape = (32, 32, 3) if name == "cifar_resnet18" else (64, 64, 3)
    _, params, _ = jcnn.init_shapes(getattr(models, name)(), shape)
    have = {p for p, _ in paths.leaf_paths(params)}
    assert set(TORCHVISION_PATHS[name]) <= have, sorted(set(TORCHVISION_PATHS[name]) - have)
    # No counters (``Conv_0``): every key with params is torchvision's module name.
    assert not [p for p in have if re.search(r"_\d+(/|$)", p)]


def _child(net, *keys):
    for key in keys:
        net = dict(net.children)[key]
    return net


def _leaves(layer):
    if not layer.children:
        yield layer
    for _, child in layer.children:
        yield from _leaves(child)


def test_num_classes_changes_only_the_last_dense():
    # ResNet-18: fc 512 -> K has 513 * K parameters.
    assert jcnn.count_params(models.resnet18(num_classes=7), IMAGENET) == 11_689_512 - 513 * 993
    # VGG / AlexNet: last dense 4096 -> K has 4097 * K.
    assert jcnn.count_params(models.vgg16(num_classes=10), IMAGENET) == 138_357_544 - 4097 * 990
    assert jcnn.output_shape(models.alexnet(num_classes=5), IMAGENET) == (5,)
    assert jcnn.output_shape(models.googlenet(num_classes=3), IMAGENET) == (3,)


def test_vgg19_flatten_width_and_classifier():
    net = models.vgg19()
    head = L.serial(*[c.named(k) for k, c in net.children[:3]])  # features, avgpool, flatten
    assert jcnn.output_shape(head, IMAGENET) == (25_088,)  # 7 * 7 * 512
    classifier = _child(net, "classifier")
    assert [c.kind for _, c in classifier.children] == [
        "Dense", "Relu", "Dropout", "Dense", "Relu", "Dropout", "Dense",
    ]  # fmt: skip
    assert [c.hparams["out_features"] for _, c in classifier.children if c.kind == "Dense"] == [
        4096,
        4096,
        1000,
    ]
    # 25088*4096 + 4096 + 4096*4096 + 4096 + 4096*1000 + 1000
    assert jcnn.count_params(classifier, (25_088,)) == 123_642_856
    convs = [x for x in _leaves(_child(net, "features")) if x.kind == "Conv"]
    assert len(convs) == 16 and all(c.hparams["kernel_size"] == (3, 3) for c in convs)


def test_alexnet_structure():
    net = models.alexnet()
    assert [k for k, _ in net.children] == ["features", "avgpool", "flatten", "classifier"]
    assert [c.kind for _, c in _child(net, "classifier").children] == [
        "Dropout", "Dense", "Relu", "Dropout", "Dense", "Relu", "Dense",
    ]  # fmt: skip
    features = L.serial(*[c.named(k) for k, c in net.children[:2]])
    assert jcnn.output_shape(features, IMAGENET) == (6, 6, 256)


@pytest.mark.parametrize(
    ("make", "pooled", "count"),
    [
        (models.vgg11, (7, 7, 512), 132_863_336),
        (models.vgg16_bn, (7, 7, 512), 138_365_992),
        (models.alexnet, (6, 6, 256), 61_100_840),
    ],
)
@pytest.mark.parametrize("shape", [(64, 64, 3), (96, 80, 3), (256, 256, 3), (448, 448, 3)])
def test_adaptive_avgpool_takes_any_input_size(make, pooled, count, shape):
    # torchvision's AdaptiveAvgPool2d: any feature size -> the same classifier and count
    # (64x64: VGG features 2x2 and AlexNet's 1x1, pooled up; 256: 8x8 / 7x7, unequal windows).
    net = make()
    avgpool = _child(net, "avgpool")
    assert avgpool.kind == "AdaptiveAvgPool" and avgpool.hparams["output_size"] == pooled[:2]
    head = L.serial(*[c.named(k) for k, c in net.children[:2]])  # features, avgpool
    assert jcnn.output_shape(head, shape) == pooled
    assert jcnn.output_shape(net, shape) == (1000,)
    assert jcnn.count_params(net, shape) == count


def test_zoo_params_tree_keeps_its_names():
    for make in (models.alexnet, models.vgg11):
        _, params, _ = jcnn.init_shapes(make(), IMAGENET)
        assert sorted(params) == ["avgpool", "classifier", "features", "flatten"]
        assert params["avgpool"] == {} and params["flatten"] == {}


def test_too_small_inputs_name_the_failing_layer():
    # The path is torchvision's: features[20] is VGG-11's fifth 2x2 pool, which gets 1x1.
    with pytest.raises(ValueError, match=r"^vgg11/features/20: input shape \(1, 1, 512\)"):
        jcnn.output_shape(models.vgg11(), (31, 31, 3))
    with pytest.raises(ValueError, match=r"^alexnet/features/12: input shape \(2, 2, 256\)"):
        jcnn.output_shape(models.alexnet(), (62, 62, 3))  # pool5 gets 2x2
    assert jcnn.output_shape(models.vgg11(), (32, 32, 3)) == (1000,)
    assert jcnn.output_shape(models.alexnet(), (63, 63, 3)) == (1000,)


def test_small_vgg_like_forward_through_adaptive_pool():
    """A real forward: tiny VGG features (two 2x2 pools) on 10x10 -> 2x2, pooled up to 7x7."""
    net = L.serial(
        vgg_features((4, "M", 8, "M")),
        L.AdaptiveAvgPool((7, 7)).named("avgpool"),
        L.Flatten(),
        L.Dense(3),
    )
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 10, 10, 3)), jnp.float32)
    params, state = _random_init(net, x.shape[1:], seed=1)
    features, _ = jcnn.batched(_child(net, "features").apply)(
        params["features"], state["features"], x
    )
    assert features.shape == (2, 2, 2, 8)
    out = np.asarray(jax.jit(jcnn.batched(net.apply))(params, state, x)[0])
    # 2 -> 7 windows [floor(2i/7), ceil(2(i+1)/7)): cell 0 for i < 3, both for i = 3, then cell 1.
    a = np.array([[1, 0], [1, 0], [1, 0], [0.5, 0.5], [0, 1], [0, 1], [0, 1]])
    pooled = np.einsum("ih,jw,bhwc->bijc", a, a, np.asarray(features, np.float64))
    dense = params["Dense_0"]
    want = pooled.reshape(2, -1) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def _param_dicts(tree, path=""):
    if isinstance(tree, dict):
        if "kernel" in tree:
            yield path, tree
        for k, v in tree.items():
            yield from _param_dicts(v, f"{path}/{k}")


@pytest.mark.parametrize("make", [models.resnet50, models.googlenet, models.cifar_resnet18])
def test_convs_before_batchnorm_have_no_bias(make):
    shape = (32, 32, 3) if make is models.cifar_resnet18 else IMAGENET
    _, params, _ = jcnn.init_shapes(make(), shape)
    convs = [(p, d) for p, d in _param_dicts(params) if d["kernel"].ndim == 4]
    assert convs and all("bias" not in d for _, d in convs)
    assert "bias" in params["fc"]


def test_bottleneck_stride_on_the_3x3():
    net = models.resnet50()
    convs = [net.at(f"layer2/0/conv{i}") for i in (1, 2, 3)]
    assert [(c.hparams["kernel_size"], c.hparams["stride"]) for c in convs] == [
        ((1, 1), (1, 1)),
        ((3, 3), (2, 2)),
        ((1, 1), (1, 1)),
    ]
    proj = net.at("layer2/0/downsample/0")
    assert proj.kind == "Conv"
    assert proj.hparams["kernel_size"] == (1, 1) and proj.hparams["stride"] == (2, 2)
    # Stage outputs 56, 28, 14, 7 with 256 .. 2048 channels.
    keys = [k for k, _ in net.children]
    stem_to = [
        L.serial(*[c.named(k) for k, c in net.children[: keys.index(f"layer{i}") + 1]])
        for i in range(1, 5)
    ]
    assert [jcnn.output_shape(s, IMAGENET) for s in stem_to] == [
        (56, 56, 256),
        (28, 28, 512),
        (14, 14, 1024),
        (7, 7, 2048),
    ]


@pytest.mark.parametrize("window", [2, 3])
def test_ceil_mode_padding_matches_pytorch(window):
    for n in range(window, 40):
        # PyTorch, ceil_mode=True, padding 0: ceil((n - k) / s) + 1, minus one if the last
        # window would start past the input.
        want = math.ceil((n - window) / 2) + 1
        if (want - 1) * 2 >= n:
            want -= 1
        pool = L.MaxPool((window, window), stride=2, padding=CEIL_MODE_PADDING)
        assert jcnn.output_shape(pool, (n, n, 1)) == (want, want, 1), n


def test_googlenet_shapes():
    net = models.googlenet()
    keys = [k for k, _ in net.children]
    upto = {k: L.serial(*[c.named(k2) for k2, c in net.children[: keys.index(k) + 1]]) for k in (
        "maxpool1", "maxpool2", "inception3b", "maxpool3", "inception4e", "inception5b",
    )}  # fmt: skip
    got = {k: jcnn.output_shape(v, IMAGENET) for k, v in upto.items()}
    assert got == {
        "maxpool1": (56, 56, 64),
        "maxpool2": (28, 28, 192),
        "inception3b": (28, 28, 480),
        "maxpool3": (14, 14, 480),
        "inception4e": (14, 14, 832),
        "inception5b": (7, 7, 1024),
    }


# ---------------------------------------------------------------------------------------------
# Blocks against NumPy loops (tests/reference.py), inference mode with random statistics
# ---------------------------------------------------------------------------------------------


def _random_init(layer, shape, seed, stats=True):
    """Params (and state) from NumPy, shaped by ``eval_shape`` of init: no random-init compile.

    Kernels ~ N(0, 1/fan_in); BatchNorm scale ~ U(0.5, 1.5), offset and all other leaves
    ~ 0.1 N(0, 1); running statistics (``stats``) mean ~ U(-0.5, 0.5), var ~ U(0.5, 1.5).
    """
    _, params, state = jcnn.init_shapes(layer, shape)
    rng = np.random.default_rng(seed)

    def param(path, s):
        name = path[-1].key
        if name == "kernel":
            value = rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, s.shape)
        else:
            value = 0.1 * rng.standard_normal(s.shape)
        return jnp.asarray(value, s.dtype)

    def stat(path, s):
        if not stats:
            return jnp.zeros(s.shape, s.dtype) if path[-1].key == "mean" else jnp.ones(s.shape)
        low = -0.5 if path[-1].key == "mean" else 0.5
        return jnp.asarray(rng.uniform(low, low + 1.0, s.shape), s.dtype)

    return (
        jax.tree_util.tree_map_with_path(param, params),
        jax.tree_util.tree_map_with_path(stat, state),
    )


def _np_conv_bn(x, conv, bn, bn_state, stride, pad, eps, relu=True):
    k = conv["kernel"].shape[0]
    y = np_conv(x, np.asarray(conv["kernel"]), (stride, stride), [(pad, pad)] * 2, (1, 1))
    mean, var = np.asarray(bn_state["mean"]), np.asarray(bn_state["var"])
    y = (y - mean) / np.sqrt(var + eps) * np.asarray(bn["scale"]) + np.asarray(bn["offset"])
    assert k in (1, 3, 7)
    return np.maximum(y, 0.0) if relu else y


def _conv_bn_ref(x, params, state, conv, bn, stride, pad, eps=1e-5, relu=True):
    """The conv keyed ``conv`` and the BatchNorm keyed ``bn`` in ``params`` / ``state``."""
    return _np_conv_bn(x, params[conv], params[bn], state[bn], stride, pad, eps, relu)


def _apply(layer, params, state, x):
    return np.asarray(jax.jit(lambda p, s, v: layer.apply(p, s, v)[0])(params, state, x))


@pytest.mark.parametrize("stride", [1, 2])
def test_basic_block_vs_numpy(stride):
    block = models.basic_block(3, 4, stride)
    x = np.random.default_rng(0).standard_normal((7, 7, 3)).astype(np.float32)
    params, state = _random_init(block, x.shape, seed=stride)
    p, s = params, state  # torchvision's BasicBlock: conv1, bn1, conv2, bn2, downsample.0/.1
    h = _conv_bn_ref(x, p, s, "conv1", "bn1", stride, 1)
    h = _conv_bn_ref(h, p, s, "conv2", "bn2", 1, 1, relu=False)
    down_p, down_s = p["downsample"], s["downsample"]
    short = _conv_bn_ref(x, down_p, down_s, "0", "1", stride, 0, relu=False)
    want = np.maximum(h + short, 0.0)
    np.testing.assert_allclose(_apply(block, params, state, x), want, rtol=1e-4, atol=1e-4)


def test_bottleneck_vs_numpy():
    block = models.bottleneck(4, 2, stride=2)  # 4 -> 8 channels, projection shortcut
    x = np.random.default_rng(1).standard_normal((6, 6, 4)).astype(np.float32)
    params, state = _random_init(block, x.shape, seed=3)
    p, s = params, state
    h = _conv_bn_ref(x, p, s, "conv1", "bn1", 1, 0)
    h = _conv_bn_ref(h, p, s, "conv2", "bn2", 2, 1)
    h = _conv_bn_ref(h, p, s, "conv3", "bn3", 1, 0, relu=False)
    short = _conv_bn_ref(x, p["downsample"], s["downsample"], "0", "1", 2, 0, relu=False)
    want = np.maximum(h + short, 0.0)
    np.testing.assert_allclose(_apply(block, params, state, x), want, rtol=1e-4, atol=1e-4)


def test_inception_module_vs_numpy():
    module = models.inception_module(2, 3, 4, 1, 2, 3)
    x = np.random.default_rng(2).standard_normal((5, 5, 3)).astype(np.float32)
    params, state = _random_init(module, x.shape, seed=4)
    eps = 1e-3

    def basic_conv(x, path, pad):  # torchvision's BasicConv2d: conv, bn (and a ReLU)
        p, s = paths.subtree(params, path), paths.subtree(state, path)
        return _conv_bn_ref(x, p, s, "conv", "bn", 1, pad, eps)

    b1 = basic_conv(x, "branch1", 0)
    b2 = basic_conv(basic_conv(x, "branch2/0", 0), "branch2/1", 1)
    b3 = basic_conv(basic_conv(x, "branch3/0", 0), "branch3/1", 1)
    pooled = np_pool(x, (3, 3), (1, 1), [(1, 1)] * 2, "max")
    b4 = basic_conv(pooled, "branch4/1", 0)
    want = np.concatenate([b1, b2, b3, b4], axis=-1)  # torchvision's branch order
    assert want.shape == (5, 5, 2 + 4 + 2 + 3)
    np.testing.assert_allclose(_apply(module, params, state, x), want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Real forwards
# ---------------------------------------------------------------------------------------------


def test_cifar_resnet18_forward_tiny_batch():
    net = models.cifar_resnet18()
    params, state = _random_init(net, (32, 32, 3), seed=0, stats=False)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 32, 3)), jnp.float32)

    @jax.jit
    def run(params, state, x):
        return jcnn.batched(net.apply)(params, state, x, train=True)

    out, new_state = run(params, state, x)
    assert out.shape == (2, 10) and np.isfinite(np.asarray(out)).all()
    # Train mode took batch statistics: the stem's running mean moved from 0 to
    # (1 - 0.9) * the mean of its conv outputs over the batch and the 32x32 positions.
    kernel = np.asarray(params["conv1"]["kernel"])
    conv = [np_conv(v, kernel, (1, 1), [(1, 1)] * 2, (1, 1)) for v in np.asarray(x)]
    want = 0.1 * np.mean(conv, axis=(0, 1, 2))
    after = np.asarray(new_state["bn1"]["mean"])
    np.testing.assert_allclose(after, want, rtol=1e-4, atol=1e-5)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


@pytest.mark.slow  # ~10 s of CPU, mostly compiling 57 convolutions
def test_googlenet_forward_reduced_size():
    net = models.googlenet(num_classes=5)
    shape = (40, 40, 3)  # 40 -> 20 -> 10 -> 5 -> 3 -> 2 -> global pool
    params, state = _random_init(net, shape, seed=0)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, *shape)), jnp.float32)
    out = jax.jit(lambda p, s, v: jcnn.batched(net.apply)(p, s, v)[0])(params, state, x)
    assert out.shape == (2, 5) and np.isfinite(np.asarray(out)).all()
    assert jcnn.output_shape(net, shape) == (5,)
