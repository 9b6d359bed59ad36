"""Localization head, the course's loss (both cases) against NumPy, IoU, metrics, canvases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn.course.localization import (
    _resize,
    box_iou,
    ink_box,
    localization_head,
    localization_loss,
    localization_metrics,
    localization_targets,
    place_digits,
)

K = 3


def np_course_loss(pred, target):
    """Section 5.8.1: (y1_hat - y1)^2 if p_c = 0, else sum_i (yi_hat - yi)^2; batch mean."""
    losses = []
    for p, t in zip(np.asarray(pred, np.float64), np.asarray(target, np.float64)):
        if t[0] == 0:
            losses.append((p[0] - t[0]) ** 2)
        else:
            losses.append(sum((p[i] - t[i]) ** 2 for i in range(len(t))))
    return float(np.mean(losses))


def _batch(rng, n=12):
    present = rng.random(n) < 0.5
    present[:2] = [True, False]
    boxes = rng.uniform(0, 0.5, (n, 4))
    labels = rng.integers(0, K, n)
    targets = localization_targets(present, boxes, labels, K)
    preds = rng.uniform(0, 1, (n, 5 + K)).astype(np.float32)
    return preds, targets, present


def test_loss_no_object_is_presence_error_only(rng):
    preds, _, _ = _batch(rng)
    target = np.zeros((1, 5 + K), np.float32)
    target[0, 1:] = rng.uniform(-5, 5, 4 + K)  # don't care: must not count
    got = float(localization_loss(jnp.asarray(preds[:1]), jnp.asarray(target)))
    assert got == pytest.approx(float(preds[0, 0]) ** 2, rel=1e-6)
    assert got == pytest.approx(np_course_loss(preds[:1], target), rel=1e-6)


def test_loss_with_object_is_full_squared_error(rng):
    preds, targets, present = _batch(rng)
    i = int(np.flatnonzero(present)[0])
    got = float(localization_loss(jnp.asarray(preds[i : i + 1]), jnp.asarray(targets[i : i + 1])))
    want = float(np.sum((preds[i].astype(np.float64) - targets[i]) ** 2))
    assert got == pytest.approx(want, rel=1e-6)


def test_loss_mixed_batch_vs_numpy(rng):
    for _ in range(3):
        preds, targets, _ = _batch(rng)
        got = float(localization_loss(jnp.asarray(preds), jnp.asarray(targets)))
        assert got == pytest.approx(np_course_loss(preds, targets), rel=1e-6)


def test_nan_dont_care_gives_same_loss_and_finite_gradient(rng):
    preds, targets, present = _batch(rng)
    with_nan = targets.copy()
    with_nan[~present, 1:] = np.nan
    loss = lambda p, t: localization_loss(p, t)  # noqa: E731
    assert float(loss(preds, with_nan)) == pytest.approx(float(loss(preds, targets)), rel=1e-6)
    g_nan = np.asarray(jax.grad(loss)(jnp.asarray(preds), jnp.asarray(with_nan)))
    g = np.asarray(jax.grad(loss)(jnp.asarray(preds), jnp.asarray(targets)))
    assert np.isfinite(g_nan).all()
    np.testing.assert_allclose(g_nan, g, rtol=1e-6)
    # Hand-derived gradient: 2 (p - t) / B on the used entries, 0 elsewhere.
    used = np.where(present[:, None], True, np.arange(5 + K)[None, :] == 0)
    np.testing.assert_allclose(g, np.where(used, 2 * (preds - targets) / len(preds), 0), rtol=1e-5)


def test_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="5 \\+ K"):
        localization_loss(jnp.zeros((2, 8)), jnp.zeros((2, 7)))


def test_head_output_layout(rng):
    head = localization_head(K)
    assert jcnn.output_shape(head, (16,)) == (5 + K,)
    _, params, state = head.init(jax.random.key(0), (16,))
    y, _ = jcnn.batched(head.apply)(params, state, jnp.asarray(rng.standard_normal((4, 16))))
    y = np.asarray(y)
    assert ((y >= 0) & (y <= 1)).all()
    np.testing.assert_allclose(y[:, 5:].sum(-1), 1.0, rtol=1e-5)


def test_box_iou_hand_values():
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 2], [0, 0, 2, 2], [0.1, 0.2, 0.4, 0.2]])
    b = np.array([[0, 0, 2, 2], [1, 0, 2, 2], [3, 3, 1, 1], [0.2, 0.2, 0.2, 0.4]])
    # identical 1; half overlap 2 / (4 + 4 - 2); disjoint 0; 0.04 / (0.08 + 0.08 - 0.04)
    np.testing.assert_allclose(np.asarray(box_iou(a, b)), [1.0, 1 / 3, 0.0, 1 / 3], rtol=1e-6)


def test_metrics_hand_made():
    t = localization_targets(
        np.array([True, True, False, False]), np.full((4, 4), 0.25), np.array([0, 1, 0, 0]), K
    )
    p = np.zeros_like(t)
    p[0] = [0.9, 0.25, 0.25, 0.25, 0.25, 0.8, 0.1, 0.1]  # present, class right, box exact
    p[1] = [0.9, 0.25, 0.25, 0.25, 0.125, 0.8, 0.1, 0.1]  # class wrong, half the box
    p[2] = [0.1, 0, 0, 0, 0, 1, 0, 0]  # correctly empty
    p[3] = [0.7, 0, 0, 0, 0, 1, 0, 0]  # false alarm
    m = {k: float(v) for k, v in localization_metrics(jnp.asarray(p), jnp.asarray(t)).items()}
    assert m == pytest.approx(
        {"accuracy": 0.5, "presence_accuracy": 0.75, "class_accuracy": 0.5, "mean_iou": 0.75}
    )


def test_place_digits_boxes_and_empties():
    digits = np.zeros((200, 28, 28, 1), np.float32)
    digits[:, 5:15, 8:20] = 1.0  # ink rows 5..14, cols 8..19
    labels = np.arange(200) % 10
    canvases, targets = place_digits(digits, labels, sizes=(28,), empty_fraction=0.3, seed=1)
    assert canvases.shape == (200, 48, 48, 1) and targets.shape == (200, 15)
    present = targets[:, 0] == 1
    assert 0.15 < 1 - present.mean() < 0.45
    assert (canvases[~present] == 0).all() and (targets[~present, 1:] == 0).all()
    for c, t, label in zip(canvases[present], targets[present], labels[present]):
        col, row, w, h = ink_box(c)
        np.testing.assert_allclose(t[1:5] * 48, [col, row, w, h], atol=1e-4)
        assert (w, h) == (12, 10)
        assert t[5 + label] == 1 and t[5:].sum() == 1


def test_place_digits_rescales():
    digits = np.zeros((40, 28, 28, 1), np.float32)
    digits[:, 4:24, 4:24] = 1.0
    canvases, targets = place_digits(digits, np.zeros(40, int), sizes=(14, 28), empty_fraction=0)
    widths = np.round(targets[:, 3] * 48).astype(int)
    assert set(widths) <= {10, 11, 20} and len(set(widths)) >= 2
    with pytest.raises(ValueError, match="exceed"):
        place_digits(digits, np.zeros(40, int), canvas_size=20)


def test_resize_matches_jax_image_resize(rng):
    x = rng.random((3, 28, 28)).astype(np.float32)
    for size in (14, 20, 28):
        want = np.asarray(jax.image.resize(jnp.asarray(x), (3, size, size), "linear"))
        np.testing.assert_allclose(_resize(x, size), want, atol=1e-6)
