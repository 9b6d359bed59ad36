"""ResNets (He et al. 2016) as in torchvision, and the CIFAR-10 ResNet-18 of kuangliu/pytorch-cifar.

A residual block is ``relu(block(x) + shortcut(x))`` built with :func:`jcnn.layers.residual`.
Convolutions before a BatchNorm have no bias (the BatchNorm offset plays its part). When a block
changes the size or the width, the shortcut is a strided 1x1 convolution + BatchNorm
("option B"); otherwise it is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

from jcnn import layers as L
from jcnn.layers.core import Layer


def conv_bn(out_channels: int, kernel_size: int, *, stride: int = 1, relu: bool = True) -> Layer:
    """``kernel_size`` conv without bias (padding ``kernel_size // 2``), BatchNorm, optional ReLU.

    Shapes:
        ``(H, W, C) -> (ceil(H / stride), ceil(W / stride), out_channels)`` for odd kernels.
    """
    layers = [
        L.Conv(
            out_channels,
            (kernel_size, kernel_size),
            stride=stride,
            padding=kernel_size // 2,
            use_bias=False,
        ),
        L.BatchNorm(),
    ]
    if relu:
        layers.append(L.Relu())
    return L.serial(*layers)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> Layer | None:
    """Identity (None) when shapes agree, else 1x1 strided conv without bias + BatchNorm."""
    if stride == 1 and in_channels == out_channels:
        return None
    return conv_bn(out_channels, 1, stride=stride, relu=False)


def basic_block(in_channels: int, channels: int, stride: int = 1) -> Layer:
    """Two 3x3 convs with BatchNorm (stride on the first), residual add, ReLU (expansion 1).

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), channels)``.
    """
    block = L.serial(
        conv_bn(channels, 3, stride=stride), conv_bn(channels, 3, relu=False), name="block"
    )
    return L.serial(L.residual(block, _shortcut(in_channels, channels, stride)), L.Relu())


def bottleneck(in_channels: int, channels: int, stride: int = 1) -> Layer:
    """1x1 reduce, 3x3 (carrying the stride: torchvision's "v1.5"), 1x1 expand to 4x, add, ReLU.

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), 4 * channels)``.
    """
    out = 4 * channels
    block = L.serial(
        conv_bn(channels, 1),
        conv_bn(channels, 3, stride=stride),
        conv_bn(out, 1, relu=False),
        name="block",
    )
    return L.serial(L.residual(block, _shortcut(in_channels, out, stride)), L.Relu())


#: (block kind, blocks per stage) by depth, as in torchvision.
DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def resnet_stages(
    kind: str, blocks: Sequence[int], in_channels: int, widths: Sequence[int] = (64, 128, 256, 512)
) -> tuple[list[Layer], int]:
    """Stages ``layer1`` .. ``layer4``; every stage but the first halves the size in its first block.

    Returns:
        ``(stages, out_channels)``.
    """
    make, expansion = (basic_block, 1) if kind == "basic" else (bottleneck, 4)
    stages, channels = [], in_channels
    for i, (n, width) in enumerate(zip(blocks, widths)):
        stage = []
        for b in range(n):
            stage.append(make(channels, width, 2 if (i > 0 and b == 0) else 1))
            channels = width * expansion
        stages.append(L.serial(*stage, name=f"layer{i + 1}"))
    return stages, channels


def resnet(depth: int = 18, *, num_classes: int = 1000) -> Layer:
    """torchvision's ResNet-``depth`` (18, 34, 50, 101, 152) with the ImageNet stem.

    ``stem``: conv 7x7/2 pad 3 -> 64 (no bias), BatchNorm, ReLU, max-pool 3x3/2 pad 1; stages
    ``layer1``..``layer4`` of widths 64-128-256-512 (times 4 for bottlenecks); global average
    pool; dense ``fc``. Parameters (1,000 classes): ResNet-18 11,689,512; ResNet-34 21,797,672;
    ResNet-50 25,557,032 (BatchNorm running statistics are state, not counted).

    Shapes:
        ``(224, 224, 3) -> (num_classes,)``; 224 -> 112 (stem conv) -> 56 (pool) -> 56, 28, 14, 7.

    Raises:
        ValueError: unknown depth.

    Example:
        >>> jcnn.count_params(resnet(18), (224, 224, 3))
        11689512
    """
    if depth not in DEPTHS:
        raise ValueError(f"resnet depth must be one of {sorted(DEPTHS)}, got {depth!r}")
    kind, blocks = DEPTHS[depth]
    stem = L.serial(
        L.Conv(64, (7, 7), stride=2, padding=3, use_bias=False),
        L.BatchNorm(),
        L.Relu(),
        L.MaxPool((3, 3), stride=2, padding=1),
        name="stem",
    )
    stages, _ = resnet_stages(kind, blocks, 64)
    return L.serial(
        stem, *stages, L.GlobalAvgPool(), L.Dense(num_classes).named("fc"), name=f"resnet{depth}"
    )


def resnet18(num_classes: int = 1000) -> Layer:
    """ResNet-18 (BasicBlocks 2-2-2-2); see :func:`resnet`."""
    return resnet(18, num_classes=num_classes)


def resnet34(num_classes: int = 1000) -> Layer:
    """ResNet-34 (BasicBlocks 3-4-6-3); see :func:`resnet`."""
    return resnet(34, num_classes=num_classes)


def resnet50(num_classes: int = 1000) -> Layer:
    """ResNet-50 (Bottlenecks 3-4-6-3, stride on the 3x3); see :func:`resnet`."""
    return resnet(50, num_classes=num_classes)


def cifar_resnet18(num_classes: int = 10) -> Layer:
    """ResNet-18 for 32x32 inputs (kuangliu/pytorch-cifar): 3x3 stem, no max-pool.

    ``stem``: conv 3x3 pad 1 -> 64 (no bias), BatchNorm, ReLU; BasicBlock stages 2-2-2-2 at
    32, 16, 8, 4; global average pool (kuangliu's ``avg_pool2d(out, 4)`` on the 4x4 map); dense
    ``fc``. 11,173,962 parameters for 10 classes.

    Shapes:
        ``(32, 32, 3) -> (num_classes,)``.
    """
    stem = L.serial(
        L.Conv(64, (3, 3), padding=1, use_bias=False), L.BatchNorm(), L.Relu(), name="stem"
    )
    stages, _ = resnet_stages("basic", (2, 2, 2, 2), 64)
    return L.serial(
        stem, *stages, L.GlobalAvgPool(), L.Dense(num_classes).named("fc"), name="cifar_resnet18"
    )
