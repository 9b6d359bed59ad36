"""Losses and metrics against NumPy references: values, batch means, stability, gradients, errors."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn import losses
from jcnn.layers.shapes import ShapeError


def _np_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example -log softmax(logits)[label] in float64, with the max subtracted first."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return log_norm - z[np.arange(len(labels)), labels]


def _np_top_k(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k largest (distinct values, no ties)."""
    hits = [labels[i] in np.argsort(-row)[:k] for i, row in enumerate(logits)]
    return float(np.mean(hits))


def _batch(rng, b=13, k=7, scale=3.0):
    logits = (scale * rng.normal(size=(b, k))).astype(np.float32)
    labels = rng.integers(0, k, b).astype(np.int32)
    return logits, labels


def test_cross_entropy_matches_numpy_and_is_the_batch_mean(rng):
    logits, labels = _batch(rng)
    per_example = _np_cross_entropy(logits, labels)
    got = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), per_example.mean(), rtol=1e-6)
    # The mean over the batch: each one-example batch gives that example's loss.
    singles = [
        float(losses.softmax_cross_entropy(logits[i : i + 1], labels[i : i + 1])) for i in [0, 5]
    ]
    np.testing.assert_allclose(singles, per_example[[0, 5]], rtol=1e-6)


def test_cross_entropy_hand_computed():
    # Two classes with logits (0, log 3): softmax = (1/4, 3/4).
    logits = jnp.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]], jnp.float32)
    got = losses.softmax_cross_entropy(logits, jnp.array([0, 1]))
    np.testing.assert_allclose(float(got), (np.log(4.0) + np.log(4.0 / 3.0)) / 2, rtol=1e-6)


@pytest.mark.parametrize("offset", [1e4, -1e4, 3e4])
def test_cross_entropy_is_stable_for_large_logits(rng, offset):
    logits, labels = _batch(rng, scale=50.0)
    shifted = logits + np.float32(offset)
    got = float(losses.softmax_cross_entropy(jnp.asarray(shifted), jnp.asarray(labels)))
    assert np.isfinite(got)
    # Invariant to a common shift; float32 at 1e4 has a spacing of ~1e-3, hence the tolerance.
    np.testing.assert_allclose(got, _np_cross_entropy(logits, labels).mean(), rtol=1e-3, atol=1e-2)
    # A confidently right example costs ~0 and a confidently wrong one the logit gap.
    huge = jnp.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]], jnp.float32)
    np.testing.assert_allclose(
        float(losses.softmax_cross_entropy(huge, jnp.array([0, 1]))), (0.0 + 2e4) / 2, rtol=1e-6
    )


def test_cross_entropy_gradient_is_softmax_minus_one_hot_over_batch(rng):
    logits, labels = _batch(rng, b=5, k=4)
    grad = jax.grad(losses.softmax_cross_entropy)(jnp.asarray(logits), jnp.asarray(labels))
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected = (p - np.eye(4)[labels]) / len(labels)
    np.testing.assert_allclose(np.asarray(grad), expected, atol=1e-6)


def test_mse_matches_numpy(rng):
    pred = rng.normal(size=(6, 3, 2)).astype(np.float32)
    target = rng.normal(size=(6, 3, 2)).astype(np.float32)
    got = losses.mse(jnp.asarray(pred), jnp.asarray(target))
    assert got.shape == ()
    expected = np.mean((pred.astype(np.float64) - target) ** 2)
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    assert float(losses.mse(jnp.ones((3,)), jnp.array([1.0, 3.0, -1.0]))) == pytest.approx(8 / 3)


def test_accuracy_matches_numpy(rng):
    logits, labels = _batch(rng, b=50, k=4)
    expected = np.mean(np.argmax(logits, 1) == labels)
    got = losses.accuracy(jnp.asarray(logits), jnp.asarray(labels))
    assert got.shape == ()
    assert float(got) == pytest.approx(expected)
    assert 0 < expected < 1  # the data exercise both hits and misses
    hand = jnp.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert float(losses.accuracy(hand, jnp.array([1, 0, 0, 0]))) == pytest.approx(0.75)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_top_k_accuracy_matches_numpy(rng, k):
    logits, labels = _batch(rng, b=40, k=6)
    got = losses.top_k_accuracy(jnp.asarray(logits), jnp.asarray(labels), k=k)
    assert float(got) == pytest.approx(_np_top_k(logits, labels, k))
    if k == 1:
        assert float(got) == pytest.approx(float(losses.accuracy(logits, labels)))
    if k == 6:
        assert float(got) == 1.0


