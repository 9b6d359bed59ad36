"""The numbers the course texts work out by hand, reproduced through jcnn.

Sources: "5 Convolutional Neural Networks" (MNIST MLP and CNN in Flux.jl, the output-size formula,
max pooling, VGG19, the 10-billion-parameter dense network) and "Mechanisms of Convolutional
Networks" (28x28 -> 26x26 with 3x3 filters, multi-channel "option two" filters, 2x2 pooling).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers.shapes import conv_output_size


def mnist_cnn_layers():
    """model2 of the course: Conv 5x5 8 -> pool 2 -> Conv 3x3 16 -> pool 2 -> flatten -> Dense 10."""
    return [
        L.Conv(8, (5, 5)), L.Relu(), L.MaxPool((2, 2)),
        L.Conv(16, (3, 3)), L.Relu(), L.MaxPool((2, 2)),
        L.Flatten(), L.Dense(10),
    ]  # fmt: skip


def test_contract_snippet():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((28, 28, 1)), jnp.float32)
    xs = jnp.asarray(rng.standard_normal((4, 28, 28, 1)), jnp.float32)
    key = jax.random.key(1)

    net = L.serial(L.Conv(8, (5, 5)), L.Relu(), L.MaxPool((2, 2)), L.Conv(16, (3, 3)), L.Relu(), L.MaxPool((2, 2)), L.Flatten(), L.Dense(10))  # fmt: skip  # noqa: E501
    init, apply = net
    out_shape, params, state = init(jax.random.key(0), (28, 28, 1))
    y, state = apply(params, state, x)
    ys, state = jcnn.batched(apply)(params, state, xs, key=key, train=True)
    assert jcnn.count_params(net, (28, 28, 1)) == 5386
    print(jcnn.summary(net, (28, 28, 1)))
    assert jcnn.shapes.conv_output_size(28, 5) == 24

    assert out_shape == y.shape == (10,)
    assert ys.shape == (4, 10)
    assert jnp.all(jnp.isfinite(ys))
    assert sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(params)) == 5386
    assert params["Conv_0"]["kernel"].shape == (5, 5, 1, 8)
    assert params["Conv_1"]["kernel"].shape == (3, 3, 8, 16)
    assert params["Dense_0"]["kernel"].shape == (400, 10)
    # No Dropout/BatchNorm: train mode changes nothing.
    ys_eval, _ = jcnn.batched(apply)(params, state, xs)
    np.testing.assert_allclose(ys, ys_eval, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ys_eval[0], apply(params, state, xs[0])[0], rtol=1e-5, atol=1e-5)


def test_mnist_cnn_shapes_28_24_12_10_5():
    layers = mnist_cnn_layers()
    want = [(24, 24, 8), (24, 24, 8), (12, 12, 8), (10, 10, 16), (10, 10, 16), (5, 5, 16),
            (400,), (10,)]  # fmt: skip
    for i, shape in enumerate(want, start=1):
        assert jcnn.output_shape(L.serial(*layers[:i]), (28, 28, 1)) == shape, i
    assert conv_output_size(28, 5) == 28 - 5 + 1 == 24
    assert conv_output_size(24, 2, 2) == 12
    assert conv_output_size(12, 3) == 12 - 3 + 1 == 10
    assert conv_output_size(10, 2, 2) == 5
    assert 5 * 5 * 16 == 400


def test_mnist_cnn_params_per_layer():
    first = 8 * (5 * 5 * 1 + 1)
    second = 16 * (3 * 3 * 8 + 1)
    third = 400 * 10 + 10
    assert (first, second, third) == (208, 1_168, 4_010)
    assert jcnn.count_params(L.Conv(8, (5, 5)), (28, 28, 1)) == first
    assert jcnn.count_params(L.Conv(16, (3, 3)), (12, 12, 8)) == second
    assert jcnn.count_params(L.Dense(10), (400,)) == third
    net = L.serial(*mnist_cnn_layers())
    assert jcnn.count_params(net, (28, 28, 1)) == first + second + third == 5_386


def test_mnist_mlp_params():
    """model1: flatten, Dense(784, 200, relu), Dense(200, 100, tanh), Dense(100, 10), softmax."""
    mlp = L.serial(
        L.Flatten(), L.Dense(200), L.Relu(), L.Dense(100), L.Tanh(), L.Dense(10), L.Softmax()
    )
    by_hand = (784 * 200 + 200) + (200 * 100 + 100) + (100 * 10 + 10)
    assert by_hand == 178_110
    assert jcnn.count_params(mlp, (28, 28, 1)) == by_hand
    assert jcnn.output_shape(mlp, (28, 28, 1)) == (10,)


def test_3x3_filters_28_to_26_then_option_two_filters():
    """28x28 input, 3x3 receptive fields overlapping by 2: 26 per row. Layer 1 with 4 filters
    gives (26, 26, 4); layer 2 expands its filters to (3, 3, 4) and applies 8: (24, 24, 8)."""
    assert conv_output_size(28, 3) == 26
    net = L.serial(L.Conv(4, (3, 3)), L.Conv(8, (3, 3)))
    assert jcnn.output_shape(L.serial(L.Conv(4, (3, 3))), (28, 28, 1)) == (26, 26, 4)
    assert jcnn.output_shape(net, (28, 28, 1)) == (24, 24, 8)
    _, params, _ = jcnn.init_shapes(net, (28, 28, 1))
    assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 4)
    assert params["Conv_1"]["kernel"].shape == (3, 3, 4, 8)


def test_2x2_pooling_halves():
    assert jcnn.output_shape(L.MaxPool((2, 2)), (26, 26, 4)) == (13, 13, 4)
    assert conv_output_size(26, 2, 2) == 13
    # The course text says 32x32 pools to 16x15; it is 16x16 (a known slip).
    assert jcnn.output_shape(L.MaxPool((2, 2)), (32, 32, 10)) == (16, 16, 10)


def test_2x2_max_pooling_values():
    x = np.random.default_rng(2).standard_normal((26, 26, 4)).astype(np.float32)
    y, _ = L.MaxPool((2, 2)).apply({}, {}, jnp.asarray(x))
    np.testing.assert_array_equal(y, x.reshape(13, 2, 13, 2, 4).max(axis=(1, 3)))


@pytest.mark.parametrize(("padding", "stride", "size"), [(2, 1, 11), (0, 1, 7), (1, 2, 5)])
def test_output_size_formula_moving_average_cases(padding, stride, size):
    """(n_x + 2P - n_h) / S + 1 with n_x = 9, n_h = 3."""
    assert (9 + 2 * padding - 3) // stride + 1 == size
    assert conv_output_size(9, 3, stride, padding) == size


def test_1x1_conv_on_monochrome_is_scaling():
    x = np.random.default_rng(3).standard_normal((5, 5, 1)).astype(np.float32)
    layer = L.Conv(1, (1, 1), use_bias=False)
    y, _ = layer.apply({"kernel": jnp.full((1, 1, 1, 1), 2.5)}, {}, jnp.asarray(x))
    np.testing.assert_allclose(y, 2.5 * x, rtol=1e-6)


def vgg19():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
           512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]  # fmt: skip
    features = []
    for c in cfg:
        features += [L.MaxPool((2, 2))] if c == "M" else [L.Conv(c, (3, 3), padding=1), L.Relu()]
    return L.serial(
        L.serial(*features, name="features"),
        L.Flatten(),
        L.Dense(4096), L.Relu(), L.Dropout(0.5),
        L.Dense(4096), L.Relu(), L.Dropout(0.5),
        L.Dense(1000), L.Softmax(),
    )  # fmt: skip


def test_vgg19_25088_neurons_and_params():
    net = vgg19()
    features = net.children[0][1]
    assert jcnn.output_shape(features, (224, 224, 3)) == (7, 7, 512)
    assert 7 * 7 * 512 == 25_088
    widths = [3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    convs = sum(9 * a * b + b for a, b in zip(widths[:-1], widths[1:]))
    dense = (25_088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert convs + dense == 143_667_240
    assert jcnn.count_params(net, (224, 224, 3)) == 143_667_240
    # 19 layers with trained parameters (16 conv + 3 dense).
    assert len([c for _, c in features.children if c.kind == "Conv"]) + 3 == 19


def test_ten_billion_parameter_dense_network():
    """W1: 10^4 x 10^6, W2: 10^3 x 10^4, W3: 1 x 10^3, with biases: about 10 billion."""
    net = L.serial(L.Dense(10**4), L.Relu(), L.Dense(10**3), L.Relu(), L.Dense(1), L.Sigmoid())
    by_hand = 10**4 * 10**6 + 10**4 + 10**3 * 10**4 + 10**3 + 1 * 10**3 + 1
    assert jcnn.count_params(net, (10**6,)) == by_hand == 10_010_012_001
