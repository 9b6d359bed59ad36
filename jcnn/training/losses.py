"""Losses and metrics on a batch; every function returns the mean over the batch.

Shapes:
    logits: ``(B, K)``; integer labels: ``(B,)``; regression targets: same shape as predictions.

The functions that take integer class labels (:func:`softmax_cross_entropy`, :func:`accuracy`,
:func:`top_k_accuracy`, :func:`classification_metrics`) check the labels' shape and dtype when
they are traced (free: no check runs in the compiled program) and are marked so
(:func:`takes_integer_labels`): ``jcnn.fit`` with such a loss also checks, before training,
that every label is a class index in ``[0, K)``.

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

from jcnn.layers.arguments import count
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
                ": one-hot rows? use labels.argmax(-1), or a loss for one-hot targets "
                "(the mean of optax.softmax_cross_entropy)"
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


@integer_labels
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean of ``-log softmax(logits)[label]`` over the batch (integer labels, not one-hot)."""
    check_labels("softmax_cross_entropy", labels, logits.shape)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return jnp.mean(losses)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over every element (no silent broadcasting: shapes must match)."""
    if predictions.shape != targets.shape:
        raise ValueError(f"mse: shapes differ: {predictions.shape} vs {targets.shape}")
    return jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets))


@integer_labels
def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max class equals the label."""
    check_labels("accuracy", labels, logits.shape)
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


@integer_labels
def top_k_accuracy(logits: jax.Array, labels: jax.Array, k: int = 5) -> jax.Array:
    """Fraction of examples whose label is among the ``k`` largest logits (ties count as hits
    when the label's logit equals the k-th largest). ``k`` is an int in ``1..K``."""
    check_labels("top_k_accuracy", labels, logits.shape)
    classes = logits.shape[1]
    k = count(k, "top_k_accuracy: k", maximum=classes)
    kth = jax.lax.top_k(logits, k)[0][:, -1]
    label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(label_logit >= kth)


@integer_labels
def classification_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """``{"loss": cross-entropy, "accuracy": top-1}`` — the default metrics of the train loops."""
    return {"loss": softmax_cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}
