"""Losses and metrics on a batch; every function returns the mean over the batch.

Shapes:
    logits: ``(B, K)``; integer labels: ``(B,)``; soft targets: ``(B, K)``; regression targets:
    same shape as predictions.

The functions that take integer class labels (:func:`softmax_cross_entropy`, :func:`accuracy`,
:func:`top_k_accuracy`, :func:`classification_metrics`) check the labels' shape and dtype when
they are traced (free: no check runs in the compiled program) and are marked so
(:func:`takes_integer_labels`): ``jcnn.fit`` with such a loss also checks, before training,
that every label is a class index in ``[0, K)``. :func:`accuracy`, :func:`top_k_accuracy` and
:func:`classification_metrics` also take floating soft targets ``(B, K)`` (from mixup or cutmix,
:mod:`jcnn.data.mixing`) and score against their arg-max class, as timm reports its training
accuracy; :func:`soft_cross_entropy` is the loss for such targets.

Example:
    >>> softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0.0, 2.0]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: softmax_cross_entropy: labels have dtype float32: ... labels.astype(np.int32)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import optax

from jcnn.layers.arguments import count, probability
from jcnn.layers.shapes import ShapeError

F = TypeVar("F", bound=Callable[..., Any])

EXPECTED = "expected integer class labels (B,) for logits (B, K)"


def integer_labels(fn: F) -> F:
    """Marks ``fn(logits, labels)`` as taking integer class labels (:func:`takes_integer_labels`).

    Mark your own loss with it so that ``jcnn.fit`` checks its labels up front.
    """
    fn.takes_integer_labels = True  # type: ignore[attr-defined]
    return fn


def takes_integer_labels(fn: Callable[..., Any]) -> bool:
    """True when ``fn`` (or the function a ``functools.partial`` wraps) is marked by
    :func:`integer_labels`: logits ``(B, K)`` and labels ``(B,)`` of class indices ``0..K-1``.

    Example:
        >>> takes_integer_labels(softmax_cross_entropy), takes_integer_labels(mse)
        (True, False)
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    return getattr(fn, "takes_integer_labels", False) is True


def check_labels(where: str, labels: Any, logits_shape: tuple[int, ...] | None = None) -> None:
    """Raises unless ``labels`` are integer class labels ``(B,)`` for logits of ``logits_shape``.

    Reads only shapes and dtypes, so it works on NumPy arrays and on tracers (at trace time).
    ``logits_shape=None`` checks the labels alone.

    Raises:
        ShapeError: logits not ``(B, K)``, labels not ``(B,)`` (one-hot, ``(B, 1)``), or batch
            sizes that differ.
        TypeError: labels that are not integers (floats, bools).
    """
    shape = tuple(labels.shape)
    if logits_shape is not None and len(logits_shape) != 2:
        raise ShapeError(
            f"{where}: logits have shape {tuple(logits_shape)}: {EXPECTED}; a network for "
            "classification ends in Dense(K) on a flat vector (put a Flatten or a global pool "
            "before it)"
        )
    if len(shape) != 1:
        if len(shape) == 2 and shape[1] == 1:
            hint = ": use labels.reshape(-1)"
        elif len(shape) == 2:
            hint = (
                ": one-hot rows? use labels.argmax(-1), or a loss for one-hot or soft targets "
                "(jcnn.losses.soft_cross_entropy)"
            )
        else:
            hint = ""
        raise ShapeError(f"{where}: labels have shape {shape}: {EXPECTED}{hint}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"{where}: labels have dtype {labels.dtype}: {EXPECTED}; cast them with "
            "labels.astype(np.int32)"
        )
    if logits_shape is not None and shape[0] != logits_shape[0]:
        raise ShapeError(
            f"{where}: batch sizes differ: logits {tuple(logits_shape)} hold {logits_shape[0]} "
            f"examples but labels {shape} hold {shape[0]} ({EXPECTED}): give one label per "
            "example of the batch"
        )


def _is_soft(labels: Any, logits_shape: tuple[int, ...]) -> bool:
    """Floating targets of the logits' shape ``(B, K)``: soft (or one-hot) class targets."""
    return (
        len(logits_shape) == 2
        and tuple(labels.shape) == tuple(logits_shape)
        and jnp.issubdtype(labels.dtype, jnp.floating)
    )


def _class_labels(where: str, labels: Any, logits_shape: tuple[int, ...]) -> Any:
    """Integer labels ``(B,)``: checked integer labels, or the arg-max of soft targets."""
    if _is_soft(labels, logits_shape):
        return jnp.argmax(labels, axis=-1)
    check_labels(where, labels, logits_shape)
    return labels


