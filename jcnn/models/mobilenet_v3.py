"""MobileNetV3 Large and Small (Howard et al. 2019) as in torchvision.

Its inverted residual is MobileNetV2's (:func:`jcnn.models.mobilenet.inverted_residual`) with a
kernel of 3 or 5, ReLU or hard-swish activations, and in some blocks a squeeze-excitation after
the depthwise convolution (:func:`jcnn.models.common.squeeze_excitation`: ReLU, hard-sigmoid
gate, squeezing to ``make_divisible(expanded // 4)`` channels). Its BatchNorm is torchvision's
for this model: eps 1e-3, momentum 0.01 (:func:`mobilenet_v3_batch_norm`).

Children are keyed as torchvision's modules: ``features`` (``"0"`` the stem, then one entry per
block, then the last 1x1 conv), ``avgpool``, ``classifier`` (``"0"`` dense, ``"1"``
hard-swish, ``"2"`` dropout, ``"3"`` dense); a block's layers are its ``block`` Sequential,
keyed by position (``features/4/block/2/fc1`` is torchvision's ``features.4.block.2.fc1``).
"""

from __future__ import annotations

from typing import Any

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import (
    BatchNormFactory,
    classifier_pool,
    conv_norm_act,
    residual_if_shape_kept,
    sequential,
    squeeze_excitation,
    torch_batch_norm,
)
from jcnn.models.mobilenet import make_divisible

#: A block: (in channels, kernel, expanded channels, out channels, squeeze-excitation,
#: hard-swish (else ReLU), stride), torchvision's ``bneck_conf`` without the dilation.
BlockSetting = tuple[int, int, int, int, bool, bool, int]

#: torchvision's ``mobilenet_v3_large`` blocks and last width.
LARGE_SETTING: tuple[BlockSetting, ...] = (
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)
LARGE_LAST_CHANNEL = 1280

#: torchvision's ``mobilenet_v3_small`` blocks and last width.
SMALL_SETTING: tuple[BlockSetting, ...] = (
    (16, 3, 16, 16, True, False, 2),
    (16, 3, 72, 24, False, False, 2),
    (24, 3, 88, 24, False, False, 1),
    (24, 5, 96, 40, True, True, 2),
    (40, 5, 240, 40, True, True, 1),
    (40, 5, 240, 40, True, True, 1),
    (40, 5, 120, 48, True, True, 1),
    (48, 5, 144, 48, True, True, 1),
    (48, 5, 288, 96, True, True, 2),
    (96, 5, 576, 96, True, True, 1),
    (96, 5, 576, 96, True, True, 1),
)
SMALL_LAST_CHANNEL = 1024


def mobilenet_v3_batch_norm(*, eps: float = 1e-3, momentum: float = 0.01) -> Layer:
    """torchvision's MobileNetV3 BatchNorm: ``BatchNorm2d(eps=0.001, momentum=0.01)``
    (:func:`jcnn.models.common.torch_batch_norm` with those defaults)."""
    return torch_batch_norm(eps=eps, momentum=momentum)


def mobilenet_v3_block(
    setting: BlockSetting,
    *,
    batch_norm: BatchNormFactory = mobilenet_v3_batch_norm,
    name: str = "inverted_residual",
) -> Layer:
    """torchvision's MobileNetV3 ``InvertedResidual``: its ``block`` Sequential holds the
    expanding 1x1 conv-BatchNorm-activation (absent when it would not widen), the depthwise one
    (the stride), the optional squeeze-excitation and the linear 1x1 projection; added to the
    input (:func:`jcnn.layers.residual`) when the stride is 1 and the width unchanged.

    Shapes:
        ``(H, W, in) -> (ceil(H / stride), ceil(W / stride), out)``.

    Example:
        >>> block = mobilenet_v3_block((40, 5, 120, 40, True, False, 1))
        >>> block.kind, [k for k, _ in dict(block.children)["block"].children]
        ('residual', ['0', '1', '2', '3'])
    """
    in_channels, kernel, expanded, out_channels, use_se, use_hs, stride = setting
    activation = L.Hardswish if use_hs else L.Relu
    layers = []
    if expanded != in_channels:
        layers.append(conv_norm_act(expanded, 1, activation=activation, norm=batch_norm))
    layers.append(
        conv_norm_act(
            expanded,
            kernel,
            stride=stride,
            groups=expanded,
            activation=activation,
            norm=batch_norm,
        )
    )
    if use_se:
        layers.append(
            squeeze_excitation(
                expanded, make_divisible(expanded // 4), scale_activation=L.Hardsigmoid
            )
        )
    layers.append(conv_norm_act(out_channels, 1, activation=None, norm=batch_norm))
    block = sequential(*layers, name="block")
    return residual_if_shape_kept(block, stride, in_channels, out_channels, name=name)


def mobilenet_v3(
    setting: tuple[BlockSetting, ...],
    last_channel: int,
    num_classes: int = 1000,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    batch_norm: BatchNormFactory = mobilenet_v3_batch_norm,
    name: str = "mobilenet_v3",
) -> Layer:
    """torchvision's ``MobileNetV3`` of ``setting`` blocks (widths ``make_divisible(c *
    width_mult)``): ``features`` ``"0"`` (3x3/2 conv, BatchNorm, hard-swish), the blocks, the
    last 1x1 conv to 6x the last block's width (BatchNorm, hard-swish); ``avgpool``;
    ``classifier``: dense to ``last_channel``, hard-swish, dropout, dense to ``num_classes``.

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; the features are ``(ceil(H / 32), ceil(W / 32), C)``.
    """

    def adjust(c: int) -> int:
        return make_divisible(c * width_mult)

    settings = [
        (adjust(i), k, adjust(e), adjust(o), se, hs, s) for i, k, e, o, se, hs, s in setting
    ]
    features = [conv_norm_act(settings[0][0], 3, stride=2, activation=L.Hardswish, norm=batch_norm)]
    features += [mobilenet_v3_block(s, batch_norm=batch_norm) for s in settings]
    features.append(conv_norm_act(6 * settings[-1][3], 1, activation=L.Hardswish, norm=batch_norm))
    classifier = sequential(
        L.Dense(adjust(last_channel)),
        L.Hardswish(),
        L.Dropout(dropout),
        L.Dense(num_classes),
        name="classifier",
    )
    return L.serial(
        sequential(*features, name="features"), classifier_pool(), classifier, name=name
    )


def mobilenet_v3_large(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's MobileNetV3-Large: 5,483,032 parameters for 1,000 classes. See
    :func:`mobilenet_v3` (``width_mult``, ``dropout``, ``batch_norm``).

    Example:
        >>> net = mobilenet_v3_large()
        >>> jcnn.output_shape(net, (224, 224, 3)), [k for k, _ in net.children]
        ((1000,), ['features', 'avgpool', 'classifier'])
    """
    return mobilenet_v3(
        LARGE_SETTING, LARGE_LAST_CHANNEL, num_classes, name="mobilenet_v3_large", **kwargs
    )


def mobilenet_v3_small(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's MobileNetV3-Small: 2,542,856 parameters for 1,000 classes. See
    :func:`mobilenet_v3`."""
    return mobilenet_v3(
        SMALL_SETTING, SMALL_LAST_CHANNEL, num_classes, name="mobilenet_v3_small", **kwargs
    )
