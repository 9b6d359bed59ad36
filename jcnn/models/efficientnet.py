"""EfficientNet-B0 .. B4 (Tan & Le 2019) as in torchvision.

Its MBConv block is MobileNetV2's inverted residual with SiLU activations, a squeeze-excitation
gate after the depthwise convolution (:func:`jcnn.models.common.squeeze_excitation`, squeezing
to a quarter of the block's INPUT channels) and stochastic depth on the residual branch
(:func:`jcnn.layers.StochasticDepth`, ``"row"`` mode). Like torchvision, the drop probability
grows linearly with the block's index over all 16 blocks, ``p * i / 16`` for block ``i = 0 ..
15`` (it only acts in the blocks with a residual connection). B0's BatchNorm is PyTorch's
default (eps 1e-5, momentum 0.1); torchvision only changes it from B5 on.

Children are keyed as torchvision's modules: ``features`` (``"0"`` the stem, ``"1"`` ..
``"7"`` the stages, ``"8"`` the last conv), ``avgpool``, ``classifier`` (``"0"`` dropout,
``"1"`` dense); a block's layers are its ``block`` Sequential, keyed by position
(``features/1/0/block/0/0`` is torchvision's ``features.1.0.block.0.0``).
"""

from __future__ import annotations

import math
from typing import Any

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import (
    BatchNormFactory,
    classifier_pool,
    conv_norm_act,
    sequential,
    squeeze_excitation,
    torch_batch_norm,
)
from jcnn.models.mobilenet import make_divisible

#: torchvision's B0 stages: (expand ratio, kernel, stride, in channels, out channels, blocks).
B0_SETTING: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)


