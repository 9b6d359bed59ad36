"""ShuffleNet V2 1.0x (Ma et al. 2018) as in torchvision.

A unit of stride 1 splits the channels in two halves, passes the first through and runs the
second through ``branch2`` (1x1 conv, BatchNorm, ReLU, 3x3 depthwise conv, BatchNorm, 1x1 conv,
BatchNorm, ReLU); a unit of stride 2 runs the whole input through ``branch1`` (3x3 depthwise
conv with the stride, BatchNorm, 1x1 conv, BatchNorm, ReLU) and ``branch2`` (its depthwise conv
carrying the stride). The two halves are concatenated and their channels shuffled in two groups
(:func:`channel_shuffle`). Convolutions have no bias.

Children are keyed as torchvision's modules: ``conv1`` (``"0"`` conv, ``"1"`` BatchNorm),
``maxpool``, ``stage2`` .. ``stage4`` (units ``"0"``, ``"1"``, ...; a unit holds ``branch1``
and ``branch2`` directly), ``conv5``, then the global average pool and ``fc``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import BatchNormFactory, classifier_pool, sequential, torch_batch_norm

#: torchvision's ``shufflenet_v2_x1_0``: units per stage and the widths of ``conv1``,
#: ``stage2`` .. ``stage4`` and ``conv5``.
STAGES_REPEATS: tuple[int, ...] = (4, 8, 4)
STAGES_OUT_CHANNELS_X1_0: tuple[int, ...] = (24, 116, 232, 464, 1024)


def _same_shape(input_shape: Any) -> Any:
    return tuple(input_shape)


def channel_shuffle(groups: int = 2) -> Layer:
    """torchvision's ``channel_shuffle``: channel ``g * (C / groups) + j`` moves to ``j * groups
    + g`` (a ``(groups, C / groups)`` transpose of the channel axis).

    Shapes:
        ``(H, W, C) -> (H, W, C)``, ``C`` a multiple of ``groups``.
    """

    def init(key, input_shape):
        return _same_shape(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        *spatial, channels = x.shape
        y = x.reshape(*spatial, groups, channels // groups)
        return jnp.swapaxes(y, -1, -2).reshape(x.shape), state

    return L.custom(
        init, apply, "channel_shuffle", output_shape=_same_shape, stochastic=False
    ).named("channel_shuffle")


def channel_half(which: int) -> Layer:
    """The first (``which=0``) or second (``which=1``) half of the channels (torch's
    ``x.chunk(2, dim=1)``).

    Shapes:
        ``(H, W, C) -> (H, W, C // 2)``.
    """

    def out_shape(input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)

    def init(key, input_shape):
        return out_shape(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        half = x.shape[-1] // 2
        return (x[..., :half] if which == 0 else x[..., half:]), state

    return L.custom(init, apply, "channel_half", output_shape=out_shape, stochastic=False).named(
        f"half{which}"
    )


def shuffle_unit(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "shuffle_unit",
) -> Layer:
    """torchvision's ShuffleNetV2 ``InvertedResidual`` (see the module docstring).

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), out_channels)``.

    Example:
        >>> jcnn.output_shape(shuffle_unit(24, 116, 2), (16, 16, 24))
        (8, 8, 116)
    """
    branch = out_channels // 2

    def depthwise(channels: int, s: int) -> Layer:
        return L.Conv(channels, 3, stride=s, padding=1, groups=channels, use_bias=False)

    def pointwise(channels: int) -> Layer:
        return L.Conv(channels, 1, use_bias=False)

    branch2 = sequential(
        pointwise(branch),
        batch_norm(),
        L.Relu(),
        depthwise(branch, stride),
        batch_norm(),
        pointwise(branch),
        batch_norm(),
        L.Relu(),
        name="branch2",
    )
    if stride > 1:
        branch1 = sequential(
            depthwise(in_channels, stride),
            batch_norm(),
            pointwise(branch),
            batch_norm(),
            L.Relu(),
            name="branch1",
        )
        joined = L.concat(branch1, branch2)
    else:
        joined = L.concat(channel_half(0), L.serial(channel_half(1), branch2).inlined())
    return L.serial(joined.inlined(), channel_shuffle(2), name=name)


def shufflenet_v2(
    stages_out_channels: tuple[int, ...] = STAGES_OUT_CHANNELS_X1_0,
    num_classes: int = 1000,
    *,
    stages_repeats: tuple[int, ...] = STAGES_REPEATS,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "shufflenet_v2",
) -> Layer:
    """torchvision's ``ShuffleNetV2``: ``conv1`` (3x3/2 conv, BatchNorm, ReLU), ``maxpool``
    (3x3/2 pad 1), ``stage2`` .. ``stage4`` (:func:`shuffle_unit`, the first of each of stride
    2), ``conv5`` (1x1 conv, BatchNorm, ReLU), global average pool, ``fc``.

    Shapes:
        ``(H, W, 3) -> (num_classes,)``.
    """
    channels = stages_out_channels[0]
    layers = [
        sequential(
            L.Conv(channels, 3, stride=2, padding=1, use_bias=False),
            batch_norm(),
            L.Relu(),
            name="conv1",
        ),
        L.MaxPool((3, 3), stride=2, padding=1).named("maxpool"),
    ]
    for i, (repeats, out) in enumerate(zip(stages_repeats, stages_out_channels[1:]), start=2):
        units = [shuffle_unit(channels, out, 2, batch_norm=batch_norm, name="0")]
        units += [
            shuffle_unit(out, out, 1, batch_norm=batch_norm, name=str(b)) for b in range(1, repeats)
        ]
        layers.append(L.serial(*units, name=f"stage{i}"))
        channels = out
    layers.append(
        sequential(
            L.Conv(stages_out_channels[-1], 1, use_bias=False),
            batch_norm(),
            L.Relu(),
            name="conv5",
        )
    )
    return L.serial(*layers, classifier_pool("pool"), L.Dense(num_classes).named("fc"), name=name)


def shufflenet_v2_x1_0(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's ShuffleNet V2 1.0x: 2,278,604 parameters for 1,000 classes. See
    :func:`shufflenet_v2`.

    Example:
        >>> jcnn.output_shape(shufflenet_v2_x1_0(), (224, 224, 3))
        (1000,)
    """
    return shufflenet_v2(STAGES_OUT_CHANNELS_X1_0, num_classes, name="shufflenet_v2_x1_0", **kwargs)
