"""jcnn.viz: every plot writes a real PNG (signature, decodable, sensible size); bad kernels fail."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from jcnn import viz

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png(path: Path) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] >= 50 and image.shape[1] >= 50
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write
    return image


def _history(epochs: int, seed: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {
        "epoch": list(range(1, epochs + 1)),
        "train_loss": list(np.linspace(2.0, 0.5, epochs) + 0.05 * rng.random(epochs)),
        "val_loss": list(np.linspace(2.1, 0.7, epochs)),
        "train_accuracy": list(np.linspace(0.3, 0.9, epochs)),
        "val_accuracy": list(np.linspace(0.25, 0.85, epochs)),
        "seconds": [1.0] * epochs,
    }


def test_learning_curves_png(tmp_path):
    path = tmp_path / "nested" / "curves.png"  # parent folders are created
    out = viz.learning_curves({"cnn": _history(5, 0), "mlp": _history(5, 1)}, path, title="t")
    assert Path(out) == path
    image = _read_png(path)
    assert image.shape[1] > image.shape[0]  # two panels side by side
    assert np.asarray(image[..., :3]).std() > 0.01  # not a blank canvas


def test_learning_curves_without_epoch_key_or_val(tmp_path):
    hist = {"train_loss": [1.0, 0.5, 0.25]}
    _read_png(viz.learning_curves({"run": hist}, tmp_path / "c.png"))


def test_filter_grid_png_and_content(tmp_path):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(5, 5, 1, 8)).astype(np.float32)
    a = _read_png(viz.filter_grid(kernel, tmp_path / "a.png", title="filters"))
    assert a.shape[1] > 2 * a.shape[0]  # one row of 8 panels
    b = _read_png(viz.filter_grid(-kernel, tmp_path / "b.png", title="filters"))
    assert a.shape == b.shape and not np.array_equal(a, b)  # the pixels show the weights
    tall = _read_png(viz.filter_grid(rng.normal(size=(3, 3, 4, 2)), tmp_path / "tall.png"))
    assert tall.shape[0] > tall.shape[1]  # 4 input channels x 2 filters
    _read_png(viz.filter_grid(np.zeros((3, 3, 1, 2)), tmp_path / "zeros.png"))  # all-zero kernel


@pytest.mark.parametrize("shape", [(5, 5, 8), (5, 5), (3, 3, 3, 1, 2), (9,)])
def test_filter_grid_rejects_other_kernel_shapes(tmp_path, shape):
    with pytest.raises(ValueError, match="kh, kw, C_in, C_out"):
        viz.filter_grid(np.zeros(shape), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_feature_maps_png(tmp_path):
    rng = np.random.default_rng(1)
    maps = {"conv1": rng.random((10, 10, 4)), "conv2": rng.random((4, 4, 20))}
    two = _read_png(viz.feature_maps(maps, tmp_path / "fm.png", max_channels=6))
    three = _read_png(
        viz.feature_maps(
            maps, tmp_path / "fm_in.png", image=rng.random((12, 12, 1)), max_channels=6
        )
    )
    assert three.shape[0] > two.shape[0]  # the input adds a row


def test_image_grid_png(tmp_path):
    rng = np.random.default_rng(2)
    images = [rng.random((8, 8, 1)) for _ in range(5)] + [rng.random((8, 8, 3)), rng.random((8, 8))]
    wide = _read_png(viz.image_grid(images, tmp_path / "g.png", titles=["a", "b"], cols=7))
    tall = _read_png(viz.image_grid(images, tmp_path / "g2.png", cols=2))
    assert wide.shape[1] > wide.shape[0] and tall.shape[0] > tall.shape[1]
