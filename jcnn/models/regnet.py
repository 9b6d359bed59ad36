"""RegNetY-400MF (Radosavovic et al. 2020) as in torchvision.

A RegNet block is a ResNet bottleneck without expansion: ``f`` = ``a`` (1x1 conv, BatchNorm,
ReLU), ``b`` (3x3 grouped conv of group width 8, carrying the stride, BatchNorm, ReLU), ``se``
(squeeze-excitation to a quarter of the block's INPUT width), ``c`` (1x1 conv, BatchNorm), added
to the input or its projection ``proj`` (strided 1x1 conv, BatchNorm), then ReLU
(``activation``). BatchNorm has PyTorch's defaults.

Children are keyed as torchvision's modules: ``stem`` (``"0"`` 3x3/2 conv to 32, ``"1"``
BatchNorm, ``"2"`` ReLU), ``trunk_output`` (``block1`` .. ``block4``, whose blocks are keyed
``block1-0``, ``block1-1``, ... as torchvision's), ``avgpool``, ``fc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import (
    BatchNormFactory,
    classifier_pool,
    conv_norm_act,
    squeeze_excitation,
    torch_batch_norm,
)

#: torchvision's ``regnet_y_400mf`` block parameters (``BlockParams.from_init_params(depth=16,
#: w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25)``): per stage (width, blocks);
#: every stage starts with stride 2, group width 8, bottleneck multiplier 1.
Y_400MF: tuple[tuple[int, int], ...] = ((48, 1), (104, 3), (208, 6), (440, 6))


def regnet_block(
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    group_width: int,
    se_ratio: float | None,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "block",
) -> Layer:
    """torchvision's ``ResBottleneckBlock`` (bottleneck multiplier 1): ``relu(proj(x) + f(x))``
    with ``proj`` the identity when the shapes agree.

    Shapes:
        ``(H, W, in) -> (ceil(H / stride), ceil(W / stride), out)``.

    Example:
        >>> block = regnet_block(48, 104, 2, group_width=8, se_ratio=0.25, name="block2-0")
        >>> block.tree_keys, jcnn.output_shape(block, (8, 8, 48))
        (('f', 'proj', 'activation'), (4, 4, 104))
    """
    groups = out_channels // group_width
    parts = [
        conv_norm_act(out_channels, 1, activation=L.Relu, norm=batch_norm).named("a"),
        conv_norm_act(
            out_channels, 3, stride=stride, groups=groups, activation=L.Relu, norm=batch_norm
        ).named("b"),
    ]
    if se_ratio:
        parts.append(
            squeeze_excitation(out_channels, int(round(se_ratio * in_channels)), name="se")
        )
    parts.append(conv_norm_act(out_channels, 1, activation=None, norm=batch_norm).named("c"))
    f = L.serial(*parts, name="f")
    proj = None
    if in_channels != out_channels or stride != 1:
        proj = conv_norm_act(
            out_channels, 1, stride=stride, activation=None, norm=batch_norm, name="proj"
        )
    return L.serial(L.residual(f, proj).inlined(), L.Relu().named("activation"), name=name)


def regnet(
    stages: Sequence[tuple[int, int]],
    num_classes: int = 1000,
    *,
    group_width: int = 8,
    se_ratio: float | None = 0.25,
    stem_width: int = 32,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "regnet",
) -> Layer:
    """torchvision's ``RegNet`` of ``stages`` ``(width, blocks)``, each starting with stride 2.

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; the last stage runs at ``ceil(H / 32)``.
    """
    stem = conv_norm_act(stem_width, 3, stride=2, activation=L.Relu, norm=batch_norm)
    trunk, channels = [], stem_width
    for i, (width, depth) in enumerate(stages, start=1):
        blocks = []
        for b in range(depth):
            blocks.append(
                regnet_block(
                    channels,
                    width,
                    2 if b == 0 else 1,
                    group_width=group_width,
                    se_ratio=se_ratio,
                    batch_norm=batch_norm,
                    name=f"block{i}-{b}",
                )
            )
            channels = width
        trunk.append(L.serial(*blocks, name=f"block{i}"))
    return L.serial(
        stem.named("stem"),
        L.serial(*trunk, name="trunk_output"),
        classifier_pool(),
        L.Dense(num_classes).named("fc"),
        name=name,
    )


def regnet_y_400mf(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's RegNetY-400MF: 4,344,144 parameters for 1,000 classes. See :func:`regnet`.

    Example:
        >>> jcnn.output_shape(regnet_y_400mf(), (224, 224, 3))
        (1000,)
    """
    return regnet(Y_400MF, num_classes, name="regnet_y_400mf", **kwargs)
