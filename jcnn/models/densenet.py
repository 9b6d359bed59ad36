"""DenseNet-121, -161, -169 and -201 (Huang et al. 2017, the "BC" variant) as in torchvision.

A dense layer appends ``growth_rate`` new channels to its input: ``concat(x, f(x))`` with ``f``
BatchNorm, ReLU, 1x1 conv to ``bn_size * growth_rate``, BatchNorm, ReLU, 3x3 conv to
``growth_rate`` (:func:`jcnn.layers.concat` of an ``Identity`` and ``f``), so after ``n`` layers
a dense block has concatenated all its layers' features in order, as torchvision's
``torch.cat(features, 1)``. Transitions halve the channels (BatchNorm, ReLU, 1x1 conv) and the
size (2x2 average pool). Convolutions have no bias.

Children are keyed as torchvision's modules: ``features`` (``conv0``, ``norm0``, ``relu0``,
``pool0``, ``denseblock1``, ``transition1``, ..., ``norm5``), then ``relu``, ``avgpool``,
``classifier``; a dense layer holds its ``norm1``, ``relu1``, ``conv1``, ... directly (its
branch is inlined), so ``features/denseblock1/denselayer1/norm1`` is torchvision's
``features.denseblock1.denselayer1.norm1``.
"""

from __future__ import annotations

from typing import Any

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import BatchNormFactory, torch_batch_norm

#: torchvision's DenseNet-121 ``block_config``: dense layers per block.
BLOCK_CONFIG_121: tuple[int, ...] = (6, 12, 24, 16)
#: torchvision's ``num_init_features`` for DenseNet-121: the stem's width, whatever the growth.
NUM_INIT_FEATURES = 64


def dense_layer(
    growth_rate: int,
    bn_size: int,
    *,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "dense_layer",
) -> Layer:
    """torchvision's ``_DenseLayer`` with its input kept: ``concat(prev_features,
    new_features)`` where the new features are ``norm1``, ``relu1``, ``conv1`` (1x1 ->
    ``bn_size * growth_rate``), ``norm2``, ``relu2``, ``conv2`` (3x3 pad 1 -> ``growth_rate``),
    keyed directly in the dense layer (an inlined serial).

    Shapes:
        ``(H, W, C) -> (H, W, C + growth_rate)``.

    Example:
        >>> layer = dense_layer(32, 4)
        >>> jcnn.output_shape(layer, (56, 56, 64)), layer.tree_keys
        ((56, 56, 96), ('prev_features', 'norm1', 'relu1', 'conv1', 'norm2', 'relu2', 'conv2'))
    """
    new_features = L.serial(
        batch_norm().named("norm1"),
        L.Relu().named("relu1"),
        L.Conv(bn_size * growth_rate, (1, 1), use_bias=False).named("conv1"),
        batch_norm().named("norm2"),
        L.Relu().named("relu2"),
        L.Conv(growth_rate, (3, 3), padding=1, use_bias=False).named("conv2"),
    )
    return L.concat(L.Identity().named("prev_features"), new_features.inlined(), name=name)


def transition(
    out_channels: int, *, batch_norm: BatchNormFactory = torch_batch_norm, name: str = "transition"
) -> Layer:
    """torchvision's ``_Transition``: ``norm``, ``relu``, ``conv`` (1x1 -> ``out_channels``, no
    bias), ``pool`` (2x2/2 average).

    Shapes:
        ``(H, W, C) -> (H // 2, W // 2, out_channels)``.
    """
    return L.serial(
        batch_norm().named("norm"),
        L.Relu().named("relu"),
        L.Conv(out_channels, (1, 1), use_bias=False).named("conv"),
        L.AvgPool((2, 2), stride=2).named("pool"),
        name=name,
    )


