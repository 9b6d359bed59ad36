"""Pieces the torchvision-compatible zoo shares.

Zoo models key their children as torchvision's module tree does, so a torchvision state-dict key
is a jcnn path by rule: ``layer1.0.conv1.weight`` is ``params["layer1"]["0"]["conv1"]["kernel"]``
(:mod:`jcnn.interop.torchvision`). An ``nn.Sequential`` keys its children by position, counting
the parameter-free ones too (:func:`sequential`); a module's attributes are explicit names
(``.named("conv1")``); a block whose torch module holds its parts directly (``BasicBlock``'s
``conv1``, ``bn1``, ..., ``downsample``) is written with combinators whose children are
:meth:`~jcnn.layers.Layer.inlined` into it.
"""

from __future__ import annotations

from collections.abc import Callable

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.layers.shapes import positive_int

#: A BatchNorm factory: ``batch_norm(eps=...) -> Layer``. Every zoo builder with BatchNorm takes
#: one as ``batch_norm=`` (default :func:`torch_batch_norm`).
BatchNormFactory = Callable[..., Layer]


def torch_batch_norm(*, eps: float = 1e-5, momentum: float = 0.1) -> Layer:
    """``torch.nn.BatchNorm2d``'s conventions as a jcnn ``BatchNorm``.

    ``momentum`` is PyTorch's (the weight of the new batch, default 0.1; jcnn's own ``BatchNorm``
    takes the weight of the old value, ``1 - momentum``), and the running variance stores the
    unbiased batch variance, as PyTorch does, so one train step leaves the same running
    statistics as torch's.

    Example:
        >>> torch_batch_norm().hparams["momentum"], torch_batch_norm().hparams["eps"]
        (0.9, 1e-05)
    """
    return L.BatchNorm(momentum=1.0 - momentum, eps=eps, unbiased_running_var=True)


def sequential(*layers: Layer, name: str = "sequential") -> Layer:
    """torch's ``nn.Sequential``: ``layers`` in series, keyed by their position ``"0"``, ``"1"``,
    ... (the parameter-free ones count, as in torch: VGG's ``features.2`` is the conv after a
    conv and its ReLU).

    Shapes:
        each layer's output shape is the next one's input shape.

    Example:
        >>> net = sequential(L.Conv(8, 3), L.Relu(), L.Conv(8, 3), name="features")
        >>> [k for k, _ in net.children]
        ['0', '1', '2']
    """
    return L.serial(*(layer.named(str(i)) for i, layer in enumerate(layers)), name=name)


def conv_norm_act(
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    activation: Callable[[], Layer] | None = L.Relu6,
    norm: Callable[[], Layer] = torch_batch_norm,
    use_bias: bool = False,
    name: str = "conv_norm_act",
) -> Layer:
    """torchvision's ``Conv2dNormActivation``: a :func:`sequential` of the conv (no bias by
    default), the norm and the optional activation, keyed ``"0"``, ``"1"``, ``"2"``.

    Args:
        out_channels: filters.
        kernel_size: square window (odd, or the stride for a "patchify" conv).
        stride: conv stride.
        padding: conv padding (default ``(kernel_size - 1) // 2``, as torchvision's).
        groups: conv feature groups (the input channels for a depthwise conv).
        activation: a layer factory (``L.Relu6``, ``L.Silu``) or None (a linear projection).
        norm: the norm factory (``norm() -> Layer``; a BatchNorm factory, or ConvNeXt's
            LayerNorm).
        use_bias: the conv's bias (ConvNeXt's stem has one).
        name: its params key.

    Shapes:
        ``(H, W, C) -> (ceil(H / stride), ceil(W / stride), out_channels)`` for odd kernels.

    Example:
        >>> block = conv_norm_act(32, 3, stride=2)
        >>> jcnn.output_shape(block, (224, 224, 3)), [k for k, _ in block.children]
        ((112, 112, 32), ['0', '1', '2'])
    """
    layers = [
        L.Conv(
            out_channels,
            (kernel_size, kernel_size),
            stride=stride,
            padding=(kernel_size - 1) // 2 if padding is None else padding,
            groups=groups,
            use_bias=use_bias,
        ),
        norm(),
    ]
    if activation is not None:
        layers.append(activation())
    return sequential(*layers, name=name)


