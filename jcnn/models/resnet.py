"""ResNets (He et al. 2016) as in torchvision, and the CIFAR-10 ResNet-18 of kuangliu/pytorch-cifar.

A residual block is ``relu(block(x) + shortcut(x))`` built with :func:`jcnn.layers.residual`.
Convolutions before a BatchNorm have no bias (the BatchNorm offset plays its part). When a block
changes the size or the width, the shortcut is a strided 1x1 convolution + BatchNorm
("option B", torchvision's ``downsample``); otherwise it is the identity.

Children are keyed as torchvision's modules: ``conv1``, ``bn1``, ``relu``, ``maxpool``,
``layer1`` .. ``layer4`` (blocks ``"0"``, ``"1"``, ...), ``avgpool``, ``fc``; a block holds its
``conv1``, ``bn1``, ..., ``downsample`` directly (the residual and its body are inlined), so
torchvision's ``layer2.0.downsample.0.weight`` is ``params["layer2"]["0"]["downsample"]["0"]
["kernel"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import BatchNormFactory, classifier_pool, sequential, torch_batch_norm


def _conv(out_channels: int, kernel_size: int, *, stride: int = 1, groups: int = 1) -> Layer:
    """A bias-free ``kernel_size`` conv with padding ``kernel_size // 2`` (torchvision's
    ``conv3x3`` / ``conv1x1``)."""
    return L.Conv(
        out_channels,
        (kernel_size, kernel_size),
        stride=stride,
        padding=kernel_size // 2,
        groups=groups,
        use_bias=False,
    )


def downsample(
    in_channels: int, out_channels: int, stride: int, batch_norm: BatchNormFactory
) -> Layer | None:
    """torchvision's ``downsample``: None (the identity) when the shapes agree, else
    ``Sequential(conv1x1 with the stride, BatchNorm)`` keyed ``"0"``, ``"1"``."""
    if stride == 1 and in_channels == out_channels:
        return None
    return sequential(_conv(out_channels, 1, stride=stride), batch_norm(), name="downsample")


def residual_block(body: Sequence[Layer], shortcut: Layer | None, *, name: str) -> Layer:
    """``relu(body(x) + shortcut(x))`` with every part keyed directly in the block, as in
    torchvision's ``BasicBlock`` / ``Bottleneck`` module: the body's layers by their names
    (``conv1``, ``bn1``, ...), the projection as ``downsample`` (an identity shortcut holds
    nothing), the final ReLU as ``relu``.

    Shapes:
        ``x -> body(x)``; body and shortcut outputs must have the same shape.
    """
    added = L.residual(L.serial(*body).inlined(), shortcut).inlined()
    return L.serial(added, L.Relu().named("relu"), name=name)


def basic_block(
    in_channels: int,
    channels: int,
    stride: int = 1,
    *,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "serial",
) -> Layer:
    """torchvision's ``BasicBlock`` (expansion 1): ``conv1`` 3x3 (the stride), ``bn1``,
    ``relu1``, ``conv2`` 3x3, ``bn2``, added to the input or its ``downsample``, ``relu``;
    ``name`` is its params key (by default counted like any unnamed serial).

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), channels)``.

    Example:
        >>> _, params, _ = jcnn.init_shapes(basic_block(64, 128, 2), (8, 8, 64))
        >>> sorted(k for k in params if params[k])
        ['bn1', 'bn2', 'conv1', 'conv2', 'downsample']
    """
    body = [
        _conv(channels, 3, stride=stride).named("conv1"),
        batch_norm().named("bn1"),
        L.Relu().named("relu1"),
        _conv(channels, 3).named("conv2"),
        batch_norm().named("bn2"),
    ]
    shortcut = downsample(in_channels, channels, stride, batch_norm)
    return residual_block(body, shortcut, name=name)


def bottleneck(
    in_channels: int,
    channels: int,
    stride: int = 1,
    *,
    groups: int = 1,
    width_per_group: int = 64,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "serial",
) -> Layer:
    """torchvision's ``Bottleneck``: ``conv1`` 1x1 reduce, ``conv2`` 3x3 (carrying the stride:
    torchvision's "v1.5"), ``conv3`` 1x1 expand to 4x, each followed by its BatchNorm ``bn1`` ..
    ``bn3`` (and ReLUs ``relu1``, ``relu2``), added to the input or its ``downsample``, ``relu``.

    The inner width is ``int(channels * width_per_group / 64) * groups`` and the 3x3 conv has
    ``groups`` groups, as torchvision's ``Bottleneck``: ResNeXt-50 32x4d is ``groups=32,
    width_per_group=4``, Wide ResNet-50-2 ``width_per_group=128``; the defaults give ResNet's
    ``channels``.

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), 4 * channels)``.

    Example:
        >>> jcnn.output_shape(bottleneck(256, 128, 2, groups=32, width_per_group=4), (8, 8, 256))
        (4, 4, 512)
    """
    out = 4 * channels
    width = int(channels * (width_per_group / 64.0)) * groups
    body = [
        _conv(width, 1).named("conv1"),
        batch_norm().named("bn1"),
        L.Relu().named("relu1"),
        _conv(width, 3, stride=stride, groups=groups).named("conv2"),
        batch_norm().named("bn2"),
        L.Relu().named("relu2"),
        _conv(out, 1).named("conv3"),
        batch_norm().named("bn3"),
    ]
    shortcut = downsample(in_channels, out, stride, batch_norm)
    return residual_block(body, shortcut, name=name)


#: (block type, blocks per stage) by depth, as in torchvision.
DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def resnet_stages(
    block: str,
    blocks: Sequence[int],
    in_channels: int,
    widths: Sequence[int] = (64, 128, 256, 512),
    *,
    groups: int = 1,
    width_per_group: int = 64,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> tuple[list[Layer], int]:
    """Stages ``layer1`` .. ``layer4`` of ``block`` blocks (``"basic"`` or ``"bottleneck"``) keyed ``"0"``, ``"1"``, ... (torchvision's
    ``nn.Sequential``); every stage but the first halves the size in its first block.

    Returns:
        ``(stages, out_channels)``.

    Raises:
        ValueError: ``groups``/``width_per_group`` other than 1/64 with basic blocks
            (torchvision's ``BasicBlock`` supports neither).
    """
    if block == "basic":
        if (groups, width_per_group) != (1, 64):
            raise ValueError(
                f"basic blocks take groups=1 and width_per_group=64 (as torchvision's "
                f"BasicBlock), got groups={groups}, width_per_group={width_per_group}; use "
                "bottleneck blocks (depth 50 or more) for ResNeXt / Wide ResNet"
            )

        def make(c_in, width, stride, name):
            return basic_block(c_in, width, stride, batch_norm=batch_norm, name=name)

        expansion = 1
    else:

        def make(c_in, width, stride, name):
            return bottleneck(
                c_in,
                width,
                stride,
                groups=groups,
                width_per_group=width_per_group,
                batch_norm=batch_norm,
                name=name,
            )

        expansion = 4
    stages, channels = [], in_channels
    for i, (n, width) in enumerate(zip(blocks, widths)):
        stage = []
        for b in range(n):
            stage.append(make(channels, width, 2 if (i > 0 and b == 0) else 1, str(b)))
            channels = width * expansion
        stages.append(L.serial(*stage, name=f"layer{i + 1}"))
    return stages, channels


def resnet(
    depth: int = 18,
    *,
    num_classes: int = 1000,
    groups: int = 1,
    width_per_group: int = 64,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str | None = None,
) -> Layer:
    """torchvision's ResNet-``depth`` (18, 34, 50, 101, 152) with the ImageNet stem.

    ``conv1`` 7x7/2 pad 3 -> 64 (no bias), ``bn1``, ``relu``, ``maxpool`` 3x3/2 pad 1; stages
    ``layer1``..``layer4`` of widths 64-128-256-512 (times 4 for bottlenecks); ``avgpool``
    (global average); dense ``fc``. Parameters (1,000 classes): ResNet-18 11,689,512; ResNet-34 21,797,672;
    ResNet-50 25,557,032 (BatchNorm running statistics are state, not counted).
    ``groups``/``width_per_group`` make the bottlenecks ResNeXt or wide ones (see
    :func:`bottleneck`); ``batch_norm`` is the BatchNorm factory (default PyTorch's conventions,
    :func:`jcnn.models.common.torch_batch_norm`).

    Shapes:
        ``(224, 224, 3) -> (num_classes,)``; 224 -> 112 (stem conv) -> 56 (pool) -> 56, 28, 14, 7.

    Raises:
        ValueError: unknown depth.

    Example:
        >>> jcnn.count_params(resnet(18), (224, 224, 3))
        11689512
        >>> _, params, _ = jcnn.init_shapes(resnet(18), (224, 224, 3))
        >>> params["layer1"]["0"]["conv1"]["kernel"].shape  # torchvision's layer1.0.conv1.weight
        (3, 3, 64, 64)
    """
    if depth not in DEPTHS:
        raise ValueError(f"resnet depth must be one of {sorted(DEPTHS)}, got {depth!r}")
    block_type, blocks = DEPTHS[depth]
    stem = [
        L.Conv(64, (7, 7), stride=2, padding=3, use_bias=False).named("conv1"),
        batch_norm().named("bn1"),
        L.Relu().named("relu"),
        L.MaxPool((3, 3), stride=2, padding=1).named("maxpool"),
    ]
    stages, _ = resnet_stages(
        block_type,
        blocks,
        64,
        groups=groups,
        width_per_group=width_per_group,
        batch_norm=batch_norm,
    )
    return L.serial(
        *stem,
        *stages,
        classifier_pool(),
        L.Dense(num_classes).named("fc"),
        name=name or f"resnet{depth}",
    )


def resnet18(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """ResNet-18 (BasicBlocks 2-2-2-2); see :func:`resnet`."""
    return resnet(18, num_classes=num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """ResNet-34 (BasicBlocks 3-4-6-3); see :func:`resnet`."""
    return resnet(34, num_classes=num_classes, **kwargs)


def resnet50(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """ResNet-50 (Bottlenecks 3-4-6-3, stride on the 3x3); see :func:`resnet`."""
    return resnet(50, num_classes=num_classes, **kwargs)


def resnet101(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """ResNet-101 (Bottlenecks 3-4-23-3); 44,549,160 parameters. See :func:`resnet`."""
    return resnet(101, num_classes=num_classes, **kwargs)


def resnet152(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """ResNet-152 (Bottlenecks 3-8-36-3); 60,192,808 parameters. See :func:`resnet`."""
    return resnet(152, num_classes=num_classes, **kwargs)


def resnext50_32x4d(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """ResNeXt-50 32x4d (Xie et al. 2017): ResNet-50 whose 3x3 convs have 32 groups of 4 channels
    per 64 (inner widths 128-256-512-1024); 25,028,904 parameters. See :func:`resnet`.

    Example:
        >>> jcnn.count_params(resnext50_32x4d(), (224, 224, 3))
        25028904
    """
    return resnet(
        50,
        num_classes=num_classes,
        groups=32,
        width_per_group=4,
        name="resnext50_32x4d",
        **kwargs,
    )


def wide_resnet50_2(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis 2016, torchvision's variant): ResNet-50 with twice
    the inner width of every bottleneck (128-256-512-1024); 68,883,240 parameters. See
    :func:`resnet`.
    """
    return resnet(
        50, num_classes=num_classes, width_per_group=128, name="wide_resnet50_2", **kwargs
    )


def cifar_resnet18(
    num_classes: int = 10, *, batch_norm: BatchNormFactory = torch_batch_norm
) -> Layer:
    """ResNet-18 for 32x32 inputs (kuangliu/pytorch-cifar): 3x3 stem, no max-pool.

    ``conv1`` 3x3 pad 1 -> 64 (no bias), ``bn1``, ``relu``; BasicBlock stages ``layer1`` ..
    ``layer4`` (2-2-2-2 at 32, 16, 8, 4); ``avgpool`` (kuangliu's ``avg_pool2d(out, 4)`` on the
    4x4 map); dense ``fc``. 11,173,962 parameters for 10 classes. Named as torchvision's
    ResNet-18 (kuangliu calls the projection ``shortcut`` and the head ``linear``).

    Shapes:
        ``(32, 32, 3) -> (num_classes,)``.
    """
    stem = [
        L.Conv(64, (3, 3), padding=1, use_bias=False).named("conv1"),
        batch_norm().named("bn1"),
        L.Relu().named("relu"),
    ]
    stages, _ = resnet_stages("basic", (2, 2, 2, 2), 64, batch_norm=batch_norm)
    return L.serial(
        *stem, *stages, classifier_pool(), L.Dense(num_classes).named("fc"), name="cifar_resnet18"
    )
