"""jcnn layers: every one an ``(init, apply)`` pair with the same signatures (see ``core``)."""

from jcnn.layers.activations import (
    Elu,
    Gelu,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Softmax,
    Tanh,
    elementwise,
)
from jcnn.layers.combinators import (
    concat,
    fan_in_concat,
    fan_in_sum,
    fan_out,
    parallel,
    residual,
    serial,
)
from jcnn.layers.conv import Conv, ConvTranspose
from jcnn.layers.core import Layer, custom
from jcnn.layers.dense import Dense, Flatten, Identity, Reshape
from jcnn.layers.dropout import Dropout
from jcnn.layers.norm import BatchNorm, GroupNorm, LayerNorm
from jcnn.layers.pool import (
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool,
    SumPool,
)
from jcnn.layers.repeat import repeat

__all__ = [
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "AvgPool",
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "Dense",
    "Dropout",
    "Elu",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GroupNorm",
    "Identity",
    "Layer",
    "LayerNorm",
    "LeakyRelu",
    "LogSoftmax",
    "MaxPool",
    "Relu",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "SumPool",
    "Tanh",
    "concat",
    "custom",
    "elementwise",
    "fan_in_concat",
    "fan_in_sum",
    "fan_out",
    "parallel",
    "repeat",
    "residual",
    "serial",
]