def mbconv(
    in_channels: int,
    out_channels: int,
    *,
    expand_ratio: float,
    kernel_size: int,
    stride: int,
    stochastic_depth_prob: float,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "mbconv",
) -> Layer:
    """torchvision's ``MBConv``: its ``block`` Sequential holds the expanding 1x1
    conv-BatchNorm-SiLU (absent when it would not widen), the depthwise ``kernel_size`` one (the
    stride), a squeeze-excitation to ``max(1, in_channels // 4)`` channels (SiLU, sigmoid gate;
    its ``fc1``, ``fc2``) and the linear 1x1 projection's conv and BatchNorm. With
    ``stride == 1`` and ``in_channels == out_channels`` it is a :func:`jcnn.layers.residual`
    whose branch ends in ``stochastic_depth``, both keyed directly in the block.

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), out_channels)``.

    Example:
        >>> block = mbconv(24, 24, expand_ratio=6, kernel_size=3, stride=1,
        ...                stochastic_depth_prob=0.1)
        >>> block.tree_keys, [k for k, _ in block.at("block").children]
        (('block', 'stochastic_depth', 'shortcut'), ['0', '1', '2', '3'])
        >>> jcnn.count_params(block, (8, 8, 24))  # convs 3456 + 1296 + 3456, SE 1878, BN 624
        10710
    """
    expanded = make_divisible(in_channels * expand_ratio)
    layers = []
    if expanded != in_channels:
        layers.append(conv_norm_act(expanded, 1, activation=L.Silu, norm=batch_norm))
    layers += [
        conv_norm_act(
            expanded,
            kernel_size,
            stride=stride,
            groups=expanded,
            activation=L.Silu,
            norm=batch_norm,
        ),
        squeeze_excitation(expanded, max(1, in_channels // 4), activation=L.Silu),
        conv_norm_act(out_channels, 1, activation=None, norm=batch_norm),
    ]
    block = sequential(*layers, name="block")
    if stride == 1 and in_channels == out_channels:
        depth = L.StochasticDepth(stochastic_depth_prob, "row").named("stochastic_depth")
        return L.residual(L.serial(block, depth).inlined(), name=name)
    return L.serial(block, name=name)


def efficientnet(
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    num_classes: int = 1000,
    *,
    dropout: float = 0.2,
    stochastic_depth_prob: float = 0.2,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "efficientnet",
) -> Layer:
    """torchvision's ``EfficientNet`` of :data:`B0_SETTING` scaled by ``width_mult`` (channels
    ``make_divisible(c * width_mult)``) and ``depth_mult`` (blocks ``ceil(n * depth_mult)``).

    ``features``: ``"0"`` (3x3/2 conv, BatchNorm, SiLU), stages ``"1"`` .. ``"7"`` of MBConv
    blocks ``"0"``, ``"1"``, ... (the first block of a stage carrying its stride), ``"8"`` (1x1
    to 4x the last stage's width, BatchNorm, SiLU); ``avgpool`` (global average);
    ``classifier``: dropout ``"0"``, dense ``"1"``.

    Args:
        width_mult, depth_mult: torchvision's compound-scaling factors (B0 1.0, 1.0).
        num_classes: logits width.
        dropout: rate before the classifier's dense layer.
        stochastic_depth_prob: the stochastic-depth probability ``p``; block ``i`` of the ``n``
            blocks drops its branch with probability ``p * i / n`` (torchvision's spread).
        batch_norm: BatchNorm factory (default PyTorch's conventions, eps 1e-5, as B0-B4's).
        name: the model's name.

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; the features are ``(ceil(H / 32), ceil(W / 32),
        4 * make_divisible(320 * width_mult))``.
    """
    setting = [
        (
            t,
            k,
            stride,
            make_divisible(in_ch * width_mult),
            make_divisible(out_ch * width_mult),
            int(math.ceil(n * depth_mult)),
        )
        for t, k, stride, in_ch, out_ch, n in B0_SETTING
    ]
    total = sum(row[-1] for row in setting)
    stem_channels = setting[0][3]
    features = [conv_norm_act(stem_channels, 3, stride=2, activation=L.Silu, norm=batch_norm)]
    index = 0
    for t, k, stride, in_ch, out_ch, n in setting:
        stage = []
        for b in range(n):
            stage.append(
                mbconv(
                    in_ch if b == 0 else out_ch,
                    out_ch,
                    expand_ratio=t,
                    kernel_size=k,
                    stride=stride if b == 0 else 1,
                    stochastic_depth_prob=stochastic_depth_prob * index / total,
                    batch_norm=batch_norm,
                )
            )
            index += 1
        features.append(sequential(*stage))
    last = 4 * setting[-1][4]
    features.append(conv_norm_act(last, 1, activation=L.Silu, norm=batch_norm))
    return L.serial(
        sequential(*features, name="features"),
        classifier_pool(),
        sequential(L.Dropout(dropout), L.Dense(num_classes), name="classifier"),
        name=name,
    )


def efficientnet_b0(
    num_classes: int = 1000,
    *,
    dropout: float = 0.2,
    stochastic_depth_prob: float = 0.2,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> Layer:
    """torchvision's EfficientNet-B0: 5,288,548 parameters for 1,000 classes.

    ``features``: ``"0"`` (3x3/2 conv -> 32, BatchNorm, SiLU), stages ``"1"`` .. ``"7"`` of
    MBConv blocks ``"0"``, ``"1"``, ... (:data:`B0_SETTING`, the first block of a stage carrying
    its stride), ``"8"`` (1x1 -> 1280, BatchNorm, SiLU); ``avgpool`` (global average);
    ``classifier``: dropout ``"0"``, dense ``"1"``.

    Args:
        num_classes: logits width.
        dropout: rate before the classifier's dense layer.
        stochastic_depth_prob: the stochastic-depth probability ``p``; block ``i`` of the 16
            drops its branch with probability ``p * i / 16`` (torchvision's spread).
        batch_norm: BatchNorm factory (default PyTorch's conventions, eps 1e-5, as B0's).

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; the features are ``(ceil(H / 32), ceil(W / 32), 1280)``
        (``(7, 7, 1280)`` at 224x224).

    Example:
        >>> net = efficientnet_b0()
        >>> jcnn.output_shape(net, (224, 224, 3)), [k for k, _ in net.children]
        ((1000,), ['features', 'avgpool', 'classifier'])
        >>> net.at("features/1/0/block/0/0").kind  # torchvision's features.1.0.block.0.0
        'Conv'
    """
    return efficientnet(
        1.0,
        1.0,
        num_classes,
        dropout=dropout,
        stochastic_depth_prob=stochastic_depth_prob,
        batch_norm=batch_norm,
        name="efficientnet_b0",
    )


#: torchvision's B1-B4: name -> (width_mult, depth_mult, dropout); BatchNorm as B0's.
SCALED: dict[str, tuple[float, float, float]] = {
    "efficientnet_b1": (1.0, 1.1, 0.2),
    "efficientnet_b2": (1.1, 1.2, 0.3),
    "efficientnet_b3": (1.2, 1.4, 0.3),
    "efficientnet_b4": (1.4, 1.8, 0.4),
}


def _scaled(name: str, num_classes: int, **kwargs: Any) -> Layer:
    width_mult, depth_mult, dropout = SCALED[name]
    kwargs.setdefault("dropout", dropout)
    return efficientnet(width_mult, depth_mult, num_classes, name=name, **kwargs)


def efficientnet_b1(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's EfficientNet-B1 (depth x1.1, dropout 0.2): 7,794,184 parameters. See
    :func:`efficientnet` (``dropout``, ``stochastic_depth_prob``, ``batch_norm``)."""
    return _scaled("efficientnet_b1", num_classes, **kwargs)


def efficientnet_b2(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's EfficientNet-B2 (width x1.1, depth x1.2, dropout 0.3): 9,109,994
    parameters. See :func:`efficientnet`."""
    return _scaled("efficientnet_b2", num_classes, **kwargs)


def efficientnet_b3(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's EfficientNet-B3 (width x1.2, depth x1.4, dropout 0.3): 12,233,232
    parameters. See :func:`efficientnet`."""
    return _scaled("efficientnet_b3", num_classes, **kwargs)


def efficientnet_b4(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's EfficientNet-B4 (width x1.4, depth x1.8, dropout 0.4): 19,341,616
    parameters. See :func:`efficientnet`."""
    return _scaled("efficientnet_b4", num_classes, **kwargs)