def densenet121(
    num_classes: int = 1000,
    *,
    growth_rate: int = 32,
    bn_size: int = 4,
    batch_norm: BatchNormFactory = torch_batch_norm,
    block_config: tuple[int, ...] = BLOCK_CONFIG_121,
    num_init_features: int = NUM_INIT_FEATURES,
    name: str = "densenet121",
) -> Layer:
    """torchvision's DenseNet-121: 7,978,856 parameters for 1,000 classes.

    ``features``: ``conv0`` (7x7/2 -> 64), ``norm0``, ``relu0``, ``pool0`` (3x3/2 max, pad 1);
    dense blocks ``denseblock1`` .. ``denseblock4`` of 6, 12, 24, 16 dense layers
    ``denselayer1``, ... (:func:`dense_layer`) with ``transition1`` .. ``transition3`` (:func:`transition`, halving the
    channels) between them; ``norm5``. Then ``relu``, ``avgpool`` (global average) and the dense
    ``classifier`` (torchvision's functional ReLU and pool in ``forward``).

    Args:
        num_classes: logits width.
        growth_rate: channels each dense layer adds (``k``).
        bn_size: the bottleneck is ``bn_size * growth_rate`` channels wide.
        batch_norm: BatchNorm factory (default PyTorch's conventions, eps 1e-5).
        block_config: dense layers per block (:data:`DENSENETS` has torchvision's others).
        num_init_features: the stem's width.
        name: the model's name.

    Shapes:
        ``(H, W, 3) -> (num_classes,)``; the blocks run at ``H / 4``, ``/ 8``, ``/ 16``,
        ``/ 32`` (56, 28, 14, 7 at 224x224) and end with 256, 512, 1024, 1024 channels (64 +
        6 * 32 = 256, halved to 128, ...); inputs need ``H, W >= 29``.

    Example:
        >>> net = densenet121()
        >>> jcnn.output_shape(net, (224, 224, 3)), [k for k, _ in net.children]
        ((1000,), ['features', 'relu', 'avgpool', 'classifier'])
    """
    channels = num_init_features
    features = [
        L.Conv(channels, (7, 7), stride=2, padding=3, use_bias=False).named("conv0"),
        batch_norm().named("norm0"),
        L.Relu().named("relu0"),
        L.MaxPool((3, 3), stride=2, padding=1).named("pool0"),
    ]
    for i, n in enumerate(block_config, start=1):
        block = [
            dense_layer(growth_rate, bn_size, batch_norm=batch_norm, name=f"denselayer{j}")
            for j in range(1, n + 1)
        ]
        features.append(L.serial(*block, name=f"denseblock{i}"))
        channels += n * growth_rate
        if i < len(block_config):
            channels //= 2
            features.append(transition(channels, batch_norm=batch_norm, name=f"transition{i}"))
    features.append(batch_norm().named("norm5"))
    return L.serial(
        L.serial(*features, name="features"),
        L.Relu().named("relu"),
        L.GlobalAvgPool().named("avgpool"),
        L.Dense(num_classes).named("classifier"),
        name=name,
    )


#: torchvision's other DenseNets: name -> (growth rate, block config, stem width).
DENSENETS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "densenet161": (48, (6, 12, 36, 24), 96),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}


def _densenet(name: str, num_classes: int, **kwargs: Any) -> Layer:
    growth_rate, block_config, num_init_features = DENSENETS[name]
    return densenet121(
        num_classes,
        growth_rate=growth_rate,
        block_config=block_config,
        num_init_features=num_init_features,
        name=name,
        **kwargs,
    )


def densenet161(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's DenseNet-161 (growth 48, blocks 6-12-36-24, stem 96): 28,681,000
    parameters. See :func:`densenet121` (``bn_size``, ``batch_norm``)."""
    return _densenet("densenet161", num_classes, **kwargs)


def densenet169(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's DenseNet-169 (growth 32, blocks 6-12-32-32): 14,149,480 parameters. See
    :func:`densenet121`."""
    return _densenet("densenet169", num_classes, **kwargs)


def densenet201(num_classes: int = 1000, **kwargs: Any) -> Layer:
    """torchvision's DenseNet-201 (growth 32, blocks 6-12-48-32): 20,013,928 parameters. See
    :func:`densenet121`."""
    return _densenet("densenet201", num_classes, **kwargs)
