"""The two MNIST models of the course text "5 Convolutional Neural Networks" (Flux.jl there)."""

from __future__ import annotations

from jcnn import layers as L
from jcnn.layers.core import Layer


def mlp(num_classes: int = 10) -> Layer:
    """Flatten, Dense 200 + ReLU, Dense 100 + tanh, Dense ``num_classes``.

    On (28, 28, 1): 784*200+200 + 200*100+100 + 100*10+10 = 178,110 parameters.

    Shapes:
        ``(28, 28, 1) -> (num_classes,)`` (logits).
    """
    return L.serial(
        L.Flatten(),
        L.Dense(200),
        L.Relu(),
        L.Dense(100),
        L.Tanh(),
        L.Dense(num_classes),
        name="mlp",
    )


def cnn(num_classes: int = 10) -> Layer:
    """conv 5x5 -> 8 + ReLU, max-pool 2, conv 3x3 -> 16 + ReLU, max-pool 2, flatten, Dense.

    On (28, 28, 1): 28 -> 24 -> 12 -> 10 -> 5, flatten 5*5*16 = 400, and
    208 + 1,168 + 4,010 = 5,386 parameters.

    Shapes:
        ``(28, 28, 1) -> (num_classes,)`` (logits).
    """
    return L.serial(
        L.Conv(8, (5, 5)),
        L.Relu(),
        L.MaxPool((2, 2)),
        L.Conv(16, (3, 3)),
        L.Relu(),
        L.MaxPool((2, 2)),
        L.Flatten(),
        L.Dense(num_classes),
        name="cnn",
    )