@integer_labels
def softmax_cross_entropy(
    logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0
) -> jax.Array:
    """Mean of ``-log softmax(logits)[label]`` over the batch (integer labels, not one-hot).

    With ``label_smoothing = s`` the target is ``(1 - s) onehot(label) + s / K`` (timm's
    ``LabelSmoothingCrossEntropy``, optax's ``smooth_labels``); ``s = 0`` is the plain loss.
    Use ``functools.partial(softmax_cross_entropy, label_smoothing=0.1)`` as a ``loss_fn``.

    Args:
        logits: the network's outputs.
        labels: integer class labels in ``[0, K)``.
        label_smoothing: ``s`` in ``[0, 1)`` (a static Python number).

    Shapes:
        logits: (B, K); labels: (B,); output: ().

    Example:
        >>> logits, labels = jnp.array([[0.0, jnp.log(3.0)]]), jnp.array([1])
        >>> round(float(softmax_cross_entropy(logits, labels, label_smoothing=0.5)), 4)
        0.5623
    """
    check_labels("softmax_cross_entropy", labels, logits.shape)
    logits = logits.astype(jnp.float32)
    if label_smoothing == 0:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return jnp.mean(losses)
    s = probability(label_smoothing, "softmax_cross_entropy: label_smoothing")
    k = logits.shape[1]
    targets = jax.nn.one_hot(labels, k, dtype=jnp.float32) * (1.0 - s) + s / k
    return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over the batch of ``-sum_k targets[k] * log_softmax(logits)[k]`` (soft targets).

    The loss for mixup and cutmix (:class:`jcnn.data.mixing.MixupCutmix`). Integer labels
    ``(B,)`` are also taken (as one-hot targets, the plain cross-entropy), so the same loss
    evaluates validation data. Not marked by :func:`integer_labels`: ``jcnn.fit`` does not check
    that the training labels are class indices.

    Args:
        logits: the network's outputs.
        targets: floating targets (rows summing to 1: probabilities), or integer class labels.

    Shapes:
        logits: (B, K); targets: (B, K) or (B,); output: ().

    Raises:
        ShapeError: logits not ``(B, K)``, or targets of neither shape.

    Example:
        >>> logits = jnp.array([[0.0, jnp.log(3.0)]])
        >>> round(float(soft_cross_entropy(logits, jnp.array([[0.5, 0.5]]))), 4)
        0.837
    """
    logits_shape = tuple(logits.shape)
    if not _is_soft(targets, logits_shape):
        if len(targets.shape) == 2 or not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ShapeError(
                f"soft_cross_entropy: targets have shape {tuple(targets.shape)} and dtype "
                f"{targets.dtype} for logits {logits_shape}: expected floating targets of the "
                "logits' shape (B, K), or integer class labels (B,)"
            )
        check_labels("soft_cross_entropy", targets, logits_shape)
        return softmax_cross_entropy(logits, targets)
    losses = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets.astype(jnp.float32))
    return jnp.mean(losses)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over every element (no silent broadcasting: shapes must match)."""
    if predictions.shape != targets.shape:
        raise ValueError(f"mse: shapes differ: {predictions.shape} vs {targets.shape}")
    return jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets))


@integer_labels
def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max class equals the label (or soft targets' arg-max).

    Shapes:
        logits: (B, K); labels: (B,) integers or (B, K) floating soft targets; output: ().
    """
    labels = _class_labels("accuracy", labels, logits.shape)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


@integer_labels
def top_k_accuracy(logits: jax.Array, labels: jax.Array, k: int = 5) -> jax.Array:
    """Fraction of examples whose label is among the ``k`` largest logits (ties count as hits
    when the label's logit equals the k-th largest). ``k`` is an int in ``1..K``.

    Shapes:
        logits: (B, K); labels: (B,) integers or (B, K) floating soft targets (their arg-max
        is the label); output: ().
    """
    labels = _class_labels("top_k_accuracy", labels, logits.shape)
    classes = logits.shape[1]
    k = count(k, "top_k_accuracy: k", maximum=classes)
    kth = jax.lax.top_k(logits, k)[0][:, -1]
    label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(label_logit >= kth)


@integer_labels
def classification_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """``{"loss": cross-entropy, "accuracy": top-1}``.

    With soft targets ``(B, K)`` the loss is :func:`soft_cross_entropy` and the accuracy is
    against the targets' arg-max.
    """
    if _is_soft(labels, tuple(logits.shape)):
        return {"loss": soft_cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}
    return {"loss": softmax_cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}


def accuracy_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """``{"accuracy": top-1}`` for integer labels or soft targets (against their arg-max).

    The ``metrics_fn`` for training with mixup or cutmix: the default metrics report no
    accuracy for floating ``(B, K)`` targets (they cannot tell soft class targets from
    regression targets), so pass ``metrics_fn=accuracy_metrics`` to see the training accuracy
    against the mixed targets' arg-max, as timm reports it.

    Shapes:
        logits: (B, K); labels: (B,) integers or (B, K) floating; output: {name: ()}.

    Example:
        >>> accuracy_metrics(jnp.array([[2.0, 0.0]]), jnp.array([[0.7, 0.3]]))["accuracy"].item()
        1.0
    """
    return {"accuracy": accuracy(logits, labels)}
