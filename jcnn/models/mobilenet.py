"""MobileNetV2 (Sandler et al. 2018) as in torchvision.

An inverted residual expands the channels ``t`` times with a 1x1 convolution, filters each channel
with a 3x3 depthwise convolution (``groups`` = channels, carrying the stride), and projects back
with a linear 1x1 convolution (no activation); when the stride is 1 and the width is unchanged
the input is added (:func:`jcnn.layers.residual`). Every convolution is bias-free and followed by
BatchNorm; the activations are ReLU6.

Layer names follow torchvision where they can (``features``, ``classifier``) and name the parts
of a block otherwise (``expand``, ``depthwise``, ``project``); :func:`torchvision_prefixes` maps
them to torchvision's module prefixes for :func:`jcnn.porting.from_torch`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import (
    BatchNormFactory,
    dropout_linear_classifier,
    features_pool_classifier,
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


def conv_norm_act(
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    activation: Callable[[], Layer] | None = L.Relu6,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "conv_norm_act",
) -> Layer:
    """torchvision's ``Conv2dNormActivation``: conv without bias (padding ``(k - 1) // 2``),
    BatchNorm, optional activation; children ``conv``, ``bn``, ``act``.

    Args:
        out_channels: filters.
        kernel_size: square window (odd).
        stride: conv stride.
        groups: conv feature groups (the input channels for a depthwise conv).
        activation: a layer factory (``L.Relu6``, ``L.Silu``) or None (a linear projection).
        batch_norm: BatchNorm factory (``batch_norm() -> Layer``).
        name: its params key.

    Shapes:
        ``(H, W, C) -> (ceil(H / stride), ceil(W / stride), out_channels)``.

    Example:
        >>> jcnn.output_shape(conv_norm_act(32, 3, stride=2), (224, 224, 3))
        (112, 112, 32)
    """
    layers = [
        L.Conv(
            out_channels,
            (kernel_size, kernel_size),
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            use_bias=False,
        ).named("conv"),
        batch_norm().named("bn"),
    ]
    if activation is not None:
        layers.append(activation().named("act"))
    return L.serial(*layers, name=name)


def inverted_residual(
    in_channels: int,
    out_channels: int,
    stride: int,
    expand_ratio: int,
    *,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "inverted_residual",
) -> Layer:
    """torchvision's ``InvertedResidual``: ``expand`` 1x1 (absent for ``expand_ratio`` 1),
    ``depthwise`` 3x3 (the stride), linear ``project`` 1x1; added to the input (a
    :func:`jcnn.layers.residual`, the parts under ``block``) when ``stride == 1`` and
    ``in_channels == out_channels``.

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), out_channels)``.

    Example:
        >>> block = inverted_residual(24, 24, 1, 6)
        >>> block.kind, [k for k, _ in dict(block.children)["block"].children]
        ('residual', ['expand', 'depthwise', 'project'])
    """
    hidden = int(round(in_channels * expand_ratio))
    parts = []
    if expand_ratio != 1:
        parts.append(conv_norm_act(hidden, 1, batch_norm=batch_norm, name="expand"))
    parts.append(
        conv_norm_act(
            hidden, 3, stride=stride, groups=hidden, batch_norm=batch_norm, name="depthwise"
        )
    )
    parts.append(
        conv_norm_act(out_channels, 1, activation=None, batch_norm=batch_norm, name="project")
    )
    if stride == 1 and in_channels == out_channels:
        return L.residual(L.serial(*parts), name=name)
    return L.serial(*parts, name=name)


def mobilenet_v2(
    num_classes: int = 1000,
    *,
    width_mult: float = 1.0,
    dropout: float = 0.2,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> Layer:
    """torchvision's MobileNetV2: 3,504,872 parameters for 1,000 classes (``width_mult`` 1).

    ``features``: ``stem`` (3x3/2 conv -> 32, BatchNorm, ReLU6), inverted residuals ``block1`` ..
    ``block17`` (:data:`INVERTED_RESIDUAL_SETTING`, the first of each group carrying its
    stride), ``last_conv`` (1x1 -> 1280, BatchNorm, ReLU6); ``avgpool`` (global average);
    ``classifier``: ``dropout``, dense ``linear``. Widths are ``make_divisible(c * width_mult)``
    (the last conv is never narrower than 1280).

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
    features = [conv_norm_act(channels, 3, stride=2, batch_norm=batch_norm, name="stem")]
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        out = make_divisible(c * width_mult)
        for i in range(n):
            features.append(
                inverted_residual(
                    channels,
                    out,
                    s if i == 0 else 1,
                    t,
                    batch_norm=batch_norm,
                    name=f"block{len(features)}",
                )
            )
            channels = out
    features.append(conv_norm_act(last_channels, 1, batch_norm=batch_norm, name="last_conv"))
    classifier = dropout_linear_classifier(dropout, num_classes)
    return features_pool_classifier(features, classifier, "mobilenet_v2")


