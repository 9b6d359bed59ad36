"""experiments/segmentation.py and the parts it rests on: the U-Net's shapes and parameter count
(hand-counted for the 2015 paper's configuration), the per-pixel loss and IoU against NumPy,
the generated shapes, and a quick run well above chance (its JSON and plots)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import jcnn
from experiments import segmentation
from jcnn.models.unet import unet
from jcnn.training.segmentation import (
    IGNORE,
    confusion_matrix,
    iou_from_confusion,
    pixel_cross_entropy,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_unet_shapes_and_the_papers_parameter_count():
    # 572 -> 388 (Ronneberger et al. 2015, fig. 1); 31,030,658 parameters counted by hand:
    # encoder 18,842,048 + 2x2 up-convs 2,786,240 + decoder 9,402,240 + 1x1 head 130
    original = unet(2, base=64, depth=4, padding="valid", batch_norm=False)
    assert original.output_shape((572, 572, 1)) == (388, 388, 2)
    assert jcnn.count_params(original, (572, 572, 1)) == 31_030_658
    for up in ("transpose", "upsample"):
        net = unet(3, base=4, depth=2, up=up)
        assert net.output_shape((16, 16, 2)) == (16, 16, 3)
        y, _ = jcnn.batched(net.apply)(*net.init(jax.random.key(0), (16, 16, 2))[1:],
                                      np.ones((2, 16, 16, 2), np.float32))  # fmt: skip
        assert y.shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="up='bilinear'"):
        unet(2, up="bilinear")


def test_pixel_loss_and_iou_against_numpy(rng):
    logits = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 5, 4)).astype(np.int32)
    labels[0, 0, :2] = IGNORE
    keep = labels != IGNORE
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.take_along_axis(log_p, np.where(keep, labels, 0)[..., None], -1)[..., 0][keep].mean()
    np.testing.assert_allclose(pixel_cross_entropy(logits, labels), want, rtol=1e-5)
    c = np.zeros((3, 3), int)
    for t, p in zip(labels[keep], logits.argmax(-1)[keep]):
        c[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(logits, labels), c)
    per_class, mean = iou_from_confusion(c)
    for k in range(3):
        inter = c[k, k]
        assert per_class[k] == pytest.approx(inter / (c[k].sum() + c[:, k].sum() - inter))
    assert mean == pytest.approx(per_class.mean())


def test_generated_shapes_are_deterministic_and_labelled():
    x, y = segmentation.make_shapes(6, 24, seed=3)
    x2, y2 = segmentation.make_shapes(6, 24, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert x.shape == (6, 24, 24, 1) and y.shape == (6, 24, 24) and 0 <= x.min() <= x.max() <= 1
    assert set(np.unique(y)) <= {0, 1, 2, 3} and (y > 0).any() and (y == 0).any()


def test_quick_run_is_well_above_chance(tmp_path):
    summary = segmentation.main(["--quick", "--no-progress", "--out", str(tmp_path)])
    assert summary["val_mean_iou"] > 2 * summary["chance_mean_iou"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["val_mean_iou"] == pytest.approx(summary["val_mean_iou"])
    for name in ("segmentation.png", "learning_curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
