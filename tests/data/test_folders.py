"""Image folders: classes and sample order as torchvision's ImageFolder (an independent reimplementation
of its find_classes / make_dataset rules is the reference), ImageNet-style splits, and every bad-data
case raising with the file or folder named, or skipped and recorded with on_bad="skip"."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from jcnn.data import (
    ImageDecodeError,
    ImageFolderIndex,
    decode_image,
    image_folder_splits,
    scan_image_folder,
    verify_images,
)
from jcnn.data.folders import IMG_EXTENSIONS

TV_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _torchvision_reference(root):
    """torchvision.datasets.folder.find_classes + make_dataset, written out again."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    class_to_idx = {c: i for i, c in enumerate(classes)}
    samples = []
    for c in sorted(class_to_idx):
        for folder, _, fnames in sorted(os.walk(os.path.join(root, c), followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(folder, fname)
                if path.lower().endswith(TV_EXTENSIONS):
                    samples.append((path, class_to_idx[c]))
    return classes, class_to_idx, samples


def _image(seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).convert(mode)


def _good_folder(root):
    """Three classes, mixed formats and modes, an upper-case extension, a nested folder, a .txt."""
    (root / "cat" / "nested" / "deeper").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "Zebra").mkdir()  # upper case sorts first, as in torchvision
    _image(0).save(root / "cat" / "b.jpg", "JPEG")
    _image(1).save(root / "cat" / "a.PNG", "PNG")
    _image(2, "L").save(root / "cat" / "nested" / "gray.png", "PNG")
    _image(3, "CMYK").save(root / "cat" / "nested" / "deeper" / "cmyk.JPG", "JPEG")
    _image(4, "RGBA").save(root / "dog" / "alpha.png", "PNG")
    _image(5).quantize(8).save(root / "dog" / "palette.png", "PNG")
    _image(6).save(root / "dog" / "UPPER.JPG", "JPEG")
    (root / "dog" / "readme.txt").write_text("not an image")
    _image(7).save(root / "Zebra" / "z.jpeg", "JPEG")
    (root / "stray.jpg").write_bytes(b"")  # a file next to the class folders is not a class
    return root


def test_layout_matches_torchvision(tmp_path):
    root = _good_folder(tmp_path / "data")
    index = scan_image_folder(root)
    classes, class_to_idx, samples = _torchvision_reference(str(root))
    assert index.classes == tuple(classes) == ("Zebra", "cat", "dog")
    assert index.class_to_idx == class_to_idx
    assert list(index.samples) == samples
    assert len(index) == 8
    assert index.root == str(root)
    assert index.skipped == ((str(root / "dog" / "readme.txt"), "not an image extension"),)
    assert index.counts() == {"not an image extension": 1}
    rel = [os.path.relpath(p, root) for p, _ in index.samples]
    assert rel == [
        "Zebra/z.jpeg",
        "cat/a.PNG",
        "cat/b.jpg",
        "cat/nested/gray.png",
        "cat/nested/deeper/cmyk.JPG",
        "dog/UPPER.JPG",
        "dog/alpha.png",
        "dog/palette.png",
    ]
    assert verify_images(index) is index  # all good: the same index back


def test_extensions_tuple_is_torchvisions():
    assert IMG_EXTENSIONS == TV_EXTENSIONS


def test_walk_order_with_tricky_names(tmp_path):
    """Sorted walk tuples, not a global sort of paths: 'a b/x' vs 'a/x' vs 'a.png' as torchvision."""
    cls = tmp_path / "c"
    for sub in ("a", "a b", "a-b", "B"):
        (cls / sub).mkdir(parents=True)
        _image(0).save(cls / sub / "x.png")
    for name in ("a.png", "A.png", "_.png", "10.png", "9.png"):
        _image(0).save(cls / name)
    index = scan_image_folder(tmp_path)
    assert list(index.samples) == _torchvision_reference(str(tmp_path))[2]


def test_symlinked_folder_is_followed(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    _image(0).save(tmp_path / "elsewhere" / "x.png")
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "cat" / "linked")
    index = scan_image_folder(tmp_path / "data")
    assert [os.path.relpath(p, tmp_path / "data") for p, _ in index.samples] == ["cat/linked/x.png"]


def test_decoded_pixels_equal_pil_loader(tmp_path):
    index = scan_image_folder(_good_folder(tmp_path / "data"))
    for path, _ in index.samples:
        with Image.open(path) as img:
            expected = np.asarray(img.convert("RGB"))
        np.testing.assert_array_equal(decode_image(path), expected)
        assert expected.shape == (12, 16, 3)


def test_custom_extensions(tmp_path):
    root = _good_folder(tmp_path / "data")
    index = scan_image_folder(root, extensions=(".PNG",), on_bad="skip")  # Zebra has none
    assert all(p.lower().endswith(".png") for p, _ in index.samples)
    assert len(index.samples) == 4
    with pytest.raises(FileNotFoundError, match="Zebra"):
        scan_image_folder(root, extensions=(".bmp",))


# ------------------------------------------------------------------ bad data


def test_no_class_folders_always_raises(tmp_path):
    (tmp_path / "loose.jpg").write_bytes(b"")
    for on_bad in ("raise", "skip"):
        with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*no class folders"):
            scan_image_folder(tmp_path, on_bad=on_bad)


def test_missing_root_and_file_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        scan_image_folder(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        scan_image_folder(tmp_path / "file")


def test_empty_class_folder(tmp_path):
    root = _good_folder(tmp_path / "data")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=r"empty'.*on_bad='skip'"):
        scan_image_folder(root)
    index = scan_image_folder(root, on_bad="skip")
    assert index.classes == ("Zebra", "cat", "dog", "empty")  # the class keeps its index
    assert index.class_to_idx["empty"] == 3
    assert all(label != 3 for _, label in index.samples)
    assert (str(root / "empty"), "empty class folder: no file with an image extension") in (
        index.skipped
    )
    assert index.counts() == {"not an image extension": 2, "empty class folder": 1}


def _bad_folder(root):
    _good_folder(root)
    buffer = io.BytesIO()
    _image(9).resize((64, 48)).save(buffer, "JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    noise = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    (root / "dog" / "noise.jpg").write_bytes(noise)
    return root


def test_bad_images_raise_naming_the_file(tmp_path):
    root = _bad_folder(tmp_path / "data")
    index = scan_image_folder(root)  # extensions only: bad content is not seen yet
    assert len(index) == 10
    with pytest.raises(ImageDecodeError, match=r"truncated\.jpg"):
        verify_images(index)
    with pytest.raises(ImageDecodeError, match=r"truncated\.jpg"):
        decode_image(root / "cat" / "truncated.jpg")
    with pytest.raises(ImageDecodeError, match=r"noise\.jpg"):
        decode_image(root / "dog" / "noise.jpg")


def test_bad_images_skipped_and_recorded(tmp_path):
    root = _bad_folder(tmp_path / "data")
    index = verify_images(scan_image_folder(root), on_bad="skip")
    good = scan_image_folder(_good_folder(tmp_path / "good"))
    assert [os.path.relpath(p, root) for p, _ in index.samples] == [
        os.path.relpath(p, good.root) for p, _ in good.samples
    ]
    assert [y for _, y in index.samples] == [y for _, y in good.samples]
    bad = {os.path.basename(p): reason for p, reason in index.skipped if "decode" in reason}
    assert set(bad) == {"truncated.jpg", "noise.jpg"}
    assert "truncated" in bad["truncated.jpg"]
    assert index.counts() == {"not an image extension": 1, "cannot decode": 2}
    for path, _ in index.samples:
        decode_image(path)


def test_verify_catches_corrupt_png_and_missing_file(tmp_path):
    root = _good_folder(tmp_path / "data")
    png = root / "dog" / "alpha.png"
    data = bytearray(png.read_bytes())
    data[60:70] = bytes(10)
    png.write_bytes(bytes(data))
    index = scan_image_folder(root)
    with pytest.raises(ImageDecodeError, match=r"alpha\.png"):
        verify_images(index)
    os.remove(root / "Zebra" / "z.jpeg")
    skipped = verify_images(index, on_bad="skip")
    assert {os.path.basename(p) for p, r in skipped.skipped if "decode" in r} == {
        "alpha.png",
        "z.jpeg",
    }


def test_on_bad_is_checked(tmp_path):
    root = _good_folder(tmp_path / "data")
    with pytest.raises(ValueError, match="on_bad"):
        scan_image_folder(root, on_bad="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_bad"):
        verify_images(scan_image_folder(root), on_bad="warn")  # type: ignore[arg-type]


# ------------------------------------------------------------------ splits


def test_splits(tmp_path):
    _good_folder(tmp_path / "train")
    _good_folder(tmp_path / "val")
    splits = image_folder_splits(tmp_path)
    assert list(splits) == ["train", "val"]
    assert all(isinstance(s, ImageFolderIndex) for s in splits.values())
    assert splits["train"].classes == splits["val"].classes == ("Zebra", "cat", "dog")
    assert splits["val"].root == str(tmp_path / "val")
    assert list(splits["val"].samples) == _torchvision_reference(str(tmp_path / "val"))[2]


def test_splits_class_mismatch(tmp_path):
    _good_folder(tmp_path / "train")
    _good_folder(tmp_path / "val")
    os.rename(tmp_path / "val" / "dog", tmp_path / "val" / "wolf")
    with pytest.raises(ValueError, match=r"val'.*missing \['dog'\], extra \['wolf'\]"):
        image_folder_splits(tmp_path)


def test_splits_missing_split_and_empty_val_class(tmp_path):
    _good_folder(tmp_path / "train")
    with pytest.raises(FileNotFoundError, match="'val'"):
        image_folder_splits(tmp_path)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "dog").mkdir()
    (tmp_path / "val" / "Zebra").mkdir()
    _image(0).save(tmp_path / "val" / "cat" / "x.png")
    with pytest.raises(FileNotFoundError, match="dog"):
        image_folder_splits(tmp_path)
    splits = image_folder_splits(tmp_path, on_bad="skip")
    assert splits["val"].classes == splits["train"].classes
    assert splits["val"].samples == ((str(tmp_path / "val" / "cat" / "x.png"), 1),)
