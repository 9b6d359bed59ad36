"""AlexNet as in torchvision (the single-GPU "one weird trick" variant, 61,100,840 parameters).

Krizhevsky et al. (2012) split the network over two GPUs; torchvision's variant (Krizhevsky 2014)
has one tower with 64-192-384-256-256 filters and no local response normalisation.

Children are keyed as torchvision's modules: ``features`` and ``classifier`` are
``nn.Sequential``s keyed by position, parameter-free layers included (the dense layers are
``classifier/1``, ``classifier/4``, ``classifier/6``), with ``avgpool`` and ``flatten`` between
them.
"""

from __future__ import annotations

from jcnn import layers as L
from jcnn.layers.core import Layer
from jcnn.models.common import sequential

#: torchvision's ``AdaptiveAvgPool2d`` target: the classifier always sees 6x6x256 = 9,216 values.
POOLED_SIZE = (6, 6)


def alexnet(num_classes: int = 1000) -> Layer:
    """torchvision's AlexNet: five convolutions, three max-pools, three dense layers.

    ``features``: conv 11x11/4 pad 2 -> 64, pool 3/2, conv 5x5 pad 2 -> 192, pool 3/2,
    conv 3x3 pad 1 -> 384, 256, 256, pool 3/2 (every conv followed by ReLU); ``avgpool``:
    torchvision's ``AdaptiveAvgPool2d((6, 6))`` (:func:`jcnn.layers.AdaptiveAvgPool`), which
    takes any feature size to 6x6, so every input from 63x63 up gives the same classifier (at
    224x224 the features are already 6x6 and it is the identity); ``classifier``: dropout 0.5,
    dense 4096, ReLU, dropout 0.5, dense 4096, ReLU, dense ``num_classes``.

    Parameters: 23,296 + 307,392 + 663,936 + 884,992 + 590,080 (features) + 37,752,832 +
    16,781,312 + 4,097,000 (classifier) = 61,100,840 for 1,000 classes.

    Args:
        num_classes: width of the last dense layer (logits).

    Shapes:
        ``(H, W, 3) -> (num_classes,)`` for ``H, W >= 63``; at 224x224 the features are
        ``(6, 6, 256)``; after ``avgpool`` always ``(6, 6, 256)``, flattened to 9,216 in
        (H, W, C) order (torchvision flattens (C, H, W); see :mod:`jcnn.porting`).

    Example:
        >>> jcnn.output_shape(alexnet(), (224, 224, 3)), jcnn.output_shape(alexnet(), (64, 64, 3))
        ((1000,), (1000,))
    """
    features = sequential(
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
    classifier = sequential(
        L.Dropout(0.5),
        L.Dense(4096),
        L.Relu(),
        L.Dropout(0.5),
        L.Dense(4096),
        L.Relu(),
        L.Dense(num_classes),
        name="classifier",
    )
    pooled = L.AdaptiveAvgPool(POOLED_SIZE).named("avgpool")
    return L.serial(features, pooled, L.Flatten().named("flatten"), classifier, name="alexnet")
