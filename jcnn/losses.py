"""Losses and metrics on a batch; every function returns the mean over the batch.

Shapes:
    logits: ``(B, K)``; integer labels: ``(B,)``; regression targets: same shape as predictions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _check_labels(logits: jax.Array, labels: jax.Array, where: str) -> None:
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"{where}: expected logits (B, K) and integer labels (B,), got {logits.shape} "
            f"and {labels.shape}"
        )


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean of ``-log softmax(logits)[label]`` over the batch (integer labels, not one-hot)."""
    _check_labels(logits, labels, "softmax_cross_entropy")
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    return jnp.mean(losses)


def mse(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over every element (no silent broadcasting: shapes must match)."""
    if predictions.shape != targets.shape:
        raise ValueError(f"mse: shapes differ: {predictions.shape} vs {targets.shape}")
    return jnp.mean(jnp.square(predictions.astype(jnp.float32) - targets))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose arg-max class equals the label."""
    _check_labels(logits, labels, "accuracy")
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def top_k_accuracy(logits: jax.Array, labels: jax.Array, k: int = 5) -> jax.Array:
    """Fraction of examples whose label is among the ``k`` largest logits (ties count as hits
    when the label's logit equals the k-th largest)."""
    _check_labels(logits, labels, "top_k_accuracy")
    kth = jax.lax.top_k(logits, k)[0][:, -1]
    label_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(label_logit >= kth)


def classification_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
    """``{"loss": cross-entropy, "accuracy": top-1}`` — the default metrics of the train loops."""
    return {"loss": softmax_cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}
