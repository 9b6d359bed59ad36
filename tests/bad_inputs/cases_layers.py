"""Catalogue cases for layers, combinators and the Layer value: factories, init, apply."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.layers.shapes import ShapeError
from tests.bad_inputs.catalogue import Case

KEY = jax.random.key(0)


def _init(layer, shape):
    return layer.init(KEY, shape)


def _apply_after_init(layer, init_shape, x, **kwargs):
    _, params, state = layer.init(KEY, init_shape)
    return layer.apply(params, state, x, **kwargs)


def _batched_after_init(layer, init_shape, xs, **kwargs):
    _, params, state = layer.init(KEY, init_shape)
    return jcnn.batched(layer.apply)(params, state, xs, **kwargs)


def _valid_numpy_scalars(_):
    conv, drop = L.Conv(4, np.int64(3), stride=np.int32(1)), L.Dropout(np.float32(0.5))
    assert conv == L.Conv(4, 3) and drop.hparams["rate"] == 0.5
    assert L.MaxPool(np.int64(2)).output_shape((8, 8, 1)) == (4, 4, 1)


def _valid_padding_half_window(_):
    # Windows that touch the input are fine, even with the padding PyTorch's rule allows.
    assert L.MaxPool(3, stride=2, padding=1).output_shape((7, 7, 2)) == (4, 4, 2)
    assert L.MaxPool(3, stride=2, padding=((0, 1), (0, 1))).output_shape((6, 6, 1)) == (3, 3, 1)


def _valid_batched_example_ndim(_):
    """Without example_ndim, batched maps over the leading axis whatever it is (documented)."""
    net = L.serial(L.GlobalAvgPool(), L.Dense(2))
    _, params, state = net.init(KEY, (8, 8, 3))
    ys, _ = jcnn.batched(net.apply)(params, state, jnp.ones((8, 8, 3)))
    assert ys.shape == (8, 2)  # 8 "examples" of shape (8, 3): the documented reading
    ys, _ = jcnn.batched(net.apply, example_ndim=3)(params, state, jnp.ones((1, 8, 8, 3)))
    assert ys.shape == (1, 2)


def _valid_equal_layers(_):
    assert L.Conv(8, 3) == L.Conv(8, (3, 3)) and hash(L.Conv(8, 3)) == hash(L.Conv(8, (3, 3)))
    assert L.Relu() != L.Relu().named("x")


def _assign(_):
    L.Conv(8, 3).name = "x"


CNN_8 = "cnn/Conv_1: input shape (2, 2, 8): spatial dim 0: window does not fit"

CASES = [
    # --- factories ------------------------------------------------------------------------
    Case("layers", "conv_float_kernel", "Conv(4, 3.0): a float kernel size",
         lambda _: L.Conv(4, 3.0), ShapeError, ["Conv kernel_size must be an int", "3.0"]),
    Case("layers", "conv_float_channels", "Conv(4.0, 3): float out_channels",
         lambda _: L.Conv(4.0, 3), ShapeError, ["Conv out_channels must be an int", "4.0"]),
    Case("layers", "pool_float_window", "MaxPool(2.0)",
         lambda _: L.MaxPool(2.0), ShapeError, ["MaxPool window must be an int", "2.0"]),
    Case("layers", "numpy_scalars", "Conv(4, np.int64(3)), Dropout(np.float32(0.5))",
         _valid_numpy_scalars, valid="accepted as the equal Python numbers"),
    Case("layers", "conv_zero_stride", "Conv(4, 3, stride=0)",
         lambda _: L.Conv(4, 3, stride=0), ShapeError, ["Conv stride must be >= 1", "(0, 0)"]),
    Case("layers", "conv_kernel_rank_mismatch", "Conv(4, (3, 3), stride=(1, 1, 1))",
         lambda _: L.Conv(4, (3, 3), stride=(1, 1, 1)), ShapeError,
         ["Conv stride must be an int or a sequence of 2 ints", "(1, 1, 1)"]),
    Case("layers", "conv_groups", "Conv(5, 3, groups=2): groups not dividing out_channels",
         lambda _: L.Conv(5, 3, groups=2), ShapeError, ["groups=2", "dividing out_channels=5"]),
    Case("layers", "conv_bad_padding", "Conv(2, 3, padding=1.5)",
         lambda _: L.Conv(2, 3, padding=1.5), ShapeError, ["malformed padding 1.5", "accepted"]),
    Case("layers", "conv_unknown_padding_mode", "Conv(4, 3, padding=1, padding_mode='reflection')",
         lambda _: L.Conv(4, 3, padding=1, padding_mode="reflection"), ValueError,
         ["Conv: unknown padding_mode 'reflection'", "'zeros', 'reflect', 'replicate', 'circular'"]),
    Case("layers", "conv_padding_mode_crop", "Conv(4, 3, padding=-1, padding_mode='circular')",
         lambda _: L.Conv(4, 3, padding=-1, padding_mode="circular"), ShapeError,
         ["negative (cropping)", "only padding_mode='zeros' takes", "give padding >= 0"]),
    Case("layers", "dense_zero_features", "Dense(0)",
         lambda _: L.Dense(0), ShapeError, ["Dense out_features must be a positive int, got 0"]),
    Case("layers", "dropout_rate_one", "Dropout(1.0): drops everything",
         lambda _: L.Dropout(1.0), ValueError, ["Dropout rate must be in [0, 1)", "1.0"]),
    Case("layers", "uncalled_constructor", "serial(Relu): the constructor, not a layer",
         lambda _: L.serial(L.Conv(2, 3), L.Relu), TypeError, ["call constructors", "Relu()"]),
    Case("layers", "duplicate_names", "two children named the same",
         lambda _: L.serial(L.Relu().named("a"), L.Relu().named("a")), ValueError,
         ["two children are named 'a'", ".named()"]),
    Case("layers", "unhashable_hparam", "an array as a hyper-parameter",
         lambda _: L.elementwise(jax.nn.elu, "Elu", alpha=jnp.ones(3)), TypeError,
         ["alpha=", "not hashable", "Python numbers"]),
    Case("layers", "layer_is_immutable", "assigning an attribute of a layer", _assign,
         dataclasses.FrozenInstanceError, ["cannot assign to field 'name'"]),
    Case("layers", "layers_compare_by_value", "comparing and hashing layers",
         _valid_equal_layers, valid="equal when every fact is equal; a renamed layer differs"),
    # --- init -----------------------------------------------------------------------------
    Case("layers", "init_with_array", "init(key, jnp.zeros((28, 28, 1))): the Flax habit",
         lambda _: _init(models.cnn(), jnp.zeros((28, 28, 1))), TypeError,
         ["cnn: init takes the SHAPE of one example", "(28, 28, 1)", "x.shape[1:]"]),
    Case("layers", "init_with_batch_shape", "init with a batch shape (32, 28, 28, 1)",
         lambda _: _init(models.cnn(), (32, 28, 28, 1)), ShapeError,
         ["cnn/Conv_0: input shape (32, 28, 28, 1)", "expected rank 3", "ONE example"]),
    Case("layers", "channels_first", "a channels-first image (1, 28, 28)",
         lambda _: _init(models.cnn(), (1, 28, 28)), ShapeError,
         ["cnn/Conv_0: input shape (1, 28, 28)", "channels-last", "use (28, 28, 1)"]),
    Case("layers", "too_small_input_path", "models.cnn() at 8x8: the second conv does not fit",
         lambda _: _init(models.cnn(), (8, 8, 1)), ShapeError,
         [CNN_8, "floor((2 + 0 + 0 - 1*(3-1) - 1) / 1) + 1 = 0"]),
    Case("layers", "resnet_path", "ResNet-18's layer1 given 3 channels: the path names the block",
         lambda _: dict(models.resnet18().children)["layer1"].output_shape((8, 8, 3)), ShapeError,
         ["layer1/0: input shape (8, 8, 3)", "block gives (8, 8, 64)",
          "shortcut gives (8, 8, 3)"]),
    Case("layers", "zero_channels", "Conv on an input with 0 channels",
         lambda _: _init(L.Conv(4, 3), (8, 8, 0)), ShapeError,
         ["Conv: input shape (8, 8, 0)", "no channels"]),
    Case("layers", "groups_not_dividing_input", "Conv(4, 3, groups=4) on 3 channels",
         lambda _: _init(L.Conv(4, 3, groups=4), (8, 8, 3)), ShapeError,
         ["groups=4 does not divide C_in=3"]),
    Case("layers", "conv_reflect_too_small",
         "Conv(4, 3, padding=2, padding_mode='reflect') on a 2x2 input",
         lambda _: _init(L.Conv(4, 3, padding=2, padding_mode="reflect"), (2, 2, 1)), ShapeError,
         ["Conv: input shape (2, 2, 1): spatial dim 0", "needs padding < input size",
          "(lo, hi) = (2, 2) on a dim of size 2", "PyTorch's rule", "padding_mode='replicate'"]),
    Case("layers", "conv_circular_too_small",
         "Conv circular padding wider than the input: padding=[(1, 4)] on length 3",
         lambda _: _init(L.Conv(4, (3,), padding=[(1, 4)], padding_mode="circular"), (3, 1)),
         ShapeError, ["Conv: input shape (3, 1)", "'circular' needs padding <= input size",
                      "(lo, hi) = (1, 4) on a dim of size 3"]),
    Case("layers", "pool_window_in_padding", "MaxPool(2, padding=2): whole windows in padding",
         lambda _: _init(L.MaxPool(2, padding=2), (4, 4, 1)), ShapeError,
         ["MaxPool: input shape (4, 4, 1)", "whole windows of size 2 in the padding"]),
    Case("layers", "avgpool_window_in_padding",
         "AvgPool(2, padding=(2, 0), count_include_pad=False): 0/0 windows",
         lambda _: _init(L.AvgPool(2, padding=((2, 0), (0, 0)), count_include_pad=False),
                         (4, 4, 1)), ShapeError, ["AvgPool", "whole windows", "PyTorch allows at most 1"]),
    Case("layers", "pool_padding_touching_input", "MaxPool(3, stride=2, padding=1)",
         _valid_padding_half_window, valid="windows that touch the input are computed"),
    Case("layers", "conv_transpose_overcrop", "ConvTranspose(2, (3,), padding=3) on length 2",
         lambda _: _init(L.ConvTranspose(2, (3,), padding=3), (2, 1)), ShapeError,
         ["(2-1)*1 - 3 - 3 + 1*(3-1) + 0 + 1 = -2 <= 0", "padding=3 crops more", "less padding"]),
    Case("layers", "residual_mismatch", "residual whose block changes the width",
         lambda _: _init(L.residual(L.Conv(8, 1)), (4, 4, 3)), ShapeError,
         ["residual: input shape (4, 4, 3)", "block gives (4, 4, 8) but shortcut gives (4, 4, 3)"]),
    Case("layers", "concat_mismatch", "concat of branches with different spatial sizes",
         lambda _: _init(L.concat(L.Conv(2, 1), L.Conv(2, 3)), (6, 6, 1)), ShapeError,
         ["concat: input shape", "agree on every axis except -1"]),
    Case("layers", "groupnorm_groups", "GroupNorm(3) on 8 channels",
         lambda _: _init(L.GroupNorm(3), (4, 4, 8)), ShapeError, ["num_groups=3 must divide"]),
    Case("layers", "repeat_changes_shape", "repeat of a block that changes the shape",
         lambda _: _init(L.repeat(L.Conv(4, 3), 2), (6, 6, 4)), ShapeError,
         ["repeat: input shape (6, 6, 4)", "must keep the shape"]),
    # --- apply ----------------------------------------------------------------------------
    Case("layers", "uint8_images", "raw uint8 pixels into a Conv net",
         lambda _: _apply_after_init(models.cnn(), (28, 28, 1), jnp.zeros((28, 28, 1), jnp.uint8)),
         TypeError, ["cnn/Conv_0: input dtype uint8", "x.astype(np.float32) / 255"]),
    Case("layers", "channel_mismatch_apply", "init for 3 channels, apply on 1",
         lambda _: _apply_after_init(L.serial(L.Conv(4, 3)), (8, 8, 3), jnp.ones((8, 8, 1))),
         ShapeError, ["serial/Conv_0: input shape (8, 8, 1)", "has 1 channels", "made for 3"]),
    Case("layers", "dense_features_mismatch", "Dense made for 64 features given 10",
         lambda _: _apply_after_init(L.Dense(2), (64,), jnp.ones((10,))), ShapeError,
         ["Dense: input shape (10,)", "has 10 channels", "made for 64"]),
    Case("layers", "batch_into_apply", "a batch (4, 8, 8, 1) into the per-example apply",
         lambda _: _apply_after_init(models.cnn(), (28, 28, 1), jnp.ones((4, 28, 28, 1))),
         ShapeError, ["cnn/Conv_0: input shape (4, 28, 28, 1)", "jcnn.batched"]),
    Case("layers", "one_example_into_batched", "batched(apply) on ONE example (Flatten -> Dense)",
         lambda _: _batched_after_init(L.serial(L.Flatten(), L.Dense(2)), (8, 8, 3),
                                       jnp.ones((8, 8, 3))), ShapeError,
         ["serial/Dense_0: input shape (24,)", "made for 192", "pass x[None]"]),
    Case("layers", "batched_example_ndim", "batched(apply, example_ndim=3) on ONE example",
         lambda _: jcnn.batched(models.cnn().apply, example_ndim=3)({}, {}, jnp.ones((28, 28, 1))),
         ValueError, ["jcnn.batched: input of shape (28, 28, 1)", "rank 3", "x[None]"]),
    Case("layers", "batched_without_example_ndim", "batched over a rank-agnostic net",
         _valid_batched_example_ndim, valid="maps over the leading axis (documented); example_ndim= checks"),
    Case("layers", "params_from_another_net", "params of one net given to another",
         lambda _: models.cnn().apply(models.mlp().init(KEY, (28, 28, 1))[1], {},
                                      jnp.ones((28, 28, 1))), ValueError,
         ["cnn: params from another architecture", "expected children"]),
    Case("layers", "batchnorm_batch_of_one", "BatchNorm(train=True) on a batch of one after Dense",
         lambda _: _batched_after_init(L.serial(L.Dense(4), L.BatchNorm()), (3,), jnp.ones((1, 3)),
                                       train=True), ShapeError,
         ["serial/BatchNorm_0", "more than 1 value per channel", "batch 1"]),
    Case("layers", "batchnorm_unbatched", "BatchNorm(train=True) without jcnn.batched",
         lambda _: _apply_after_init(L.BatchNorm(), (4, 4, 2), jnp.ones((4, 4, 2)), train=True),
         NameError, ["batch axis 'batch'", "jcnn.batched"]),
    Case("layers", "dropout_without_key", "Dropout(train=True) without a key",
         lambda _: _apply_after_init(L.Dropout(0.5), (4,), jnp.ones((4,)), train=True),
         ValueError, ["Dropout: train=True needs a PRNG key"]),
    Case("layers", "fan_in_sum_broadcast", "fan_in_sum of (4,) and (1,): no broadcasting",
         lambda _: L.fan_in_sum().apply({}, {}, (jnp.ones(4), jnp.ones(1))), ShapeError,
         ["all inputs must have the same shape (no broadcasting)"]),
]  # fmt: skip
