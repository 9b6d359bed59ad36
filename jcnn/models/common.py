"""Pieces the torchvision-compatible zoo shares."""

from __future__ import annotations

from collections.abc import Callable

from jcnn import layers as L
from jcnn.layers.core import Layer

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


def dropout_linear_classifier(dropout: float, num_classes: int) -> Layer:
    """torchvision's ``classifier = Sequential(Dropout(p), Linear(C, num_classes))``, keyed
    ``dropout`` and ``linear`` (MobileNetV2, EfficientNet).

    Shapes:
        ``(C,) -> (num_classes,)``.
    """
    return L.serial(
        L.Dropout(dropout).named("dropout"),
        L.Dense(num_classes).named("linear"),
        name="classifier",
    )


def features_pool_classifier(features: list[Layer], classifier: Layer, name: str) -> Layer:
    """``serial(features, avgpool, classifier)``: torchvision's layout of MobileNet, EfficientNet
    and ConvNeXt (``features`` a serial of ``features``, global average pooling keyed
    ``avgpool``).

    Shapes:
        ``(H, W, 3) -> classifier's output``.
    """
    return L.serial(
        L.serial(*features, name="features"),
        L.GlobalAvgPool().named("avgpool"),
        classifier,
        name=name,
    )
