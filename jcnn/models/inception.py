"""Inception v3 (Szegedy et al. 2016) as in torchvision, without the auxiliary classifier.

Every convolution is torchvision's ``BasicConv2d``: bias-free conv ``conv``, BatchNorm ``bn``
(eps 1e-3), ReLU. The Inception modules A .. E run branches side by side on the same input and
concatenate them (:func:`jcnn.layers.concat`, inlined so that a module holds its convolutions
directly, as torchvision's: ``Mixed_5b/branch5x5_2/conv`` is ``Mixed_5b.branch5x5_2.conv``);
the pooling branches use 3x3 average pools (stride 1, padding 1, padded zeros counted) or 3x3/2
max pools. Like torchvision's builder without weights, ``transform_input`` is off.

Children are keyed as torchvision's modules: ``Conv2d_1a_3x3`` .. ``Conv2d_4a_3x3``,
``maxpool1``, ``maxpool2``, ``Mixed_5b`` .. ``Mixed_7c``, ``avgpool``, ``dropout``, ``fc``.
Inputs need ``H, W >= 75``.
"""

from __future__ import annotations

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import BatchNormFactory, torch_batch_norm

Pair = tuple[int, int]


def basic_conv2d(
    out_channels: int,
    kernel_size: int | Pair,
    *,
    stride: int = 1,
    padding: int | Pair = 0,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "basic_conv2d",
) -> Layer:
    """torchvision's ``BasicConv2d`` with rectangular kernels: ``conv`` (no bias), ``bn`` (eps
    1e-3), ``relu``."""
    kernel = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    pad = (padding, padding) if isinstance(padding, int) else padding
    return L.serial(
        L.Conv(
            out_channels,
            kernel,
            stride=stride,
            padding=((pad[0], pad[0]), (pad[1], pad[1])),
            use_bias=False,
        ).named("conv"),
        batch_norm(eps=1e-3).named("bn"),
        L.Relu().named("relu"),
        name=name,
    )


def _branch(*layers: Layer) -> Layer:
    return L.serial(*layers).inlined()


def _module(*branches: Layer, name: str) -> Layer:
    return L.concat(*branches, name=name)


def _avg_pool(name: str) -> Layer:
    return L.AvgPool((3, 3), stride=1, padding=1).named(name)


def _max_pool(name: str) -> Layer:
    return L.MaxPool((3, 3), stride=2).named(name)


def inception_a(pool_features: int, *, batch_norm: BatchNormFactory, name: str) -> Layer:
    """torchvision's ``InceptionA``: 1x1 64; 1x1 48 -> 5x5 64; 1x1 64 -> 3x3 96 -> 3x3 96;
    avg pool -> 1x1 ``pool_features``."""

    def bc(*args, **kwargs):
        return basic_conv2d(*args, batch_norm=batch_norm, **kwargs)

    return _module(
        bc(64, 1, name="branch1x1"),
        _branch(bc(48, 1, name="branch5x5_1"), bc(64, 5, padding=2, name="branch5x5_2")),
        _branch(
            bc(64, 1, name="branch3x3dbl_1"),
            bc(96, 3, padding=1, name="branch3x3dbl_2"),
            bc(96, 3, padding=1, name="branch3x3dbl_3"),
        ),
        _branch(_avg_pool("avg_pool"), bc(pool_features, 1, name="branch_pool")),
        name=name,
    )


def inception_b(*, batch_norm: BatchNormFactory, name: str) -> Layer:
    """torchvision's ``InceptionB``: 3x3/2 384; 1x1 64 -> 3x3 96 -> 3x3/2 96; 3x3/2 max pool."""

    def bc(*args, **kwargs):
        return basic_conv2d(*args, batch_norm=batch_norm, **kwargs)

    return _module(
        bc(384, 3, stride=2, name="branch3x3"),
        _branch(
            bc(64, 1, name="branch3x3dbl_1"),
            bc(96, 3, padding=1, name="branch3x3dbl_2"),
            bc(96, 3, stride=2, name="branch3x3dbl_3"),
        ),
        _max_pool("max_pool"),
        name=name,
    )


