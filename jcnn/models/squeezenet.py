"""SqueezeNet 1.1 (Iandola et al. 2016) as in torchvision.

A Fire module squeezes the channels with a 1x1 convolution (ReLU) and expands them again with a
1x1 and a 3x3 convolution side by side (each with its ReLU), concatenated
(:func:`jcnn.layers.concat`). Convolutions have biases and there is no BatchNorm. The classifier
is a 1x1 convolution to the classes, ReLU and a global average pool.

Children are keyed as torchvision's modules: ``features`` (``"0"`` the 3x3/2 stem conv, ...,
``"3"`` .. ``"12"`` Fire modules and max pools), ``classifier`` (``"0"`` dropout, ``"1"`` the
1x1 conv, ``"2"`` ReLU, ``"3"`` the pool); a Fire module holds ``squeeze``,
``squeeze_activation``, ``expand1x1``, ``expand1x1_activation``, ``expand3x3``,
``expand3x3_activation`` directly.
"""

from __future__ import annotations

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import sequential
from jcnn.models.googlenet import CEIL_MODE_PADDING


def fire(squeeze: int, expand1x1: int, expand3x3: int, *, name: str = "fire") -> Layer:
    """torchvision's ``Fire``: ``squeeze`` 1x1 + ReLU, then ``concat(expand1x1 1x1 + ReLU,
    expand3x3 3x3 pad 1 + ReLU)``.

    Shapes:
        ``(H, W, C) -> (H, W, expand1x1 + expand3x3)``.

    Example:
        >>> jcnn.output_shape(fire(16, 64, 64), (15, 15, 64))
        (15, 15, 128)
    """
    expand = L.concat(
        L.serial(
            L.Conv(expand1x1, 1).named("expand1x1"),
            L.Relu().named("expand1x1_activation"),
        ).inlined(),
        L.serial(
            L.Conv(expand3x3, 3, padding=1).named("expand3x3"),
            L.Relu().named("expand3x3_activation"),
        ).inlined(),
    ).inlined()
    return L.serial(
        L.Conv(squeeze, 1).named("squeeze"),
        L.Relu().named("squeeze_activation"),
        expand,
        name=name,
    )


def _max_pool() -> Layer:
    """``MaxPool2d(3, 2, ceil_mode=True)``."""
    return L.MaxPool((3, 3), stride=2, padding=CEIL_MODE_PADDING)


def squeezenet1_1(num_classes: int = 1000, *, dropout: float = 0.5) -> Layer:
    """torchvision's SqueezeNet 1.1: 1,235,496 parameters for 1,000 classes.

    ``features``: 3x3/2 conv -> 64 (no padding), ReLU, max pool 3x3/2 (ceil mode), Fire
    16/64/64 x2, max pool, Fire 32/128/128 x2, max pool, Fire 48/192/192 x2, Fire 64/256/256 x2;
    ``classifier``: dropout, 1x1 conv -> ``num_classes``, ReLU, global average pool.

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; needs ``H, W >= 17``.

    Example:
        >>> jcnn.output_shape(squeezenet1_1(), (224, 224, 3))
        (1000,)
    """
    features = sequential(
        L.Conv(64, 3, stride=2),
        L.Relu(),
        _max_pool(),
        fire(16, 64, 64),
        fire(16, 64, 64),
        _max_pool(),
        fire(32, 128, 128),
        fire(32, 128, 128),
        _max_pool(),
        fire(48, 192, 192),
        fire(48, 192, 192),
        fire(64, 256, 256),
        fire(64, 256, 256),
        name="features",
    )
    classifier = sequential(
        L.Dropout(dropout),
        L.Conv(num_classes, 1),
        L.Relu(),
        L.GlobalAvgPool(),
        name="classifier",
    )
    return L.serial(features, classifier, name="squeezenet1_1")
