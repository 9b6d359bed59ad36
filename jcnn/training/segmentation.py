"""Per-pixel classification: its loss, its metrics and the intersection over union.

A segmentation network maps an image ``(H, W, C)`` to logits ``(H', W', K)`` (a U-Net,
:func:`jcnn.models.unet`); the labels are a class index per pixel, ``(H', W')`` ints in
``[0, K)``, or :data:`IGNORE` (-1) for pixels that count for nothing (borders, unlabelled).

* :func:`pixel_cross_entropy`: the mean over the batch's labelled pixels of the softmax cross
  entropy (a ``loss_fn`` for :func:`jcnn.fit`);
* :func:`segmentation_metrics`: pixel accuracy and the batch's mean IoU (a ``metrics_fn``);
* :func:`confusion_matrix` / :func:`iou_from_confusion`: the exact IoU over a whole data set,
  summing confusion matrices batch by batch (a batch's mean IoU is not a mean over examples).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "IGNORE",
    "confusion_matrix",
    "iou_from_confusion",
    "pixel_cross_entropy",
    "segmentation_metrics",
]

#: The label of a pixel that counts for nothing.
IGNORE = -1


def _check(where: str, logits: jax.Array, labels: jax.Array) -> None:
    if logits.shape[:-1] != labels.shape or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{where}: logits {logits.shape} and labels {labels.shape} ({labels.dtype}): give "
            "integer labels with the logits' shape without their last (class) axis, e.g. "
            "logits (B, H, W, K) and labels (B, H, W)"
        )


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross entropy over the labelled pixels (labels ``!= IGNORE``).

    Shapes:
        logits: (B, H, W, K); labels: (B, H, W) int; output: ().

    Example:
        >>> logits = jnp.zeros((1, 2, 2, 4))                     # uniform over 4 classes
        >>> labels = jnp.array([[[0, 1], [2, IGNORE]]])
        >>> round(float(pixel_cross_entropy(logits, labels)), 4)  # log 4
        1.3863
    """
    _check("pixel_cross_entropy", logits, labels)
    logits = logits.astype(jnp.float32)
    labelled = labels != IGNORE
    safe = jnp.where(labelled, labels, 0)
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), safe[..., None], axis=-1)[..., 0]
    return jnp.sum(losses * labelled) / jnp.maximum(jnp.sum(labelled), 1)


def confusion_matrix(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``C[t, p]``: the labelled pixels of true class ``t`` predicted ``p`` (arg-max).

    Shapes:
        logits: (..., K); labels: (...) int; output: (K, K) int32.

    Example:
        >>> logits = jax.nn.one_hot(jnp.array([[0, 1, 1]]), 2)
        >>> confusion_matrix(logits, jnp.array([[0, 0, 1]])).tolist()
        [[1, 1], [0, 1]]
    """
    _check("confusion_matrix", logits, labels)
    k = logits.shape[-1]
    predicted = jnp.argmax(logits, axis=-1).ravel()
    truth = labels.ravel()
    labelled = truth != IGNORE
    index = jnp.where(labelled, truth * k + predicted, 0)
    counts = jnp.zeros(k * k, jnp.int32).at[index].add(labelled.astype(jnp.int32))
    return counts.reshape(k, k)


def iou_from_confusion(confusion: np.ndarray | jax.Array) -> tuple[np.ndarray, float]:
    """Per-class IoU ``C[k, k] / (row k + column k - C[k, k])`` and their mean over the classes
    that occur (in the truth or the predictions); a class that never occurs is NaN.

    Example:
        >>> per_class, mean = iou_from_confusion(np.array([[3, 1], [0, 2]]))
        >>> per_class.round(3).tolist(), round(mean, 3)
        ([0.75, 0.667], 0.708)
    """
    c = np.asarray(confusion, dtype=np.float64)
    union = c.sum(0) + c.sum(1) - np.diag(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(union > 0, np.diag(c) / union, np.nan)
    return per_class, float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")


def segmentation_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """``pixel_accuracy`` over labelled pixels and ``mean_iou``, the batch's IoU averaged over
    the classes present in it (for a data set's exact IoU sum :func:`confusion_matrix`).

    Example:
        >>> logits = jax.nn.one_hot(jnp.array([[0, 1, 1]]), 2)
        >>> m = segmentation_metrics(logits, jnp.array([[0, 0, 1]]))
        >>> round(float(m["pixel_accuracy"]), 3), round(float(m["mean_iou"]), 3)
        (0.667, 0.5)
    """
    c = confusion_matrix(logits, labels).astype(jnp.float32)
    union = c.sum(0) + c.sum(1) - jnp.diag(c)
    present = union > 0
    iou = jnp.where(present, jnp.diag(c) / jnp.maximum(union, 1.0), 0.0)
    return {
        "pixel_accuracy": jnp.trace(c) / jnp.maximum(c.sum(), 1.0),
        "mean_iou": jnp.sum(iou) / jnp.maximum(jnp.sum(present), 1),
    }
