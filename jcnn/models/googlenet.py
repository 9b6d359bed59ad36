"""GoogLeNet / Inception v1 (Szegedy et al. 2015) as in torchvision, without the auxiliary heads.

Like torchvision it differs from the paper in two ways: every convolution is followed by
BatchNorm (eps 1e-3, and no conv bias), and the "5x5" branch of each Inception module uses a 3x3
kernel (a known slip kept for weight compatibility; ``c5_kernel=5`` gives the paper's module).

Children are keyed as torchvision's modules: ``conv1``, ``maxpool1``, ``conv2``, ``conv3``,
``maxpool2``, ``inception3a``, ..., ``avgpool``, ``dropout``, ``fc``; a ``BasicConv2d`` holds
``conv`` and ``bn``; an Inception module's branches are ``branch1`` .. ``branch4``, the last
three ``nn.Sequential``s keyed by position (``inception3a/branch2/1/conv`` is torchvision's
``inception3a.branch2.1.conv``).
"""

from __future__ import annotations

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import BatchNormFactory, classifier_pool, sequential, torch_batch_norm

#: Padding that emulates PyTorch's ``MaxPool2d(..., ceil_mode=True)`` for window 3 / stride 2
#: and window 2 / stride 2: one extra ``-inf`` cell on the high side gives
#: ``ceil((n - k) / s) + 1`` outputs, and the last window always starts inside the input, as
#: PyTorch requires.
CEIL_MODE_PADDING = ((0, 1), (0, 1))


def basic_conv(
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    batch_norm: BatchNormFactory = torch_batch_norm,
    name: str = "serial",
) -> Layer:
    """torchvision's ``BasicConv2d``: ``conv`` without bias, ``bn`` (eps 1e-3), ``relu``;
    ``name`` is its params key (by default counted like any unnamed serial).

    Shapes:
        ``(H, W, C) -> (H', W', out_channels)``, ``H' = conv_output_size(H, k, s, p)``.
    """
    return L.serial(
        L.Conv(
            out_channels,
            (kernel_size, kernel_size),
            stride=stride,
            padding=padding,
            use_bias=False,
        ).named("conv"),
        batch_norm(eps=1e-3).named("bn"),
        L.Relu().named("relu"),
        name=name,
    )


def inception_module(
    c1: int,
    c3r: int,
    c3: int,
    c5r: int,
    c5: int,
    pool_proj: int,
    *,
    c5_kernel: int = 3,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> Layer:
    """Four parallel branches concatenated along channels (``jcnn.layers.concat``).

    Branches: ``branch1`` 1x1 -> ``c1``; ``branch2`` 1x1 -> ``c3r`` then 3x3 -> ``c3``;
    ``branch3`` 1x1 -> ``c5r`` then ``c5_kernel`` x ``c5_kernel`` -> ``c5`` (3 as torchvision,
    5 as the paper); ``branch4`` 3x3/1 max-pool then 1x1 -> ``pool_proj``. Every branch keeps
    the spatial size.

    Shapes:
        ``(H, W, C) -> (H, W, c1 + c3 + c5 + pool_proj)``.

    Example:
        >>> jcnn.output_shape(inception_module(64, 96, 128, 16, 32, 32), (28, 28, 192))
        (28, 28, 256)
    """

    def conv(out, k, padding=0, name="serial"):
        return basic_conv(out, k, padding=padding, batch_norm=batch_norm, name=name)

    return L.concat(
        conv(c1, 1, name="branch1"),
        sequential(conv(c3r, 1), conv(c3, 3, padding=1), name="branch2"),
        sequential(conv(c5r, 1), conv(c5, c5_kernel, padding=c5_kernel // 2), name="branch3"),
        sequential(L.MaxPool((3, 3), stride=1, padding=1), conv(pool_proj, 1), name="branch4"),
        name="inception",
    )


def googlenet(
    num_classes: int = 1000,
    *,
    dropout: float = 0.2,
    c5_kernel: int = 3,
    batch_norm: BatchNormFactory = torch_batch_norm,
) -> Layer:
    """torchvision's GoogLeNet (``aux_logits=False``): 6,624,904 parameters for 1,000 classes.

    Stem: 7x7/2 conv -> 64, max-pool 3/2, 1x1 -> 64, 3x3 -> 192, max-pool 3/2; Inception 3a, 3b,
    max-pool 3/2, 4a-4e, max-pool 2/2, 5a, 5b (PyTorch's ``ceil_mode=True`` pools, see
    :data:`CEIL_MODE_PADDING`); global average pool, dropout, dense ``fc``.

    Args:
        num_classes: logits width.
        dropout: rate before ``fc`` (torchvision: 0.2).
        c5_kernel: kernel of the "5x5" branches (torchvision 3, paper 5).
        batch_norm: the BatchNorm factory, called as ``batch_norm(eps=1e-3)`` (default PyTorch's
            conventions, :func:`jcnn.models.common.torch_batch_norm`).

    Shapes:
        ``(224, 224, 3) -> (num_classes,)``: 224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 1024 features.
        Any input of at least 32x32 works (global average pooling).
    """

    def inc(name, *widths):
        return inception_module(*widths, c5_kernel=c5_kernel, batch_norm=batch_norm).named(name)

    def pool(window):
        return L.MaxPool((window, window), stride=2, padding=CEIL_MODE_PADDING)

    return L.serial(
        basic_conv(64, 7, stride=2, padding=3, batch_norm=batch_norm, name="conv1"),
        pool(3).named("maxpool1"),
        basic_conv(64, 1, batch_norm=batch_norm, name="conv2"),
        basic_conv(192, 3, padding=1, batch_norm=batch_norm, name="conv3"),
        pool(3).named("maxpool2"),
        inc("inception3a", 64, 96, 128, 16, 32, 32),
        inc("inception3b", 128, 128, 192, 32, 96, 64),
        pool(3).named("maxpool3"),
        inc("inception4a", 192, 96, 208, 16, 48, 64),
        inc("inception4b", 160, 112, 224, 24, 64, 64),
        inc("inception4c", 128, 128, 256, 24, 64, 64),
        inc("inception4d", 112, 144, 288, 32, 64, 64),
        inc("inception4e", 256, 160, 320, 32, 128, 128),
        pool(2).named("maxpool4"),
        inc("inception5a", 256, 160, 320, 32, 128, 128),
        inc("inception5b", 384, 192, 384, 48, 128, 128),
        classifier_pool(),
        L.Dropout(dropout).named("dropout"),
        L.Dense(num_classes).named("fc"),
        name="googlenet",
    )