def _as_layer(where: str, what: str, value: Layer | Callable[[], Layer]) -> Layer:
    """``value`` if it is a Layer, else ``value()`` (a factory such as ``Relu``)."""
    layer = value if isinstance(value, Layer) else value() if callable(value) else value
    if not isinstance(layer, Layer):
        raise TypeError(
            f"{where}: {what} must be a Layer or a factory returning one (Relu or Relu()), "
            f"got {value!r}"
        )
    return layer


def squeeze_excitation(
    channels: int,
    squeeze_channels: int,
    activation: Layer | Callable[[], Layer] = L.Relu,
    scale_activation: Layer | Callable[[], Layer] = L.Sigmoid,
    *,
    name: str = "squeeze_excitation",
) -> Layer:
    """Squeeze-and-excitation (Hu et al. 2018), as torchvision's ``SqueezeExcitation``.

    ``x * scale_activation(fc2(activation(fc1(avgpool(x)))))`` where ``avgpool`` is
    ``AdaptiveAvgPool(1)`` and ``fc1``, ``fc2`` are 1x1 convolutions ``channels ->
    squeeze_channels -> channels`` with biases. It is a :func:`jcnn.layers.gate` whose children
    are keyed ``avgpool``, ``fc1``, ``activation``, ``fc2``, ``scale_activation``, so
    ``params["fc1"]["kernel"]`` is torchvision's ``fc1.weight`` (HWIO for OIHW) and
    ``params["fc2"]["bias"]`` its ``fc2.bias``; params count
    ``2 * channels * squeeze_channels + squeeze_channels + channels``.

    Args:
        channels: input (and output) channels ``C``.
        squeeze_channels: channels of the bottleneck.
        activation: after ``fc1``: a layer or a factory (default ``Relu``; MobileNetV3 and
            EfficientNet use ``Relu`` and ``Silu``).
        scale_activation: the gate (default ``Sigmoid``; MobileNetV3 uses ``Hardsigmoid``).
        name: its params key inside a parent.

    Shapes:
        ``(H, W, C) -> (H, W, C)`` (2-D images, as torchvision's).

    Raises:
        ShapeError: at init, when the input does not have ``channels`` channels.

    Example:
        >>> se = squeeze_excitation(16, 4)
        >>> _, params, _ = se.init(key, (8, 8, 16))
        >>> params["fc1"]["kernel"].shape, params["fc2"]["bias"].shape, se.output_shape((8, 8, 16))
        ((1, 1, 16, 4), (16,), (8, 8, 16))
    """
    channels = positive_int(channels, f"{name} channels")
    squeeze_channels = positive_int(squeeze_channels, f"{name} squeeze_channels")
    children = [
        L.AdaptiveAvgPool(1).named("avgpool"),
        L.Conv(squeeze_channels, 1).named("fc1"),
        _as_layer(name, "activation", activation).named("activation"),
        L.Conv(channels, 1).named("fc2"),
        _as_layer(name, "scale_activation", scale_activation).named("scale_activation"),
    ]
    # A gate that states its channels (the gate rule checks the input against them).
    return L.gate(*children, name=name).replace(
        kind="squeeze_excitation",
        explicit_name=name != "squeeze_excitation",
        hparams={"channels": channels, "squeeze_channels": squeeze_channels},
    )


def residual_if_shape_kept(
    body: Layer, stride: int, in_channels: int, out_channels: int, *, name: str
) -> Layer:
    """``body`` with an identity shortcut when it keeps its input's shape (stride 1 and as many
    channels out as in: the inverted-residual rule of MobileNet V2/V3 and MNASNet), else
    ``body`` alone; named ``name`` either way, so torchvision's keys hold for both."""
    if stride == 1 and in_channels == out_channels:
        return L.residual(body, name=name)
    return L.serial(body, name=name)


def classifier_pool(name: str = "avgpool") -> Layer:
    """torchvision's global average pooling before a classifier (``AdaptiveAvgPool2d(1)`` and
    the flatten in ``forward``): ``(H, W, C) -> (C,)``, keyed ``avgpool``."""
    return L.GlobalAvgPool().named(name)