_CNA = {"conv": 0, "bn": 1}
_BLOCK = re.compile(r"features/block(\d+)/(?:block/)?(expand|depthwise|project)/(conv|bn)")


def torchvision_prefixes(leaf_paths: Sequence[str]) -> dict[str, str]:
    """torchvision's module prefix of each jcnn leaf path of :func:`mobilenet_v2`.

    ``features/stem/conv`` -> ``features.0.0``; ``features/block3/block/expand/bn`` ->
    ``features.3.conv.0.1``; a block's ``project`` conv and BatchNorm are torchvision's
    ``conv.2`` and ``conv.3`` (``conv.1``, ``conv.2`` in ``block1``, which has no ``expand``);
    ``features/last_conv/conv`` -> ``features.18.0``; ``classifier/linear`` ->
    ``classifier.1``. Pass the result as ``prefixes=`` to :func:`jcnn.porting.from_torch`.

    It reads the whole list: whether a block has an ``expand`` (which shifts its other parts'
    indices) and the index of ``last_conv`` (after the last block) come from the paths given, so
    pass all of a network's leaf paths, not a selection.

    Args:
        leaf_paths: ``[leaf.path for leaf in jcnn.porting.torch_leaves(net, input_shape)]``.

    Raises:
        ValueError: a path that is not a leaf of a MobileNetV2 (the message names it).

    Example:
        >>> paths = ["features/block1/depthwise/conv", "features/block1/project/conv",
        ...          "features/block2/expand/bn", "features/block2/project/bn",
        ...          "features/last_conv/conv"]
        >>> for path, prefix in torchvision_prefixes(paths).items():
        ...     print(f"{path:32} {prefix}")
        features/block1/depthwise/conv   features.1.conv.0.0
        features/block1/project/conv     features.1.conv.1
        features/block2/expand/bn        features.2.conv.0.1
        features/block2/project/bn       features.2.conv.3
        features/last_conv/conv          features.3.0
    """
    blocks = [m for m in (_BLOCK.fullmatch(p) for p in leaf_paths) if m]
    expanded = {int(m[1]) for m in blocks if m[2] == "expand"}
    last = max((int(m[1]) for m in blocks), default=None)
    out = {}
    for path in leaf_paths:
        m = _BLOCK.fullmatch(path)
        if m:
            i, part, kind = int(m[1]), m[2], m[3]
            first = 1 if i in expanded else 0  # the depthwise conv's index in ``conv``
            if part == "expand":
                out[path] = f"features.{i}.conv.0.{_CNA[kind]}"
            elif part == "depthwise":
                out[path] = f"features.{i}.conv.{first}.{_CNA[kind]}"
            else:
                out[path] = f"features.{i}.conv.{first + 1 + _CNA[kind]}"
            continue
        m = re.fullmatch(r"features/(stem|last_conv)/(conv|bn)", path)
        if m and (m[1] == "stem" or last is not None):
            index = 0 if m[1] == "stem" else last + 1
            out[path] = f"features.{index}.{_CNA[m[2]]}"
        elif path == "classifier/linear":
            out[path] = "classifier.1"
        else:
            raise ValueError(f"mobilenet_v2 torchvision_prefixes: unrecognised jcnn path {path!r}")
    return out
