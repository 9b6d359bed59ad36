"""VGG-11/13/16/19 (Simonyan & Zisserman 2015), with or without BatchNorm, as in torchvision.

Every convolution is 3x3 with padding 1 (size-preserving) and a bias, followed by (BatchNorm
and) ReLU; five 2x2 max-pools halve the size: 224 -> 7. ``M`` in a configuration is a max-pool.

Children are keyed as torchvision's modules: ``features`` and ``classifier`` are
``nn.Sequential``s keyed by position, parameter-free layers included (``features/0`` the first
conv, ``features/2`` the second in VGG-16, ``classifier/6`` the last dense layer), with
``avgpool`` and ``flatten`` between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import BatchNormFactory, sequential, torch_batch_norm

#: torchvision's configurations "A", "B", "D", "E" by depth (number of weight layers).
CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip

#: ``AdaptiveAvgPool2d((7, 7))`` target: the classifier always sees 7*7*512 = 25,088 values.
POOLED_SIZE = (7, 7)


def _norm_factory(batch_norm: bool | BatchNormFactory) -> BatchNormFactory | None:
    if batch_norm is True:
        return torch_batch_norm
    if batch_norm is False or batch_norm is None:
        return None
    if not callable(batch_norm):
        raise TypeError(
            f"vgg batch_norm must be a bool or a BatchNorm factory (e.g. "
            f"jcnn.models.common.torch_batch_norm), got {batch_norm!r}"
        )
    return batch_norm


def vgg_features(
    config: Sequence[int | str], *, batch_norm: bool | BatchNormFactory = False
) -> Layer:
    """The convolutional part: 3x3 pad-1 conv (+ BatchNorm) + ReLU per int, 2x2 max-pool per "M",
    keyed by position (torchvision's ``features`` Sequential).

    ``batch_norm``: False (none), True (PyTorch's conventions,
    :func:`jcnn.models.common.torch_batch_norm`) or a BatchNorm factory.

    Shapes:
        ``(H, W, C) -> (H / 2^m, W / 2^m, last width)`` for ``m`` pools (floor at each pool).
    """
    norm = _norm_factory(batch_norm)
    layers: list[Layer] = []
    for item in config:
        if item == "M":
            layers.append(L.MaxPool((2, 2)))
            continue
        layers.append(L.Conv(int(item), (3, 3), padding=1))
        if norm is not None:
            layers.append(norm())
        layers.append(L.Relu())
    return sequential(*layers, name="features")


def vgg(
    depth: int = 16, *, batch_norm: bool | BatchNormFactory = False, num_classes: int = 1000
) -> Layer:
    """VGG-``depth`` as in torchvision: ``features``, ``avgpool``, flatten, ``classifier``.

    The classifier is dense 4096, ReLU, dropout 0.5, dense 4096, ReLU, dropout 0.5, dense
    ``num_classes`` (torchvision's order: dropout after each ReLU), keyed ``"0"`` .. ``"6"``:
    the head is ``classifier/6``. ``avgpool`` is torchvision's
    ``AdaptiveAvgPool2d((7, 7))`` (:func:`jcnn.layers.AdaptiveAvgPool`): it takes any feature
    size to 7x7, so every input from 32x32 up gives the same classifier (at 224x224 the features
    are already 7x7 and it is the identity; at 64x64 they are 2x2 and cells repeat). With
    ``batch_norm`` a BatchNorm follows every convolution (torchvision keeps the conv bias there,
    which is why VGG-11-BN has 5,504 = 2 * 2,752 more parameters than VGG-11).

    Parameters (1,000 classes): VGG-11 132,863,336; VGG-13 133,047,848; VGG-16 138,357,544;
    VGG-19 143,667,240 (flatten 25,088 -> 4096 -> 4096 -> 1000 is 123,642,856 of them).

    Args:
        depth: 11, 13, 16 or 19.
        batch_norm: insert BatchNorm after every convolution: True (PyTorch's conventions) or a
            BatchNorm factory (``batch_norm() -> Layer``).
        num_classes: logits width.

    Shapes:
        ``(H, W, 3) -> (num_classes,)`` for ``H, W >= 32``; features ``(H // 32, W // 32, 512)``
        (``(7, 7, 512)`` at 224x224), ``(7, 7, 512)`` after ``avgpool``.

    Raises:
        ValueError: unknown depth.

    Example:
        >>> jcnn.output_shape(vgg(19), (224, 224, 3))
        (1000,)
        >>> [k for k, _ in vgg(11).children], [k for k, _ in vgg(11).children[-1][1].children]
        (['features', 'avgpool', 'flatten', 'classifier'], ['0', '1', '2', '3', '4', '5', '6'])
    """
    if depth not in CONFIGS:
        raise ValueError(f"vgg depth must be one of {sorted(CONFIGS)}, got {depth!r}")
    config = CONFIGS[depth]
    name = f"vgg{depth}_bn" if _norm_factory(batch_norm) else f"vgg{depth}"
    classifier = sequential(
        L.Dense(4096),
        L.Relu(),
        L.Dropout(0.5),
        L.Dense(4096),
        L.Relu(),
        L.Dropout(0.5),
        L.Dense(num_classes),
        name="classifier",
    )
    return L.serial(
        vgg_features(config, batch_norm=batch_norm),
        L.AdaptiveAvgPool(POOLED_SIZE).named("avgpool"),
        L.Flatten().named("flatten"),
        classifier,
        name=name,
    )


def vgg11(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """VGG-11 (configuration "A"); see :func:`vgg`."""
    return vgg(11, num_classes=num_classes, **kwargs)


def vgg13(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """VGG-13 (configuration "B"); see :func:`vgg`."""
    return vgg(13, num_classes=num_classes, **kwargs)


def vgg16(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """VGG-16 (configuration "D"); see :func:`vgg`."""
    return vgg(16, num_classes=num_classes, **kwargs)


def vgg19(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """VGG-19 (configuration "E", the course's example); see :func:`vgg`."""
    return vgg(19, num_classes=num_classes, **kwargs)


def vgg11_bn(num_classes: int = 1000, *, batch_norm: BatchNormFactory = torch_batch_norm) -> Layer:
    """VGG-11 with BatchNorm; see :func:`vgg`."""
    return vgg(11, batch_norm=batch_norm, num_classes=num_classes)


def vgg13_bn(num_classes: int = 1000, *, batch_norm: BatchNormFactory = torch_batch_norm) -> Layer:
    """VGG-13 with BatchNorm; see :func:`vgg`."""
    return vgg(13, batch_norm=batch_norm, num_classes=num_classes)


def vgg16_bn(num_classes: int = 1000, *, batch_norm: BatchNormFactory = torch_batch_norm) -> Layer:
    """VGG-16 with BatchNorm; see :func:`vgg`."""
    return vgg(16, batch_norm=batch_norm, num_classes=num_classes)


def vgg19_bn(num_classes: int = 1000, *, batch_norm: BatchNormFactory = torch_batch_norm) -> Layer:
    """VGG-19 with BatchNorm; see :func:`vgg`."""
    return vgg(19, batch_norm=batch_norm, num_classes=num_classes)
