"""ConvNeXt-Tiny (Liu et al. 2022) as in torchvision.

A ConvNeXt block is ``x + stochastic_depth(layer_scale * f(x))`` with ``f`` a 7x7 depthwise
convolution, LayerNorm over the channels, dense 4C, GELU, dense C: jcnn is channels-last, so
``L.LayerNorm(eps=1e-6)`` over the last axis is torchvision's ``LayerNorm2d`` and its
``Permute`` + ``nn.LayerNorm``, and ``L.Dense`` on the last axis is its ``nn.Linear`` on the
permuted map. The stem is a 4x4/4 "patchify" convolution + LayerNorm; between stages a LayerNorm
and a 2x2/2 convolution halve the size. Like torchvision, the stochastic-depth probability grows
linearly over the 18 blocks, ``p * i / 17`` for block ``i = 0 .. 17``.

Children are keyed as torchvision's modules: ``features`` (``"0"`` the stem, ``"1"``, ``"3"``,
``"5"``, ``"7"`` the stages of blocks ``"0"``, ``"1"``, ..., ``"2"``, ``"4"``, ``"6"`` the
downsamplings), ``avgpool``, ``classifier`` (``"0"`` LayerNorm, ``"2"`` dense: torchvision's
``"1"`` is a flatten, which the pooled vector does not need). A block's ``block`` Sequential
keys its layers by torchvision's positions, which count the two ``Permute`` modules jcnn does
not need: ``"0"`` depthwise conv, ``"2"`` LayerNorm, ``"3"`` dense, ``"4"`` GELU, ``"5"``
dense (``features/1/0/block/0`` is torchvision's ``features.1.0.block.0``). Its
``layer_scale`` (a :func:`jcnn.layers.LayerScale`) sits in the block too; torchvision stores that
parameter on the block module itself, ``features.1.0.layer_scale``
(:mod:`jcnn.interop.torchvision` lists it among its exceptions).
"""

from __future__ import annotations

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import classifier_pool, conv_norm_act, sequential

#: torchvision's ConvNeXt-Tiny ``block_setting``: (channels, blocks) per stage.
TINY_SETTING: tuple[tuple[int, int], ...] = ((96, 3), (192, 3), (384, 9), (768, 3))
#: torchvision's LayerNorm epsilon for ConvNeXt.
EPS = 1e-6


def _layer_norm() -> Layer:
    return L.LayerNorm(eps=EPS)


def cn_block(
    channels: int,
    *,
    layer_scale: float = 1e-6,
    stochastic_depth_prob: float = 0.0,
    name: str = "cn_block",
) -> Layer:
    """torchvision's ``CNBlock``, a :func:`jcnn.layers.residual` whose branch is ``block``
    (``"0"`` 7x7 depthwise conv with bias, ``"2"`` LayerNorm eps 1e-6, ``"3"`` dense 4C, ``"4"``
    exact GELU, ``"5"`` dense C), ``layer_scale`` (:func:`jcnn.layers.LayerScale`, initialised
    to ``layer_scale``) and ``stochastic_depth`` (``"row"`` mode), all keyed in the block.

    Shapes:
        ``(H, W, channels) -> (H, W, channels)``.

    Example:
        >>> block = cn_block(96)
        >>> jcnn.count_params(block, (56, 56, 96))  # 4800 + 192 + 37248 + 36960 + 96
        79296
        >>> block.tree_keys, [k for k, _ in block.at("block").children]
        (('block', 'layer_scale', 'stochastic_depth', 'shortcut'), ['0', '2', '3', '4', '5'])
    """
    block = L.serial(
        L.Conv(channels, (7, 7), padding=3, groups=channels).named("0"),
        _layer_norm().named("2"),
        L.Dense(4 * channels).named("3"),
        L.Gelu().named("4"),
        L.Dense(channels).named("5"),
        name="block",
    )
    branch = L.serial(
        block,
        L.LayerScale(layer_scale).named("layer_scale"),
        L.StochasticDepth(stochastic_depth_prob, "row").named("stochastic_depth"),
    )
    return L.residual(branch.inlined(), name=name)


def convnext_tiny(
    num_classes: int = 1000, *, stochastic_depth_prob: float = 0.1, layer_scale: float = 1e-6
) -> Layer:
    """torchvision's ConvNeXt-Tiny: 28,589,128 parameters for 1,000 classes.

    ``features``: ``"0"`` (conv 4x4/4 -> 96 with bias, LayerNorm), stages ``"1"``, ``"3"``,
    ``"5"``, ``"7"`` of :func:`cn_block` blocks ``"0"``, ``"1"``, ... (96, 192, 384, 768
    channels; 3, 3, 9, 3 blocks), downsamplings ``"2"``, ``"4"``, ``"6"`` between them
    (LayerNorm, conv 2x2/2 with bias); ``avgpool`` (global average); ``classifier``: ``"0"``
    LayerNorm, ``"2"`` dense.

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
        conv_norm_act(
            first, 4, stride=4, padding=0, activation=None, norm=_layer_norm, use_bias=True
        )
    ]
    index = 0
    for s, (channels, n) in enumerate(TINY_SETTING, start=1):
        blocks = []
        for _ in range(n):
            prob = stochastic_depth_prob * index / (total - 1)
            blocks.append(cn_block(channels, layer_scale=layer_scale, stochastic_depth_prob=prob))
            index += 1
        features.append(sequential(*blocks))
        if s < len(TINY_SETTING):
            features.append(sequential(_layer_norm(), L.Conv(TINY_SETTING[s][0], (2, 2), stride=2)))
    classifier = L.serial(
        _layer_norm().named("0"),
        L.Dense(num_classes).named("2"),
        name="classifier",
    )
    return L.serial(
        sequential(*features, name="features"),
        classifier_pool(),
        classifier,
        name="convnext_tiny",
    )
