"""ConvNeXt-Tiny (Liu et al. 2022) as in torchvision.

A ConvNeXt block is ``x + stochastic_depth(layer_scale * f(x))`` with ``f`` a 7x7 depthwise
convolution, LayerNorm over the channels, dense 4C, GELU, dense C: jcnn is channels-last, so
``L.LayerNorm(eps=1e-6)`` over the last axis is torchvision's ``LayerNorm2d`` and its
``Permute`` + ``nn.LayerNorm``, and ``L.Dense`` on the last axis is its ``nn.Linear`` on the
permuted map. The stem is a 4x4/4 "patchify" convolution + LayerNorm; between stages a LayerNorm
and a 2x2/2 convolution halve the size. Like torchvision, the stochastic-depth probability grows
linearly over the 18 blocks, ``p * i / 17`` for block ``i = 0 .. 17``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import features_pool_classifier

#: torchvision's ConvNeXt-Tiny ``block_setting``: (channels, blocks) per stage.
TINY_SETTING: tuple[tuple[int, int], ...] = ((96, 3), (192, 3), (384, 9), (768, 3))
#: torchvision's LayerNorm epsilon for ConvNeXt.
EPS = 1e-6


def cn_block(
    channels: int,
    *,
    layer_scale: float = 1e-6,
    stochastic_depth_prob: float = 0.0,
    name: str = "cn_block",
) -> Layer:
    """torchvision's ``CNBlock``, a :func:`jcnn.layers.residual` whose branch is ``dwconv``
    (7x7 depthwise, bias), ``norm`` (LayerNorm eps 1e-6), ``pwconv1`` (dense 4C), ``act``
    (exact GELU), ``pwconv2`` (dense C), ``layer_scale`` (:func:`jcnn.layers.LayerScale`,
    initialised to ``layer_scale``), ``stochastic_depth`` (``"row"`` mode).

    Shapes:
        ``(H, W, channels) -> (H, W, channels)``.

    Example:
        >>> block = cn_block(96)
        >>> jcnn.count_params(block, (56, 56, 96))  # 4800 + 192 + 37248 + 36960 + 96
        79296
    """
    branch = L.serial(
        L.Conv(channels, (7, 7), padding=3, groups=channels).named("dwconv"),
        L.LayerNorm(eps=EPS).named("norm"),
        L.Dense(4 * channels).named("pwconv1"),
        L.Gelu().named("act"),
        L.Dense(channels).named("pwconv2"),
        L.LayerScale(layer_scale).named("layer_scale"),
        L.StochasticDepth(stochastic_depth_prob, "row").named("stochastic_depth"),
    )
    return L.residual(branch, name=name)


def convnext_tiny(
    num_classes: int = 1000, *, stochastic_depth_prob: float = 0.1, layer_scale: float = 1e-6
) -> Layer:
    """torchvision's ConvNeXt-Tiny: 28,589,128 parameters for 1,000 classes.

    ``features``: ``stem`` (``conv`` 4x4/4 -> 96 with bias, ``norm``), ``stage1`` .. ``stage4``
    of :func:`cn_block` blocks ``block0``, ``block1``, ... (96, 192, 384, 768 channels; 3, 3, 9,
    3 blocks), ``downsample1`` .. ``downsample3`` between them (``norm``, ``conv`` 2x2/2 with
    bias); ``avgpool`` (global average); ``classifier``: ``norm`` (LayerNorm), dense
    ``linear``.

    Args:
        num_classes: logits width.
        stochastic_depth_prob: ``p``; block ``i`` of the 18 drops its branch with probability
            ``p * i / 17`` (torchvision's spread).
        layer_scale: initial value of every block's :func:`jcnn.layers.LayerScale`.

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; stages at ``H / 4``, ``/ 8``, ``/ 16``, ``/ 32`` (floor
        at each step: 56, 28, 14, 7 at 224x224), so inputs need ``H, W >= 32``.

    Example:
        >>> net = convnext_tiny()
        >>> jcnn.output_shape(net, (224, 224, 3)), [k for k, _ in net.children]
        ((1000,), ['features', 'avgpool', 'classifier'])
    """
    total = sum(n for _, n in TINY_SETTING)
    first = TINY_SETTING[0][0]
    features = [
        L.serial(
            L.Conv(first, (4, 4), stride=4).named("conv"),
            L.LayerNorm(eps=EPS).named("norm"),
            name="stem",
        )
    ]
    index = 0
    for s, (channels, n) in enumerate(TINY_SETTING, start=1):
        blocks = []
        for b in range(n):
            prob = stochastic_depth_prob * index / (total - 1)
            blocks.append(
                cn_block(
                    channels, layer_scale=layer_scale, stochastic_depth_prob=prob, name=f"block{b}"
                )
            )
            index += 1
        features.append(L.serial(*blocks, name=f"stage{s}"))
        if s < len(TINY_SETTING):
            features.append(
                L.serial(
                    L.LayerNorm(eps=EPS).named("norm"),
                    L.Conv(TINY_SETTING[s][0], (2, 2), stride=2).named("conv"),
                    name=f"downsample{s}",
                )
            )
    classifier = L.serial(
        L.LayerNorm(eps=EPS).named("norm"),
        L.Dense(num_classes).named("linear"),
        name="classifier",
    )
    return features_pool_classifier(features, classifier, "convnext_tiny")


#: The torchvision index of each named part: in the stem and a downsample, in a block's
#: ``block`` Sequential (the Permutes and the GELU hold nothing), in the classifier; the
#: ``layer_scale`` parameter belongs to the block module itself.
_STEM = {"conv": "0", "norm": "1"}
_DOWNSAMPLE = {"norm": "0", "conv": "1"}
_BRANCH = {
    "dwconv": ".block.0",
    "norm": ".block.2",
    "pwconv1": ".block.3",
    "pwconv2": ".block.5",
    "layer_scale": "",
}
_CLASSIFIER = {"norm": "0", "linear": "2"}
_PATTERNS = (
    (r"features/stem/(conv|norm)", lambda m: f"features.0.{_STEM[m[1]]}"),
    (
        r"features/stage(\d+)/block(\d+)/block/(dwconv|norm|pwconv1|pwconv2|layer_scale)",
        lambda m: f"features.{2 * int(m[1]) - 1}.{m[2]}{_BRANCH[m[3]]}",
    ),
    (
        r"features/downsample(\d+)/(norm|conv)",
        lambda m: f"features.{2 * int(m[1])}.{_DOWNSAMPLE[m[2]]}",
    ),
    (r"classifier/(norm|linear)", lambda m: f"classifier.{_CLASSIFIER[m[1]]}"),
)


def torchvision_prefixes(leaf_paths: Sequence[str]) -> dict[str, str]:
    """torchvision's module prefix of each jcnn leaf path of :func:`convnext_tiny`.

    ``features/stem/conv`` -> ``features.0.0``; stage ``s`` is torchvision's ``features.{2s -
    1}`` and ``downsample{s}`` its ``features.{2s}``; in a block ``dwconv``, ``norm``,
    ``pwconv1``, ``pwconv2`` are ``block.0``, ``block.2``, ``block.3``, ``block.5``, and the
    ``layer_scale`` leaf's prefix is the block itself (``features.1.0``: porting reads its
    ``layer_scale`` parameter there); ``classifier/norm``, ``classifier/linear`` ->
    ``classifier.0``, ``classifier.2``.

    Args:
        leaf_paths: ``[leaf.path for leaf in jcnn.porting.torch_leaves(net, input_shape)]``.

    Raises:
        ValueError: a path that is not a leaf of a ConvNeXt (the message names it).

    Example:
        >>> paths = ["features/stage1/block0/block/dwconv", "features/stage1/block0/block/layer_scale",
        ...          "features/downsample3/conv", "features/stage4/block2/block/pwconv2"]
        >>> for path, prefix in torchvision_prefixes(paths).items():
        ...     print(f"{path:42} {prefix}")
        features/stage1/block0/block/dwconv        features.1.0.block.0
        features/stage1/block0/block/layer_scale   features.1.0
        features/downsample3/conv                  features.6.1
        features/stage4/block2/block/pwconv2       features.7.2.block.5
    """
    out = {}
    for path in leaf_paths:
        for pattern, prefix in _PATTERNS:
            m = re.fullmatch(pattern, path)
            if m:
                out[path] = prefix(m)
                break
        else:
            raise ValueError(f"convnext_tiny torchvision_prefixes: unrecognised jcnn path {path!r}")
    return out