def inception_c(channels_7x7: int, *, batch_norm: BatchNormFactory, name: str) -> Layer:
    """torchvision's ``InceptionC``: 1x1 192; 1x1 c7 -> 1x7 -> 7x1 192; 1x1 c7 -> 7x1 -> 1x7 ->
    7x1 -> 1x7 192; avg pool -> 1x1 192."""
    c7 = channels_7x7

    def bc(*args, **kwargs):
        return basic_conv2d(*args, batch_norm=batch_norm, **kwargs)

    return _module(
        bc(192, 1, name="branch1x1"),
        _branch(
            bc(c7, 1, name="branch7x7_1"),
            bc(c7, (1, 7), padding=(0, 3), name="branch7x7_2"),
            bc(192, (7, 1), padding=(3, 0), name="branch7x7_3"),
        ),
        _branch(
            bc(c7, 1, name="branch7x7dbl_1"),
            bc(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2"),
            bc(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3"),
            bc(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4"),
            bc(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5"),
        ),
        _branch(_avg_pool("avg_pool"), bc(192, 1, name="branch_pool")),
        name=name,
    )


def inception_d(*, batch_norm: BatchNormFactory, name: str) -> Layer:
    """torchvision's ``InceptionD``: 1x1 192 -> 3x3/2 320; 1x1 192 -> 1x7 -> 7x1 -> 3x3/2 192;
    3x3/2 max pool."""

    def bc(*args, **kwargs):
        return basic_conv2d(*args, batch_norm=batch_norm, **kwargs)

    return _module(
        _branch(bc(192, 1, name="branch3x3_1"), bc(320, 3, stride=2, name="branch3x3_2")),
        _branch(
            bc(192, 1, name="branch7x7x3_1"),
            bc(192, (1, 7), padding=(0, 3), name="branch7x7x3_2"),
            bc(192, (7, 1), padding=(3, 0), name="branch7x7x3_3"),
            bc(192, 3, stride=2, name="branch7x7x3_4"),
        ),
        _max_pool("max_pool"),
        name=name,
    )


def inception_e(*, batch_norm: BatchNormFactory, name: str) -> Layer:
    """torchvision's ``InceptionE``: 1x1 320; 1x1 384 -> (1x3 384 | 3x1 384); 1x1 448 -> 3x3
    384 -> (1x3 384 | 3x1 384); avg pool -> 1x1 192."""

    def bc(*args, **kwargs):
        return basic_conv2d(*args, batch_norm=batch_norm, **kwargs)

    def split(prefix: str) -> Layer:
        return L.concat(
            bc(384, (1, 3), padding=(0, 1), name=f"{prefix}a"),
            bc(384, (3, 1), padding=(1, 0), name=f"{prefix}b"),
            name=f"{prefix}split",
        ).inlined()

    return _module(
        bc(320, 1, name="branch1x1"),
        _branch(bc(384, 1, name="branch3x3_1"), split("branch3x3_2")),
        _branch(
            bc(448, 1, name="branch3x3dbl_1"),
            bc(384, 3, padding=1, name="branch3x3dbl_2"),
            split("branch3x3dbl_3"),
        ),
        _branch(_avg_pool("avg_pool"), bc(192, 1, name="branch_pool")),
        name=name,
    )


def inception_v3(
    num_classes: int = 1000,
    *,
    dropout: float = 0.5,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> Layer:
    """torchvision's Inception v3 with ``aux_logits=False``: 23,834,568 parameters for 1,000
    classes (torchvision's 27,161,264 include the auxiliary head).

    Shapes:
        ``(H, W, 3) -> (num_classes,)`` for ``H, W >= 75``; ``(8, 8, 2048)`` features at
        299x299.

    Example:
        >>> jcnn.output_shape(inception_v3(), (299, 299, 3))
        (1000,)
    """

    def bc(*args, **kwargs):
        return basic_conv2d(*args, batch_norm=batch_norm, **kwargs)

    return L.serial(
        bc(32, 3, stride=2, name="Conv2d_1a_3x3"),
        bc(32, 3, name="Conv2d_2a_3x3"),
        bc(64, 3, padding=1, name="Conv2d_2b_3x3"),
        _max_pool("maxpool1"),
        bc(80, 1, name="Conv2d_3b_1x1"),
        bc(192, 3, name="Conv2d_4a_3x3"),
        _max_pool("maxpool2"),
        inception_a(32, batch_norm=batch_norm, name="Mixed_5b"),
        inception_a(64, batch_norm=batch_norm, name="Mixed_5c"),
        inception_a(64, batch_norm=batch_norm, name="Mixed_5d"),
        inception_b(batch_norm=batch_norm, name="Mixed_6a"),
        inception_c(128, batch_norm=batch_norm, name="Mixed_6b"),
        inception_c(160, batch_norm=batch_norm, name="Mixed_6c"),
        inception_c(160, batch_norm=batch_norm, name="Mixed_6d"),
        inception_c(192, batch_norm=batch_norm, name="Mixed_6e"),
        inception_d(batch_norm=batch_norm, name="Mixed_7a"),
        inception_e(batch_norm=batch_norm, name="Mixed_7b"),
        inception_e(batch_norm=batch_norm, name="Mixed_7c"),
        L.GlobalAvgPool().named("avgpool"),
        L.Dropout(dropout).named("dropout"),
        L.Dense(num_classes).named("fc"),
        name="inception_v3",
    )
