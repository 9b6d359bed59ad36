"""jcnn layers: every one an ``(init, apply)`` pair with the same signatures (see ``core``)."""

from jcnn.layers.activations import (
    Elu,
    Gelu,
    Hardsigmoid,
    Hardswish,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Relu6,
    Sigmoid,
    Silu,
    Softmax,
    Swish,
    Tanh,
    elementwise,
)
from jcnn.layers.combinators import (
    concat,
    fan_in_concat,
    fan_in_sum,
    fan_out,
    gate,
    parallel,
    residual,
    serial,
)
from jcnn.layers.conv import Conv, ConvTranspose
from jcnn.layers.core import Layer, Visit, walk
from jcnn.layers.custom import custom
from jcnn.layers.dense import Dense, Flatten, Identity, Reshape
from jcnn.layers.dropout import Dropout, StochasticDepth
from jcnn.layers.local import ConvLocal
from jcnn.layers.norm import BatchNorm, GroupNorm, LayerNorm
from jcnn.layers.pool import (
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool,
    Pool,
    SumPool,
)
from jcnn.layers.repeat import repeat
from jcnn.layers.resize import PixelShuffle, Upsample
from jcnn.layers.scale import LayerScale
from jcnn.layers.wrappers import with_matmul_precision

__all__ = [
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "AvgPool",
    "BatchNorm",
    "Conv",
    "ConvLocal",
    "ConvTranspose",
    "Dense",
    "Dropout",
    "Elu",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GroupNorm",
    "Hardsigmoid",
    "Hardswish",
    "Identity",
    "Layer",
    "LayerNorm",
    "LayerScale",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "PixelShuffle",
    "Pool",
    "Relu",
    "Relu6",
    "Reshape",
    "Sigmoid",
    "Silu",
    "Softmax",
    "StochasticDepth",
    "SumPool",
    "Swish",
    "Tanh",
    "Upsample",
    "Visit",
    "concat",
    "custom",
    "elementwise",
    "fan_in_concat",
    "fan_in_sum",
    "fan_out",
    "gate",
    "parallel",
    "repeat",
    "residual",
    "serial",
    "walk",
    "with_matmul_precision",
]
