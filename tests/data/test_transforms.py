"""Host image transforms against torchvision 0.28 (PIL path), recorded in
``tests/fixtures/transforms.npz`` by ``tests/fixtures/make_transform_fixtures.py`` (no torch here).

Tolerances: pixels are compared exactly (0 grey levels) wherever jcnn makes the same Pillow
calls as torchvision (everything here: both used Pillow 13.0.0); resampling cases allow 1 grey
level so a different Pillow build does not fail them. Random decisions are checked by replaying
torchvision's recorded draws through jcnn's sampling code (the box / op / factors must then be
identical), and jcnn's own numpy sampling statistically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from jcnn.data import autoaugment as aa
from jcnn.data import transforms as tr

FIX = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "transforms.npz")
IMAGE, PORTRAIT, SMALL = FIX["image"], FIX["portrait"], FIX["small"]


def keys(prefix: str) -> list[str]:
    return sorted(k for k in FIX.files if k.startswith(prefix))


def cases(prefix: str) -> list[str]:
    return sorted(
        {k.split("/")[1] for k in keys(prefix + "/") if k.split("/")[1].isdigit()}, key=int
    )


class Replay:
    """A RandomSource returning recorded torch draws in order (uniform ignores its bounds)."""

    def __init__(self, draws: np.ndarray):
        self.draws = [float(d) for d in draws if not math.isnan(d)]
        self.used = 0

    def uniform(self, low: float, high: float) -> float:
        self.used += 1
        return self.draws[self.used - 1]

    def integers(self, low: int, high: int) -> int:
        value = self.draws[self.used]
        assert value == int(value) and low <= value < high, (value, low, high)
        self.used += 1
        return int(value)

    def done(self) -> bool:
        return self.used == len(self.draws)


def assert_pixels(got: np.ndarray, want: np.ndarray, atol: int) -> None:
    assert got.dtype == np.uint8 and got.shape == want.shape, (got.shape, want.shape)
    diff = np.abs(got.astype(int) - want.astype(int)).max(initial=0)
    assert diff <= atol, f"max |diff| {diff} grey levels > {atol}"


# --- deterministic geometry: resize, centre crop, crop + resize, eval view (atol 1: resampling)


@pytest.mark.parametrize("key", keys("resize/"))
def test_resize_shorter_matches_torchvision(key):
    _, name, size, interp = key.split("/")
    got = tr.resize_shorter(FIX[name], int(size), interp)
    assert_pixels(got, FIX[key], atol=1)


@pytest.mark.parametrize("key", keys("center_crop/"))
def test_center_crop_matches_torchvision(key):
    h, w = map(int, key.split("/")[1].split("x"))
    assert_pixels(tr.center_crop(IMAGE, (h, w)), FIX[key], atol=0)  # pure indexing: exact


@pytest.mark.parametrize("key", keys("eval/"))
def test_eval_transform_is_resize_then_center_crop(key):
    size = int(key.split("/")[1])
    assert_pixels(tr.eval_transform(IMAGE, image_size=size), FIX[key], atol=1)


@pytest.mark.parametrize("case", cases("resized_crop"))
def test_resized_crop_matches_torchvision(case):
    top, left, h, w = FIX[f"resized_crop/{case}/box"].tolist()
    size = tuple(FIX[f"resized_crop/{case}/size"].tolist())
    interp = ("bilinear", "bicubic")[int(FIX[f"resized_crop/{case}/interp"])]
    got = tr.resized_crop(IMAGE, top, left, h, w, size, interp)
    assert_pixels(got, FIX[f"resized_crop/{case}/out"], atol=1)


def test_a_pil_image_gives_the_pixels_of_its_array():
    """The loaders pass Pillow images through the resizing transforms (no NumPy round trip)."""
    from PIL import Image

    pil = Image.fromarray(IMAGE, "RGB")
    for fn in (
        lambda im: tr.resize(im, (20, 30), "bicubic"),
        lambda im: tr.resize_shorter(im, 24),
        lambda im: tr.resize_shorter(im, min(IMAGE.shape[:2])),  # no resize: a copy
        lambda im: tr.resized_crop(im, 3, 5, 20, 25, 16),
        lambda im: tr.random_resized_crop(7, im, 16),
        lambda im: tr.eval_transform(im, 16),
        lambda im: tr.train_transform(3, im, 16, color_jitter=0.4, trivial_augment=True),
    ):
        want, got = fn(IMAGE), fn(pil)
        assert isinstance(got, np.ndarray) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="RGB PIL image, got mode 'L'"):
        tr.resize(pil.convert("L"), 8)


def test_hflip_mirrors_columns():
    assert np.array_equal(tr.hflip(IMAGE), IMAGE[:, ::-1])


# --- random-resized-crop: torchvision's recorded draws replayed give its boxes exactly


def test_random_resized_crop_params_replay_torchvision():
    draws, args, params = FIX["rrc/draws"], FIX["rrc/args"], FIX["rrc/params"]
    fallbacks = 0
    for d, a, want in zip(draws, args, params, strict=True):
        src = Replay(d)
        got = tr.random_resized_crop_params(src, int(a[0]), int(a[1]), (a[2], a[3]), (a[4], a[5]))
        assert got == tuple(want.tolist()), (a, got, want)
        assert src.done()
        fallbacks += len(src.draws) == 20
    assert 10 < fallbacks < len(draws)  # both the sampled boxes and the centre fallback covered


def test_random_resized_crop_sampling_statistics():
    """jcnn's own draws (numpy): boxes fit; area fraction uniform and log ratio symmetric.

    With scale (0.08, 0.5) on a 1000x1000 image every first attempt fits, so the accepted box
    follows the sampling rule itself. Tolerance: means within 0.01 of the theoretical ones
    (about 5 standard errors over 4000 draws)."""
    rng = np.random.default_rng(0)
    boxes = [tr.random_resized_crop_params(rng, 1000, 1000, (0.08, 0.5)) for _ in range(4000)]
    top, left, h, w = np.array(boxes).T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 1000).all() and (left + w <= 1000).all()
    area, log_ratio = h * w / 1e6, np.log(w / h)
    assert abs(area.mean() - 0.29) < 0.01  # mean of U(0.08, 0.5)
    assert abs(log_ratio.mean()) < 0.01  # log-uniform in (3/4, 4/3): symmetric about 0
    assert log_ratio.min() > math.log(3 / 4) - 0.01 and log_ratio.max() < math.log(4 / 3) + 0.01
    assert abs(((top + h / 2) / 1000).mean() - 0.5) < 0.01  # placed uniformly


def test_random_resized_crop_output_and_seed():
    a = tr.random_resized_crop(7, IMAGE, (16, 12))
    assert a.shape == (16, 12, 3) and a.dtype == np.uint8
    assert np.array_equal(a, tr.random_resized_crop(np.random.default_rng(7), IMAGE, (16, 12)))


# --- colour: each op at a given factor exactly, ColorJitter's random order and factors replayed


@pytest.mark.parametrize("key", keys("color/"))
def test_color_ops_match_torchvision(key):
    _, op, factor = key.split("/")
    assert_pixels(tr.adjust_color(SMALL, op, float(factor)), FIX[key], atol=0)


@pytest.mark.parametrize("case", cases("jitter"))
def test_color_jitter_replays_torchvision(case):
    src = Replay(FIX[f"jitter/{case}/draws"])
    got = tr.color_jitter(src, SMALL, *FIX[f"jitter/{case}/args"].tolist())
    assert src.done()
    assert_pixels(got, FIX[f"jitter/{case}/out"], atol=0)


def test_color_jitter_factor_ranges_and_order():
    """Factors uniform in [max(0, 1-b), 1+b] (hue in [-h, h]); all 24 orders occur (3000 draws)."""
    rng = np.random.default_rng(1)
    draws = [tr.color_jitter_params(rng, 1.5, 0.4, 0.2, 0.1) for _ in range(3000)]
    orders = {tuple(op for op, _ in d) for d in draws}
    assert len(orders) == 24
    factors = {op: np.array([dict(d)[op] for d in draws]) for op in tr._JITTER_OPS}
    assert factors["brightness"].min() >= 0.0 and factors["brightness"].max() <= 2.5
    assert abs(factors["brightness"].mean() - 1.25) < 0.03  # U(0, 2.5): clipped below at 0
    assert 0.6 <= factors["contrast"].min() and factors["contrast"].max() <= 1.4
    assert -0.1 <= factors["hue"].min() and factors["hue"].max() <= 0.1
    assert tr.color_jitter_params(rng) == []  # all zero: no op, identity


# --- TrivialAugmentWide: magnitude bins, every op at given magnitudes, the forward replayed


def test_trivial_augment_magnitudes_match_torchvision():
    ours = aa.trivial_augment_wide_magnitudes(31)
    assert list(ours) == list(aa.TRIVIAL_AUGMENT_WIDE_OPS)
    for name, bins in ours.items():
        want = FIX[f"ta/magnitudes/{name}"]
        assert bins.shape == want.shape
        np.testing.assert_allclose(bins, want, rtol=1e-6, atol=1e-6)  # float32 linspace rounding


@pytest.mark.parametrize("key", keys("ta_op/"))
def test_trivial_augment_op_matches_torchvision(key):
    _, name, k, sign = key.split("/")
    bins = FIX[f"ta/magnitudes/{name}"]
    magnitude = int(sign) * (float(bins[int(k)]) if bins.ndim else 0.0)
    geometric = name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
    got = aa.apply_augment_op(SMALL, name, magnitude)
    assert_pixels(got, FIX[key], atol=1 if geometric else 0)


@pytest.mark.parametrize("case", cases("ta"))
def test_trivial_augment_wide_replays_torchvision(case):
    src = Replay(FIX[f"ta/{case}/draws"])
    got = aa.trivial_augment_wide(src, SMALL)
    assert src.done()
    assert_pixels(got, FIX[f"ta/{case}/out"], atol=1)


def test_trivial_augment_wide_draws_every_op():
    rng = np.random.default_rng(2)
    drawn = [aa.trivial_augment_wide_params(rng) for _ in range(2000)]
    assert {name for name, _ in drawn} == set(aa.TRIVIAL_AUGMENT_WIDE_OPS)
    rotations = np.array([m for name, m in drawn if name == "Rotate"])
    assert (rotations < 0).any() and (rotations > 0).any() and np.abs(rotations).max() <= 135


# --- random erasing: torchvision's recorded draws replayed, exact pixels


@pytest.mark.parametrize("case", cases("erasing"))
def test_random_erasing_replays_torchvision(case):
    p, *value = FIX[f"erasing/{case}/args"].tolist()
    src = Replay(FIX[f"erasing/{case}/draws"])
    got = tr.random_erasing(src, SMALL, p=p, value=[int(v) for v in value])
    assert src.done()
    assert_pixels(got, FIX[f"erasing/{case}/out"], atol=0)


def test_random_erasing_statistics():
    """Erased with probability p (+-0.03 over 2000 draws); the box area within scale."""
    rng = np.random.default_rng(3)
    img = np.full((60, 80, 3), 255, np.uint8)
    erased = [(tr.random_erasing(rng, img, p=0.3) == 0).all(-1).mean() for _ in range(2000)]
    hit = np.array(erased) > 0
    assert abs(hit.mean() - 0.3) < 0.03
    assert (np.array(erased)[hit] <= 0.33 + 0.02).all()


# --- the composed views


def test_train_transform_shapes_and_determinism():
    kw = dict(color_jitter=0.4, trivial_augment=True, erasing=0.25)
    a = tr.train_transform(5, IMAGE, 16, **kw)
    b = tr.train_transform(np.random.default_rng(5), IMAGE, 16, **kw)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    plain = tr.train_transform(5, IMAGE, 16, hflip=0.0, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3))
    assert_pixels(plain, tr.resize(IMAGE, 16), atol=0)  # the whole 30x40 image, resized
    flipped = tr.train_transform(5, IMAGE, 16, hflip=1.0, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3))
    assert np.array_equal(flipped, plain[:, ::-1])


def test_bad_inputs_say_what_arrived():
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        tr.center_crop(np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(ValueError, match="uint8"):
        tr.hflip(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="interpolation"):
        tr.resize(IMAGE, 8, "cubic")
    with pytest.raises(ValueError, match="unknown augmentation op"):
        aa.apply_augment_op(SMALL, "Blur", 1.0)
