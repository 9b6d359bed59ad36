"""Object localization as in the course text "5 Convolutional Neural Networks" (section 5.8.1).

The network outputs, per image, ``[p_c, x, y, w, h, p_1, ..., p_K]``: the probability that an
object is present, its box and its class probabilities. The training target has ``p_c`` in
{0, 1}; when ``p_c = 0`` everything else is "don't care". The course's squared-error loss is::

    L(y_hat, y) = (y_hat_1 - y_1)^2                        if y_1 = p_c = 0
                  sum_i (y_hat_i - y_i)^2                   if y_1 = p_c = 1

Boxes are ``(x, y, w, h)``: the top-left corner (column, row) and the width and height, all as
fractions of the image size, so every component lies in [0, 1]. (The course places ``(x, y)``
at the top *right*; the corner is a convention, the loss does not care.)

The synthetic task :func:`place_digits` pastes handwritten digits, rescaled, at random places on
a larger blank canvas (some canvases stay empty) and records each digit's tight ink box.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jcnn import layers as L
from jcnn.layers.core import Layer

#: Index of ``p_c``, of the box ``(x, y, w, h)`` and of the first class probability.
PRESENCE, BOX, CLASSES = 0, slice(1, 5), 5


def localization_output(z: jax.Array) -> jax.Array:
    """Squashes raw scores ``(..., 5 + K)``: sigmoid on ``p_c`` and the box, softmax on classes."""
    return jnp.concatenate(
        [jax.nn.sigmoid(z[..., :CLASSES]), jax.nn.softmax(z[..., CLASSES:], axis=-1)], axis=-1
    )


def localization_head(num_classes: int) -> Layer:
    """``Dense(5 + num_classes)`` followed by :func:`localization_output`.

    Shapes:
        ``(features,) -> (5 + num_classes,)``: ``[p_c, x, y, w, h, p_1, ..., p_K]``, every entry
        in [0, 1] and the class probabilities summing to 1.
    """
    return L.serial(
        L.Dense(5 + num_classes),
        L.elementwise(localization_output, "LocalizationOutput"),
        name="localization_head",
    )


def localization_targets(
    present: np.ndarray, boxes: np.ndarray, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """Targets ``[p_c, x, y, w, h, one_hot(label)]``; rows without an object are zero after p_c.

    Shapes:
        present ``(N,)`` bool, boxes ``(N, 4)``, labels ``(N,)`` -> ``(N, 5 + num_classes)``.
    """
    present = np.asarray(present, bool)
    out = np.zeros((len(present), 5 + num_classes), np.float32)
    out[:, PRESENCE] = present
    out[present, BOX] = np.asarray(boxes, np.float32)[present]
    out[present, CLASSES + np.asarray(labels)[present]] = 1.0
    return out


def localization_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """The course's squared-error localization loss, averaged over the batch.

    Per example: ``(p_c_hat - p_c)^2`` when the target's ``p_c`` is 0, the squared error summed
    over all ``5 + K`` components when it is 1. Don't-care entries of empty targets may hold
    anything, NaN included (they are selected away, not multiplied by zero).

    Shapes:
        predictions, targets: ``(B, 5 + K)`` -> scalar.
    """
    if predictions.shape != targets.shape or predictions.ndim != 2:
        raise ValueError(
            f"localization_loss: expected predictions and targets (B, 5 + K) of one shape, got "
            f"{predictions.shape} and {targets.shape}"
        )
    present = targets[:, PRESENCE:1] > 0.5  # (B, 1)
    first = jnp.arange(targets.shape[1])[None, :] == PRESENCE  # (1, 5 + K)
    used = present | first
    # Clean the targets before subtracting, so NaN don't-cares give no NaN gradient either.
    clean = jnp.where(used, targets, 0.0)
    sq = jnp.square(predictions.astype(jnp.float32) - clean)
    return jnp.mean(jnp.sum(jnp.where(used, sq, 0.0), axis=1))


def box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """Intersection over union of ``(x, y, w, h)`` boxes (top-left corner, size); 0 if disjoint.

    Shapes:
        a, b: ``(..., 4)`` -> ``(...)``.
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    lo = jnp.maximum(a[..., :2], b[..., :2])
    hi = jnp.minimum(a[..., :2] + a[..., 2:], b[..., :2] + b[..., 2:])
    inter = jnp.prod(jnp.clip(hi - lo, 0.0, None), axis=-1)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def localization_metrics(predictions: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
    """Batch metrics (jit-friendly), to pass as ``metrics_fn`` to ``jcnn.fit``.

    Returns:
        ``accuracy``: presence right, and for images with an object the class right too;
        ``presence_accuracy``: ``p_c > 0.5`` agrees with the target;
        ``class_accuracy``: arg-max class right, over images with an object;
        ``mean_iou``: IoU of the predicted and true boxes, over images with an object.
    """
    present = targets[:, PRESENCE] > 0.5
    said = predictions[:, PRESENCE] > 0.5
    cls_ok = jnp.argmax(predictions[:, CLASSES:], -1) == jnp.argmax(targets[:, CLASSES:], -1)
    iou = box_iou(predictions[:, BOX], targets[:, BOX])
    n_present = jnp.maximum(jnp.sum(present), 1)
    correct = jnp.where(present, said & cls_ok, ~said)
    return {
        "accuracy": jnp.mean(correct),
        "presence_accuracy": jnp.mean(said == present),
        "class_accuracy": jnp.sum(present & cls_ok) / n_present,
        "mean_iou": jnp.sum(jnp.where(present, iou, 0.0)) / n_present,
    }


def ink_box(image: np.ndarray, threshold: float = 0.2) -> tuple[int, int, int, int]:
    """Tight box ``(col, row, width, height)`` in pixels of the cells above ``threshold``.

    Shapes:
        image: ``(H, W)`` or ``(H, W, 1)``.
    """
    mask = np.asarray(image).reshape(image.shape[0], image.shape[1]) > threshold
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``jax.image.resize(..., "linear")`` of ``(N, h, w)`` to ``(N, size, size)``, as two matrix
    products: resizing is linear and separable, so one small resize of an identity per axis
    (compiled once per size) replaces a compilation per batch shape."""
    h, w = images.shape[1:]
    rows = np.asarray(jax.image.resize(jnp.eye(h), (size, h), "linear"))  # (size, h)
    cols = np.asarray(jax.image.resize(jnp.eye(w), (size, w), "linear"))  # (size, w)
    return np.einsum("ih,nhw,jw->nij", rows, np.asarray(images, np.float32), cols)


def place_digits(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    canvas_size: int = 48,
    empty_fraction: float = 0.2,
    sizes: Sequence[int] = (16, 20, 24, 28),
    num_classes: int = 10,
    threshold: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One canvas per digit: the digit rescaled to a random size, pasted at a random place.

    A fraction ``empty_fraction`` of the canvases (chosen at random) stay blank, with target
    ``p_c = 0``. The box is the tight box of the pasted ink (cells above ``threshold``).

    Args:
        images: digits ``(N, h, w, 1)`` in [0, 1] (MNIST or the 28x28 fallback).
        labels: ``(N,)`` ints in ``0 .. num_classes - 1``.
        canvas_size: side of the square canvas.
        empty_fraction: probability that a canvas stays empty.
        sizes: side lengths the digits are resized to (one drawn per digit).
        num_classes: classes in the targets.
        threshold: ink threshold of the box.
        seed: NumPy seed of sizes, places and empties.

    Returns:
        ``(canvases, targets)``: ``(N, canvas_size, canvas_size, 1)`` float32 and
        ``(N, 5 + num_classes)`` from :func:`localization_targets`.
    """
    if max(sizes) > canvas_size:
        raise ValueError(f"place_digits: sizes {tuple(sizes)} exceed the canvas {canvas_size}")
    rng = np.random.default_rng(seed)
    n = len(images)
    side = rng.choice(np.asarray(sizes), size=n)
    present = rng.random(n) >= empty_fraction
    canvases = np.zeros((n, canvas_size, canvas_size, 1), np.float32)
    boxes = np.zeros((n, 4), np.float32)
    for s in np.unique(side):
        idx = np.flatnonzero((side == s) & present)
        if idx.size == 0:
            continue
        small = np.clip(_resize(images[idx, ..., 0], int(s)), 0.0, 1.0)[..., None]
        rows = rng.integers(0, canvas_size - s + 1, idx.size)
        cols = rng.integers(0, canvas_size - s + 1, idx.size)
        for i, digit, r, c in zip(idx, small, rows, cols):
            canvases[i, r : r + s, c : c + s] = digit
            x0, y0, w, h = ink_box(digit, threshold)
            if w == 0:  # no ink at this size: call it empty
                present[i] = False
                canvases[i] = 0.0
                continue
            boxes[i] = np.array([c + x0, r + y0, w, h], np.float32) / canvas_size
    return canvases, localization_targets(present, boxes, labels, num_classes)
