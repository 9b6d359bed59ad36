"""MNASNet 1.0 (Tan et al. 2019, the B1 variant) as in torchvision.

Inverted residuals as MobileNetV2's (1x1 expand, ReLU, depthwise 3x3 or 5x5 carrying the stride,
ReLU, linear 1x1 projection; added to the input when the stride is 1 and the width unchanged),
always expanding, with ReLU (not ReLU6). Its BatchNorm has PyTorch's eps 1e-5 and momentum
``1 - 0.9997`` (:func:`mnasnet_batch_norm`).

Children are keyed as torchvision's modules: ``layers`` (``"0"`` .. ``"7"`` the stem: conv,
BatchNorm, ReLU, depthwise conv, BatchNorm, ReLU, 1x1 conv, BatchNorm; ``"8"`` .. ``"13"``
the stacks of inverted residuals ``"0"``, ``"1"``, ..., each holding its ``layers``
Sequential; ``"14"`` .. ``"16"`` the last 1x1 conv, BatchNorm, ReLU), then the global average
pool and ``classifier`` (``"0"`` dropout, ``"1"`` dense).
"""

from __future__ import annotations

from typing import Any

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import (
    BatchNormFactory,
    classifier_pool,
    residual_if_shape_kept,
    sequential,
    torch_batch_norm,
)

#: torchvision's stacks: (kernel, stride, expansion, repeats), between widths
#: ``depths[i + 1] -> depths[i + 2]`` of :data:`DEPTHS`.
STACKS: tuple[tuple[int, int, int, int], ...] = (
    (3, 2, 3, 3),
    (5, 2, 3, 3),
    (5, 2, 6, 3),
    (3, 1, 6, 2),
    (5, 2, 6, 4),
    (3, 1, 6, 1),
)
#: torchvision's ``_get_depths(1.0)``.
DEPTHS: tuple[int, ...] = (32, 16, 24, 40, 80, 96, 192, 320)


def mnasnet_batch_norm(*, eps: float = 1e-5, momentum: float = 1 - 0.9997) -> Layer:
    """torchvision's MNASNet BatchNorm: ``BatchNorm2d(momentum=1 - 0.9997)``."""
    return torch_batch_norm(eps=eps, momentum=momentum)


def round_to_multiple_of(value: float, divisor: int, round_up_bias: float = 0.9) -> int:
    """torchvision's ``_round_to_multiple_of``: ``value`` to a multiple of ``divisor``, rounding
    up unless within 10% above the lower multiple."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new if new >= round_up_bias * value else new + divisor


def mnasnet_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    expansion: int,
    *,
    batch_norm: BatchNormFactory = mnasnet_batch_norm,
    name: str = "inverted_residual",
) -> Layer:
    """torchvision's MNASNet ``_InvertedResidual``: its ``layers`` Sequential (1x1 conv to
    ``in_channels * expansion``, BatchNorm, ReLU, depthwise ``kernel_size`` conv with the
    stride, BatchNorm, ReLU, 1x1 conv, BatchNorm), plus the input when shapes agree.

    Shapes:
        ``(H, W, in) -> (ceil(H / stride), ceil(W / stride), out)``.
    """
    mid = in_channels * expansion
    body = sequential(
        L.Conv(mid, 1, use_bias=False),
        batch_norm(),
        L.Relu(),
        L.Conv(
            mid, kernel_size, stride=stride, padding=kernel_size // 2, groups=mid, use_bias=False
        ),
        batch_norm(),
        L.Relu(),
        L.Conv(out_channels, 1, use_bias=False),
        batch_norm(),
        name="layers",
    )
    return residual_if_shape_kept(body, stride, in_channels, out_channels, name=name)


def mnasnet(
    alpha: float = 1.0,
    num_classes: int = 1000,
    *,
    dropout: float = 0.2,
    batch_norm: BatchNormFactory = mnasnet_batch_norm,
    name: str = "mnasnet",
) -> Layer:
    """torchvision's ``MNASNet(alpha)`` (widths ``round_to_multiple_of(d * alpha, 8)``).

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; the features are ``(ceil(H / 32), ceil(W / 32), 1280)``.
    """
    depths = [round_to_multiple_of(d * alpha, 8) for d in DEPTHS]
    layers = [
        L.Conv(depths[0], 3, stride=2, padding=1, use_bias=False),
        batch_norm(),
        L.Relu(),
        L.Conv(depths[0], 3, padding=1, groups=depths[0], use_bias=False),
        batch_norm(),
        L.Relu(),
        L.Conv(depths[1], 1, use_bias=False),
        batch_norm(),
    ]
    for i, (kernel, stride, expansion, repeats) in enumerate(STACKS):
        c_in, c_out = depths[i + 1], depths[i + 2]
        blocks = [
            mnasnet_block(
                c_in if b == 0 else c_out,
                c_out,
                kernel,
                stride if b == 0 else 1,
                expansion,
                batch_norm=batch_norm,
                name=str(b),
            )
            for b in range(repeats)
        ]
        layers.append(L.serial(*blocks))
    layers += [L.Conv(1280, 1, use_bias=False), batch_norm(), L.Relu()]
    return L.serial(
        sequential(*layers, name="layers"),
        classifier_pool(),
        sequential(L.Dropout(dropout), L.Dense(num_classes), name="classifier"),
        name=name,
    )


def mnasnet1_0(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's MNASNet 1.0: 4,383,312 parameters for 1,000 classes. See :func:`mnasnet`.

    Example:
        >>> jcnn.output_shape(mnasnet1_0(), (224, 224, 3))
        (1000,)
    """
    return mnasnet(1.0, num_classes, name="mnasnet1_0", **kwargs)
