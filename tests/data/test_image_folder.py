"""jcnn.data.image_folder: a generated folder of JPEGs in, uint8 batches out, and jcnn.fit on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optax
import pytest
from PIL import Image

import jcnn
from jcnn.data import LoadError, decode_image, eval_transform, image_folder
from jcnn.data.image_folder import load_image

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def make_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """``root/<split>/<class>/<i>.jpg``: 40x30 JPEGs of a class colour plus noise."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                noise = rng.integers(-30, 30, (30, 40, 3))
                pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("folder"), {"train": 8, "val": 3})


def test_batches_are_uint8_views_with_torchvision_labels(demo):
    source = image_folder(demo, image_size=16, batch_size=4, seed=0)
    assert source.classes == ("blue", "green", "red") and len(source) == 24 // 4
    images, labels = next(iter(source))
    assert images.dtype == np.uint8 and images.shape == (4, 16, 16, 3)
    assert labels.dtype == np.int32 and labels.shape == (4,)
    # each image is its class colour: the label is the folder's sorted index
    for image, label in zip(images, labels):
        colour = np.asarray(COLOURS[source.classes[label]])
        assert np.abs(image.reshape(-1, 3).mean(0) - colour).max() < 25


def test_val_reads_val_in_order_with_the_eval_view(demo):
    source = image_folder(demo, train=False, image_size=16, batch_size=4)
    assert len(source) == 3  # 9 images, the last batch partial
    batches = list(iter(source))
    labels = np.concatenate([b[1] for b in batches])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    first = str(demo / "val" / "blue" / "000.jpg")
    reference = eval_transform(decode_image(first, min_size=round(16 / 0.875)), 16)
    np.testing.assert_array_equal(batches[0][0][0], reference)


def test_the_train_view_is_a_function_of_the_seed(demo):
    a = next(iter(image_folder(demo, image_size=16, batch_size=6, seed=3)))
    b = next(iter(image_folder(demo, image_size=16, batch_size=6, seed=3)))
    c = next(iter(image_folder(demo, image_size=16, batch_size=6, seed=4)))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_load_image_applies_the_augment_settings(demo):
    record = (str(demo / "train" / "red" / "000.jpg"), 2)
    rng = np.random.default_rng(0)
    image, label = load_image(record, rng, train=True, image_size=12, augment={"erasing": 1.0})
    assert image.shape == (12, 12, 3) and label == 2


def test_bad_settings_and_folders_are_named(demo, tmp_path):
    with pytest.raises(ValueError, match="unknown augment settings.*'colour'"):
        image_folder(demo, augment={"colour": 0.4})
    (tmp_path / "only" / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no val/"):
        image_folder(tmp_path / "only", train=False)


def test_fit_trains_on_an_image_folder(demo):
    from tests.helpers.folder_fit_worker import small_net

    net = small_net()
    train = image_folder(demo, image_size=16, batch_size=6, seed=0)
    val = image_folder(demo, train=False, image_size=16, batch_size=9)
    result = jcnn.fit(
        net, train, val=val, optimizer=optax.adam(0.05), epochs=4, progress=False, seed=0
    )
    assert result.history["val_accuracy"][-1] > 0.6  # chance is 1/3


def test_a_bad_image_is_named_when_read_or_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "d", {"train": 3, "val": 1})
    bad = root / "train" / "green" / "001.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # truncated
    (root / "train" / "green" / "notes.txt").write_text("not an image")
    source = image_folder(root, image_size=8, batch_size=9, seed=0)
    with pytest.raises(LoadError, match="001.jpg"):
        list(iter(source))
    skipping = image_folder(root, image_size=8, batch_size=4, seed=0, on_bad="skip")
    assert len(skipping.folder.samples) == 8 and len(skipping) == 2
    reasons = dict(skipping.folder.skipped)
    assert str(bad) in reasons and any(p.endswith("notes.txt") for p in reasons)
    assert sum(skipping.folder.counts().values()) == 2
    for images, _ in skipping:
        assert images.shape == (4, 8, 8, 3)


def test_the_train_view_is_torchvisions_when_the_box_is_small(demo):
    """Boxes under twice the view (every box of these 40x30 images at 16): decoded at full
    size, the view equals train_transform on the decoded image, draw for draw."""
    from jcnn.data.transforms import train_transform

    path = str(demo / "train" / "green" / "001.jpg")
    settings = {"color_jitter": 0.4, "erasing": 0.5, "hflip": 0.5}
    for seed in range(6):
        got, _ = load_image((path, 1), np.random.default_rng(seed), train=True, image_size=16,
                            augment=settings)  # fmt: skip
        want = train_transform(np.random.default_rng(seed), decode_image(path), 16, **settings)
        np.testing.assert_array_equal(got, want)


def test_a_large_box_is_decoded_reduced_and_resized_from_there(tmp_path):
    """A 960x720 JPEG at 64: boxes of 128+ px decode at 1/2-1/8 (libjpeg's DCT scaling), the
    view within a few grey levels of the full-size decode's (smooth content)."""
    from jcnn.data.transforms import random_resized_crop_params, resized_crop

    yy, xx = np.mgrid[0:720, 0:960]
    pixels = np.stack([xx * 255 // 960, yy * 255 // 720, (xx + yy) * 255 // 1680], -1)
    path = tmp_path / "large.jpg"
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=95)
    full = decode_image(path)
    reduced = 0
    for seed in range(12):
        box = random_resized_crop_params(np.random.default_rng(seed), 720, 960)
        large = min(box[2], box[3]) >= 128
        reduced += large
        got, _ = load_image((str(path), 0), np.random.default_rng(seed), train=True,
                            image_size=64, augment={"hflip": 0.0})  # fmt: skip
        want = resized_crop(full, *box, 64)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.mean() < 2.0 and diff.max() <= 16, (seed, box, diff.mean(), diff.max())
        assert large == (diff.max() > 0)  # a large box took the other path; a small one exact
    assert reduced >= 3
