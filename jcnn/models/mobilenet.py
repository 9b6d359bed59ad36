"""MobileNetV2 (Sandler et al. 2018) as in torchvision.

An inverted residual expands the channels ``t`` times with a 1x1 convolution, filters each channel
with a 3x3 depthwise convolution (``groups`` = channels, carrying the stride), and projects back
with a linear 1x1 convolution (no activation); when the stride is 1 and the width is unchanged
the input is added (:func:`jcnn.layers.residual`). Every convolution is bias-free and followed by
BatchNorm; the activations are ReLU6.

Children are keyed as torchvision's modules: ``features`` (``"0"`` the stem, ``"1"`` ..
``"17"`` the inverted residuals, ``"18"`` the last conv), ``avgpool``, ``classifier`` (``"0"``
dropout, ``"1"`` dense); a block's layers are its ``conv`` Sequential, keyed by position
(``features/1/conv/0/0`` is torchvision's ``features.1.conv.0.0``).
"""

from __future__ import annotations

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import (
    BatchNormFactory,
    classifier_pool,
    conv_norm_act,
    residual_if_shape_kept,
    sequential,
    torch_batch_norm,
)

#: torchvision's ``inverted_residual_setting``: (expansion t, channels c, repeats n, stride s).
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible``: ``value`` rounded to a multiple of ``divisor``, never
    below ``min_value`` (default ``divisor``) nor more than 10% below ``value``.

    Example:
        >>> make_divisible(32 * 0.75), make_divisible(1280 * 1.0), make_divisible(16 * 0.35)
        (24, 1280, 8)
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def inverted_residual(
    in_channels: int,
    out_channels: int,
    stride: int,
    expand_ratio: int,
    *,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "inverted_residual",
) -> Layer:
    """torchvision's ``InvertedResidual``: its ``conv`` Sequential holds the expanding 1x1
    conv-BatchNorm-ReLU6 (absent for ``expand_ratio`` 1), the depthwise 3x3 one (the stride),
    and the linear 1x1 projection's conv and BatchNorm; it is added to the input (a
    :func:`jcnn.layers.residual`) when ``stride == 1`` and ``in_channels == out_channels``.

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), out_channels)``.

    Example:
        >>> block = inverted_residual(24, 24, 1, 6)
        >>> block.kind, [k for k, _ in dict(block.children)["conv"].children]
        ('residual', ['0', '1', '2', '3'])
    """
    hidden = int(round(in_channels * expand_ratio))
    layers = []
    if expand_ratio != 1:
        layers.append(conv_norm_act(hidden, 1, norm=batch_norm))
    layers += [
        conv_norm_act(hidden, 3, stride=stride, groups=hidden, norm=batch_norm),
        L.Conv(out_channels, (1, 1), use_bias=False),
        batch_norm(),
    ]
    conv = sequential(*layers, name="conv")
    return residual_if_shape_kept(conv, stride, in_channels, out_channels, name=name)


def mobilenet_v2(
    num_classes: int = 1000,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> Layer:
    """torchvision's MobileNetV2: 3,504,872 parameters for 1,000 classes (``width_mult`` 1).

    ``features``: ``"0"`` (3x3/2 conv -> 32, BatchNorm, ReLU6), inverted residuals ``"1"`` ..
    ``"17"`` (:data:`INVERTED_RESIDUAL_SETTING`, the first of each group carrying its stride),
    ``"18"`` (1x1 -> 1280, BatchNorm, ReLU6); ``avgpool`` (global average); ``classifier``:
    dropout ``"0"``, dense ``"1"``. Widths are ``make_divisible(c * width_mult)`` (the last conv
    is never narrower than 1280).

    Args:
        num_classes: logits width.
        width_mult: width multiplier (torchvision's ``width_mult``).
        dropout: rate before the classifier's dense layer.
        batch_norm: BatchNorm factory (default PyTorch's conventions, eps 1e-5).

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; the features are ``(ceil(H / 32), ceil(W / 32), 1280)``
        (``(7, 7, 1280)`` at 224x224); any input of at least 1x1 works.

    Example:
        >>> net = mobilenet_v2()
        >>> jcnn.output_shape(net, (224, 224, 3)), [k for k, _ in net.children]
        ((1000,), ['features', 'avgpool', 'classifier'])
    """
    channels = make_divisible(32 * width_mult)
    last_channels = make_divisible(1280 * max(1.0, width_mult))
    features = [conv_norm_act(channels, 3, stride=2, norm=batch_norm)]
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out = make_divisible(c * width_mult)
        for i in range(n):
            features.append(
                inverted_residual(channels, out, s if i == 0 else 1, t, batch_norm=batch_norm)
            )
            channels = out
    features.append(conv_norm_act(last_channels, 1, norm=batch_norm))
    return L.serial(
        sequential(*features, name="features"),
        classifier_pool(),
        sequential(L.Dropout(dropout), L.Dense(num_classes), name="classifier"),
        name="mobilenet_v2",
    )
