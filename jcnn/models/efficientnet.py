"""EfficientNet-B0 (Tan & Le 2019) as in torchvision.

Its MBConv block is MobileNetV2's inverted residual with SiLU activations, a squeeze-excitation
gate after the depthwise convolution (:func:`jcnn.layers.squeeze_excitation`, squeezing to a
quarter of the block's INPUT channels) and stochastic depth on the residual branch
(:func:`jcnn.layers.StochasticDepth`, ``"row"`` mode). Like torchvision, the drop probability
grows linearly with the block's index over all 16 blocks, ``p * i / 16`` for block ``i = 0 ..
15`` (it only acts in the blocks with a residual connection). B0's BatchNorm is PyTorch's
default (eps 1e-5, momentum 0.1); torchvision only changes it from B5 on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import (
    BatchNormFactory,
    dropout_linear_classifier,
    features_pool_classifier,
    torch_batch_norm,
)
from jcnn.models.mobilenet import conv_norm_act, make_divisible

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
    """torchvision's ``MBConv``: ``expand`` 1x1 (absent when it would not widen), ``depthwise``
    ``kernel_size`` (the stride), ``se`` squeeze-excitation to ``max(1, in_channels // 4)``
    channels (SiLU, sigmoid gate), linear ``project`` 1x1. With ``stride == 1`` and
    ``in_channels == out_channels`` it is a :func:`jcnn.layers.residual` whose branch ends in
    ``stochastic_depth``.

    Shapes:
        ``(H, W, in_channels) -> (ceil(H / stride), ceil(W / stride), out_channels)``.

    Example:
        >>> block = mbconv(24, 24, expand_ratio=6, kernel_size=3, stride=1,
        ...                stochastic_depth_prob=0.1)
        >>> [k for k, _ in dict(block.children)["block"].children]
        ['expand', 'depthwise', 'se', 'project', 'stochastic_depth']
        >>> jcnn.count_params(block, (8, 8, 24))  # convs 3456 + 1296 + 3456, SE 1878, BN 624
        10710
    """
    expanded = make_divisible(in_channels * expand_ratio)
    parts = []
    if expanded != in_channels:
        parts.append(
            conv_norm_act(expanded, 1, activation=L.Silu, batch_norm=batch_norm, name="expand")
        )
    parts += [
        conv_norm_act(
            expanded,
            kernel_size,
            stride=stride,
            groups=expanded,
            activation=L.Silu,
            batch_norm=batch_norm,
            name="depthwise",
        ),
        L.squeeze_excitation(expanded, max(1, in_channels // 4), activation=L.Silu, name="se"),
        conv_norm_act(out_channels, 1, activation=None, batch_norm=batch_norm, name="project"),
    ]
    if stride == 1 and in_channels == out_channels:
        depth = L.StochasticDepth(stochastic_depth_prob, "row").named("stochastic_depth")
        return L.residual(L.serial(*parts, depth), name=name)
    return L.serial(*parts, name=name)


def efficientnet_b0(
    num_classes: int = 1000,
    *,
    dropout: float = 0.2,
    stochastic_depth_prob: float = 0.2,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> Layer:
    """torchvision's EfficientNet-B0: 5,288,548 parameters for 1,000 classes.

    ``features``: ``stem`` (3x3/2 conv -> 32, BatchNorm, SiLU), stages ``stage1`` .. ``stage7``
    of MBConv blocks ``block0``, ``block1``, ... (:data:`B0_SETTING`, the first block of a stage
    carrying its stride), ``last_conv`` (1x1 -> 1280, BatchNorm, SiLU); ``avgpool`` (global
    average); ``classifier``: ``dropout``, dense ``linear``.

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
    """
    total = sum(setting[-1] for setting in B0_SETTING)
    stem_channels = B0_SETTING[0][3]
    features = [
        conv_norm_act(
            stem_channels, 3, stride=2, activation=L.Silu, batch_norm=batch_norm, name="stem"
        )
    ]
    index = 0
    for s, (t, k, stride, in_ch, out_ch, n) in enumerate(B0_SETTING, start=1):
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
                    name=f"block{b}",
                )
            )
            index += 1
        features.append(L.serial(*stage, name=f"stage{s}"))
    last = 4 * B0_SETTING[-1][4]
    features.append(
        conv_norm_act(last, 1, activation=L.Silu, batch_norm=batch_norm, name="last_conv")
    )
    classifier = dropout_linear_classifier(dropout, num_classes)
    return features_pool_classifier(features, classifier, "efficientnet_b0")


_CNA = {"conv": 0, "bn": 1}
_BLOCK = re.compile(
    r"features/stage(\d+)/block(\d+)/(?:block/)?"
    r"(?:(expand|depthwise|project)/(conv|bn)|se/(fc1|fc2))"
)


def torchvision_prefixes(leaf_paths: Sequence[str]) -> dict[str, str]:
    """torchvision's module prefix of each jcnn leaf path of :func:`efficientnet_b0`.

    ``features/stem/bn`` -> ``features.0.1``; ``features/stage2/block1/block/expand/conv`` ->
    ``features.2.1.block.0.0``; a block's parts are torchvision's ``block.0`` .. ``block.3``
    (``expand``, ``depthwise``, ``se``, ``project``; one fewer without ``expand``), the
    squeeze-excitation's ``fc1`` / ``fc2`` keep their names; ``features/last_conv/conv`` ->
    ``features.8.0``; ``classifier/linear`` -> ``classifier.1``.

    It reads the whole list: whether a block has an ``expand`` (which shifts its other parts'
    indices) and the index of ``last_conv`` (after the last block) come from the paths given, so
    pass all of a network's leaf paths, not a selection.

    Args:
        leaf_paths: ``[leaf.path for leaf in jcnn.porting.torch_leaves(net, input_shape)]``.

    Raises:
        ValueError: a path that is not a leaf of an EfficientNet-B0 (the message names it).

    Example:
        >>> paths = [leaf.path for leaf in jcnn.porting.torch_leaves(efficientnet_b0(), (64, 64, 3))]
        >>> prefixes = torchvision_prefixes(paths)
        >>> for path in ("features/stage1/block0/depthwise/conv", "features/stage1/block0/se/fc1",
        ...              "features/stage2/block1/block/se/fc2", "features/last_conv/bn"):
        ...     print(f"{path:40} {prefixes[path]}")
        features/stage1/block0/depthwise/conv    features.1.0.block.0.0
        features/stage1/block0/se/fc1            features.1.0.block.1.fc1
        features/stage2/block1/block/se/fc2      features.2.1.block.2.fc2
        features/last_conv/bn                    features.8.1
    """
    blocks = [m for m in (_BLOCK.fullmatch(p) for p in leaf_paths) if m]
    expanded = {(m[1], m[2]) for m in blocks if m[3] == "expand"}
    last = max((int(m[1]) for m in blocks), default=None)
    out = {}
    for path in leaf_paths:
        m = _BLOCK.fullmatch(path)
        if m:
            stage, block, part = m[1], m[2], m[3] or "se"
            order = ["expand"] if (stage, block) in expanded else []
            index = (order + ["depthwise", "se", "project"]).index(part)
            leaf = f"{_CNA[m[4]]}" if m[4] else m[5]
            out[path] = f"features.{stage}.{block}.block.{index}.{leaf}"
            continue
        m = re.fullmatch(r"features/(stem|last_conv)/(conv|bn)", path)
        if m and (m[1] == "stem" or last is not None):
            index = 0 if m[1] == "stem" else last + 1
            out[path] = f"features.{index}.{_CNA[m[2]]}"
        elif path == "classifier/linear":
            out[path] = "classifier.1"
        else:
            raise ValueError(
                f"efficientnet_b0 torchvision_prefixes: unrecognised jcnn path {path!r}"
            )
    return out