def test_top_k_hand_example_and_monotone_in_k():
    logits = jnp.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    labels = jnp.array([2, 2])  # ranks 3 and 2
    got = [float(losses.top_k_accuracy(logits, labels, k=k)) for k in (1, 2, 3, 4)]
    assert got == [0.0, 0.5, 1.0, 1.0]


def test_classification_metrics(rng):
    logits, labels = _batch(rng)
    m = losses.classification_metrics(jnp.asarray(logits), jnp.asarray(labels))
    assert set(m) == {"loss", "accuracy"}
    np.testing.assert_allclose(
        float(m["loss"]), _np_cross_entropy(logits, labels).mean(), rtol=1e-6
    )
    assert float(m["accuracy"]) == pytest.approx(np.mean(np.argmax(logits, 1) == labels))


@pytest.mark.parametrize(
    "fn", [losses.softmax_cross_entropy, losses.accuracy, losses.top_k_accuracy]
)
@pytest.mark.parametrize(
    "logits_shape, labels_shape",
    [((4, 3), (5,)), ((4, 3), (4, 1)), ((4, 3), (4, 3)), ((3,), (3,)), ((2, 4, 3), (2,))],
)
def test_label_shape_errors(fn, logits_shape, labels_shape):
    logits = jnp.zeros(logits_shape)
    labels = jnp.zeros(labels_shape, jnp.int32)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        fn(logits, labels)


@pytest.mark.parametrize("a, b", [((4,), (4, 1)), ((4, 1), (4,)), ((3, 2), (2,)), ((2, 3), (3, 2))])
def test_mse_refuses_to_broadcast(a, b):
    with pytest.raises(ValueError, match="shapes differ"):
        losses.mse(jnp.zeros(a), jnp.zeros(b))


@pytest.mark.parametrize(
    "labels_shape, words",
    [((5,), "batch sizes differ"), ((4, 1), "labels.reshape(-1)"), ((4, 3), "one-hot rows?")],
)
def test_label_shape_errors_say_what_to_do(labels_shape, words):
    with pytest.raises(ShapeError, match=re.escape(words)):
        losses.softmax_cross_entropy(jnp.zeros((4, 3)), jnp.zeros(labels_shape, jnp.int32))


@pytest.mark.parametrize(
    "fn", [losses.softmax_cross_entropy, losses.accuracy, losses.top_k_accuracy]
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bool_])
@pytest.mark.parametrize("jit", [False, True])
def test_non_integer_labels_are_refused_when_traced(fn, dtype, jit):
    call = jax.jit(fn) if jit else fn  # under jit: raised while tracing, nothing compiled
    with pytest.raises(TypeError, match=r"labels have dtype .*astype\(np.int32\)"):
        call(jnp.zeros((4, 3)), jnp.zeros(4, dtype))


@pytest.mark.parametrize("k", [0, 4, 2.0, True])
def test_top_k_needs_an_int_k_within_the_classes(k):
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.3"):
        losses.top_k_accuracy(jnp.zeros((4, 3)), jnp.zeros(4, jnp.int32), k=k)


def test_which_functions_take_integer_labels():
    marked = [losses.softmax_cross_entropy, losses.accuracy, losses.top_k_accuracy]
    marked += [losses.classification_metrics, functools.partial(losses.top_k_accuracy, k=2)]
    assert all(losses.takes_integer_labels(fn) for fn in marked)
    assert not losses.takes_integer_labels(losses.mse)
    assert not losses.takes_integer_labels(lambda logits, labels: 0.0)

    @losses.integer_labels
    def mine(logits, labels):
        return losses.softmax_cross_entropy(logits, labels)

    assert losses.takes_integer_labels(mine)


# -- soft targets and label smoothing ----------------------------------------------------------


def _np_soft_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.mean(-(targets * log_p).sum(axis=1)))


