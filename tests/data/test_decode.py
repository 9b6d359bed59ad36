"""decode_image: pixels equal torchvision's pil_loader (``Image.convert("RGB")``) for every mode,
JPEG draft mode gives the expected reduced size close to a full decode, bad data raises naming the file."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageFile

from jcnn.data import ImageDecodeError, decode_image, open_image


def _smooth(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth RGB image (JPEG's DCT scaling is close to a resize only on smooth content)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [
        127 + 100 * np.sin(x / width * math.pi * f1 + p) * np.cos(y / height * math.pi * f2)
        for f1, f2, p in rng.uniform(0.5, 2.0, size=(3, 3))
    ]
    return Image.fromarray(np.stack(channels, -1).clip(0, 255).astype(np.uint8))


def _make(tmp_path, name: str, kind: str):
    """Write one small image of the given kind; returns its path."""
    base = _smooth(16, 12)
    path = tmp_path / name
    if kind == "rgb_jpeg":
        base.save(path, "JPEG", quality=90)
    elif kind == "rgb_png":
        base.save(path, "PNG")
    elif kind == "gray_png":
        base.convert("L").save(path, "PNG")
    elif kind == "gray_jpeg":
        base.convert("L").save(path, "JPEG")
    elif kind == "cmyk_jpeg":
        base.convert("CMYK").save(path, "JPEG")
    elif kind == "rgba_png":
        rgba = base.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(base.size))
        rgba.save(path, "PNG")
    elif kind == "la_png":
        base.convert("LA").save(path, "PNG")
    elif kind == "palette_png":
        base.quantize(16).save(path, "PNG")
    elif kind == "palette_transparent_png":
        base.quantize(16).save(path, "PNG", transparency=3)
    elif kind == "bmp":
        base.save(path, "BMP")
    else:
        raise AssertionError(kind)
    return path


KINDS = [
    "rgb_jpeg",
    "rgb_png",
    "gray_png",
    "gray_jpeg",
    "cmyk_jpeg",
    "rgba_png",
    "la_png",
    "palette_png",
    "palette_transparent_png",
    "bmp",
]


@pytest.mark.parametrize("kind", KINDS)
def test_pixels_equal_pil_loader(tmp_path, kind):
    path = _make(tmp_path, f"image.{kind.split('_')[-1]}", kind)
    with Image.open(path) as img:
        expected = np.asarray(img.convert("RGB"))  # torchvision's pil_loader
    got = decode_image(path)
    assert got.dtype == np.uint8 and got.shape == (12, 16, 3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(decode_image(str(path)), expected)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), expected)
    assert got.flags.writeable and got.flags.c_contiguous
    opened = open_image(path)  # the same pixels as a PIL image (the loaders' fast path)
    assert opened.mode == "RGB" and np.array_equal(np.asarray(opened), expected)


@pytest.mark.parametrize(
    ("min_size", "scale"),
    [(200, 1), (100, 2), (61, 2), (60, 4), (30, 8), (1, 8)],
)
def test_draft_reduced_size(tmp_path, min_size, scale):
    width, height = 320, 243  # odd height: the reduced size rounds up, ceil(H / s)
    path = tmp_path / "big.jpg"
    _smooth(width, height, seed=1).save(path, "JPEG", quality=95)
    got = decode_image(path, min_size=min_size)
    expected_size = (math.ceil(height / scale), math.ceil(width / scale))
    assert got.shape == (*expected_size, 3)
    assert min(got.shape[:2]) >= min(min_size, height)
    # Close to a full decode resized by Pillow to the same size.
    with Image.open(path) as img:
        full = img.convert("RGB").resize(expected_size[::-1], Image.Resampling.BOX)
    diff = np.abs(got.astype(np.int16) - np.asarray(full).astype(np.int16)).mean()
    assert diff < 4.0, diff


def test_draft_keeps_min_size_on_every_shape(tmp_path):
    """The shorter side stays >= min_size for any image size and min_size (portrait too)."""
    rng = np.random.default_rng(0)
    for i in range(6):
        width, height = (int(v) for v in rng.integers(17, 140, size=2))
        path = tmp_path / f"{i}.jpg"
        _smooth(width, height, seed=i).save(path, "JPEG")
        for min_size in (1, 8, 17, 33, 200):
            got = decode_image(path, min_size=min_size)
            assert min(got.shape[:2]) >= min(min_size, width, height)


def test_min_size_on_png_and_cmyk(tmp_path):
    png = _make(tmp_path, "a.png", "rgb_png")
    assert decode_image(png, min_size=1).shape == (12, 16, 3)  # no reduced decode for PNG
    path = tmp_path / "cmyk.jpg"
    _smooth(64, 48).convert("CMYK").save(path, "JPEG")
    got = decode_image(path, min_size=12)
    assert got.shape == (12, 16, 3)


def test_truncated_jpeg_names_the_file(tmp_path):
    path = tmp_path / "truncated.jpg"
    buffer = io.BytesIO()
    _smooth(64, 48).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageDecodeError, match=r"truncated\.jpg.*truncated"):
        decode_image(path)
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        decode_image(path, min_size=8)


def test_random_bytes_and_text_name_the_file(tmp_path):
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageDecodeError, match="noise.jpg") as info:
        decode_image(noise)
    assert isinstance(info.value, ValueError)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageDecodeError, match="notes.png"):
        decode_image(text)
    with pytest.raises(ImageDecodeError, match="<5 bytes>"):
        decode_image(b"hello")


def test_corrupt_png_names_the_file(tmp_path):
    path = _make(tmp_path, "corrupt.png", "rgb_png")
    data = bytearray(path.read_bytes())
    data[60:80] = bytes(20)  # inside the IDAT stream
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match="corrupt.png"):
        decode_image(path)


def test_missing_file_and_bad_min_size(tmp_path):
    with pytest.raises(FileNotFoundError):
        decode_image(tmp_path / "absent.jpg")
    path = _make(tmp_path, "a.jpg", "rgb_jpeg")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="min_size"):
            decode_image(path, min_size=bad)


@pytest.mark.parametrize(("limit", "scale"), [(1, 1), (2, 2), (3, 2), (5, 4), (8, 8), (100, 8)])
def test_max_scale_reduces_a_jpeg_within_the_limit(tmp_path, limit, scale):
    width, height = 331, 243  # odd: the reduced size rounds up
    path = tmp_path / "big.jpg"
    _smooth(width, height).save(path, "JPEG")
    seen: list[tuple[int, int]] = []

    def max_scale(w: int, h: int) -> int:
        seen.append((w, h))
        return limit

    image = open_image(path, max_scale=max_scale)
    assert seen == [(width, height)]  # the header's size, before decoding
    assert image.size == (math.ceil(width / scale), math.ceil(height / scale))
    png = tmp_path / "big.png"
    _smooth(width, height).save(png, "PNG")
    assert open_image(png, max_scale=max_scale).size == (width, height)  # no reduced decode
