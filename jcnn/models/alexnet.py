"""AlexNet as in torchvision (the single-GPU "one weird trick" variant, 61,100,840 parameters).

Krizhevsky et al. (2012) split the network over two GPUs; torchvision's variant (Krizhevsky 2014)
has one tower with 64-192-384-256-256 filters and no local response normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

from jcnn import layers as L
from jcnn import shapes
from jcnn.layers.core import Layer

#: torchvision's ``AdaptiveAvgPool2d`` target: the classifier always sees 6x6x256 = 9,216 values.
POOLED_SIZE = 6


def _feature_size(n: int) -> int:
    """Spatial size after AlexNet's features for an input of size ``n`` (one dim)."""
    n = shapes.conv_output_size(n, 11, 4, (2, 2))  # conv1
    n = shapes.conv_output_size(n, 3, 2)  # pool1
    n = shapes.conv_output_size(n, 5, 1, (2, 2))  # conv2 keeps the size
    n = shapes.conv_output_size(n, 3, 2)  # pool2
    return shapes.conv_output_size(n, 3, 2)  # conv3-5 keep the size; pool5


def adaptive_avg_pool(
    feature_size: Sequence[int], target: int | Sequence[int], *, where: str = "model"
) -> Layer:
    """``AdaptiveAvgPool2d(target)`` for a known feature size that is a multiple of ``target``.

    PyTorch's adaptive pooling averages over windows ``[floor(i*n/t), ceil((i+1)*n/t))``; when
    ``t`` divides ``n`` these are the non-overlapping windows of size ``n/t``, which is an
    ``AvgPool`` with window = stride = ``n/t``, and an ``Identity`` (named ``avgpool``) when
    ``n == t``, the standard case. Other sizes give overlapping, uneven windows that no fixed
    pooling layer matches.

    Raises:
        ValueError: a feature size is not a positive multiple of the target.
    """
    sizes = tuple(feature_size)
    targets = shapes.as_tuple(target, len(sizes), "adaptive pooling target")
    if any(n < t or n % t for n, t in zip(sizes, targets)):
        raise ValueError(
            f"{where}: features of spatial size {sizes} cannot be pooled to {targets} with "
            "equal windows; use an input size whose feature map is a multiple of the target "
            "(224 gives exactly the target)"
        )
    window = tuple(n // t for n, t in zip(sizes, targets))
    if all(w == 1 for w in window):
        return L.Identity().named("avgpool")
    return L.AvgPool(window).named("avgpool")


def alexnet(num_classes: int = 1000, *, input_size: int | Sequence[int] = 224) -> Layer:
    """torchvision's AlexNet: five convolutions, three max-pools, three dense layers.

    ``features``: conv 11x11/4 pad 2 -> 64, pool 3/2, conv 5x5 pad 2 -> 192, pool 3/2,
    conv 3x3 pad 1 -> 384, 256, 256, pool 3/2 (every conv followed by ReLU); ``avgpool``:
    torchvision's ``AdaptiveAvgPool2d((6, 6))`` — for the standard 224x224 input the features are
    already 6x6, so it is the identity (an ``Identity`` layer); other input sizes work when their
    feature map is a multiple of 6 (see :func:`adaptive_avg_pool`); ``classifier``: dropout 0.5,
    dense 4096, ReLU, dropout 0.5, dense 4096, ReLU, dense ``num_classes``.

    Parameters: 23,296 + 307,392 + 663,936 + 884,992 + 590,080 (features) + 37,752,832 +
    16,781,312 + 4,097,000 (classifier) = 61,100,840 for 1,000 classes.

    Args:
        num_classes: width of the last dense layer (logits).
        input_size: spatial input size (int or (H, W)); fixes the adaptive pooling window.

    Shapes:
        ``(224, 224, 3) -> (num_classes,)``; features ``(6, 6, 256)``, flattened to 9,216 in
        (H, W, C) order (torchvision flattens (C, H, W); see :mod:`jcnn.porting`).

    Example:
        >>> jcnn.output_shape(alexnet(), (224, 224, 3))
        (1000,)
    """
    size = shapes.as_tuple(input_size, 2, "alexnet input_size")
    features = L.serial(
        L.Conv(64, (11, 11), stride=4, padding=2),
        L.Relu(),
        L.MaxPool((3, 3), stride=2),
        L.Conv(192, (5, 5), padding=2),
        L.Relu(),
        L.MaxPool((3, 3), stride=2),
        L.Conv(384, (3, 3), padding=1),
        L.Relu(),
        L.Conv(256, (3, 3), padding=1),
        L.Relu(),
        L.Conv(256, (3, 3), padding=1),
        L.Relu(),
        L.MaxPool((3, 3), stride=2),
        name="features",
    )
    classifier = L.serial(
        L.Dropout(0.5),
        L.Dense(4096),
        L.Relu(),
        L.Dropout(0.5),
        L.Dense(4096),
        L.Relu(),
        L.Dense(num_classes),
        name="classifier",
    )
    pooled = adaptive_avg_pool(tuple(_feature_size(n) for n in size), POOLED_SIZE, where="alexnet")
    return L.serial(features, pooled, L.Flatten(), classifier, name="alexnet")