def _soft(rng, b=13, k=7):
    t = rng.random((b, k))
    return (t / t.sum(1, keepdims=True)).astype(np.float32)


def test_soft_cross_entropy_matches_numpy(rng):
    logits, labels = _batch(rng)
    targets = _soft(rng)
    got = losses.soft_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
    assert got.shape == () and got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), _np_soft_cross_entropy(logits, targets), rtol=1e-6)
    # One-hot targets and integer labels give the plain cross-entropy.
    one_hot = np.eye(7, dtype=np.float32)[labels]
    plain = _np_cross_entropy(logits, labels).mean()
    np.testing.assert_allclose(float(losses.soft_cross_entropy(logits, one_hot)), plain, rtol=1e-6)
    np.testing.assert_allclose(float(losses.soft_cross_entropy(logits, labels)), plain, rtol=1e-6)
    assert not losses.takes_integer_labels(losses.soft_cross_entropy)


def test_soft_cross_entropy_gradient_is_softmax_minus_targets_over_batch(rng):
    logits, _ = _batch(rng, b=5, k=4)
    targets = _soft(rng, b=5, k=4)
    grad = jax.grad(losses.soft_cross_entropy)(jnp.asarray(logits), jnp.asarray(targets))
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(grad), (p - targets) / 5, atol=1e-6)


@pytest.mark.parametrize(
    "targets", [np.zeros((4, 2), np.float32), np.zeros((4, 3), np.int32), np.zeros(4, np.float32)]
)
def test_soft_cross_entropy_refuses_other_targets(targets):
    with pytest.raises(ShapeError, match=r"expected floating targets of the logits' shape"):
        losses.soft_cross_entropy(jnp.zeros((4, 3)), jnp.asarray(targets))


@pytest.mark.parametrize("s", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_numpy(rng, s):
    logits, labels = _batch(rng)
    k = logits.shape[1]
    targets = np.eye(k)[labels] * (1 - s) + s / k
    got = losses.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), label_smoothing=s)
    np.testing.assert_allclose(float(got), _np_soft_cross_entropy(logits, targets), rtol=1e-6)
    # timm's LabelSmoothingCrossEntropy: (1 - s) * nll + s * mean_k(-log p_k).
    z = logits.astype(np.float64)
    log_p = z - z.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    timm = (1 - s) * -log_p[np.arange(len(labels)), labels] + s * -log_p.mean(1)
    np.testing.assert_allclose(float(got), timm.mean(), rtol=1e-6)
    smoothed = functools.partial(losses.softmax_cross_entropy, label_smoothing=s)
    assert losses.takes_integer_labels(smoothed)


@pytest.mark.parametrize("s", [1.0, -0.1, "0.1", True])
def test_label_smoothing_must_be_a_probability(s):
    with pytest.raises((ValueError, TypeError), match="label_smoothing"):
        losses.softmax_cross_entropy(jnp.zeros((4, 3)), jnp.zeros(4, jnp.int32), label_smoothing=s)


def test_metrics_with_soft_targets_use_their_argmax(rng):
    logits, _ = _batch(rng, b=40, k=6)
    targets = _soft(rng, b=40, k=6)
    hard = targets.argmax(1)
    expected = np.mean(np.argmax(logits, 1) == hard)
    assert 0 < expected < 1
    assert float(losses.accuracy(logits, targets)) == pytest.approx(expected)
    assert float(losses.accuracy_metrics(logits, targets)["accuracy"]) == pytest.approx(expected)
    assert float(losses.accuracy_metrics(logits, hard)["accuracy"]) == pytest.approx(expected)
    assert float(losses.top_k_accuracy(logits, targets, k=3)) == pytest.approx(
        _np_top_k(logits, hard, 3)
    )
    m = losses.classification_metrics(logits, targets)
    np.testing.assert_allclose(float(m["loss"]), _np_soft_cross_entropy(logits, targets), rtol=1e-6)
    assert float(m["accuracy"]) == pytest.approx(expected)
    # The default metrics cannot tell soft targets from regression targets: no accuracy.
    from jcnn.training.estimators import default_metrics

    assert default_metrics(jnp.asarray(logits), jnp.asarray(targets)) == {}
