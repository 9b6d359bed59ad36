"""One entry point for a folder of images: :func:`image_folder` returns a streaming data source.

It joins the parts of :mod:`jcnn.data`: the folder scan (:func:`jcnn.data.folders.scan_image_folder`,
torchvision's layout and class order), the decoder (:func:`jcnn.data.decode.open_image`, JPEGs
decoded at reduced size where the view allows), the ImageNet views
(:func:`jcnn.data.transforms.train_transform` / :func:`~jcnn.data.transforms.eval_transform`) and
the Grain source (:class:`jcnn.data.stream.StreamSource`: worker processes, an order that is a
function of the seed and the epoch, a saveable position that ``jcnn.fit`` keeps in its
checkpoints, one shard per process). Images travel as uint8; normalise them on the device
(:func:`jcnn.data.stream.normalize_on_device` as the network's first layer).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jcnn.data.decode import open_image
from jcnn.data.folders import ImageFolderIndex, OnBad, scan_image_folder, verify_images
from jcnn.data.stream import StreamSource
from jcnn.data.transforms import (
    augment_view,
    eval_transform,
    random_resized_crop_params,
    resize_box,
    resized_crop,
)

__all__ = ["ImageFolderSource", "image_folder", "load_image"]

#: The settings of :func:`jcnn.data.transforms.train_transform` that ``augment=`` may give.
AUGMENT_KEYS = (
    "hflip",
    "scale",
    "ratio",
    "interpolation",
    "color_jitter",
    "trivial_augment",
    "erasing",
)


class ImageFolderSource(StreamSource):
    """A :class:`jcnn.data.stream.StreamSource` over an image folder's samples, which also says
    what the folder held: ``folder`` (:class:`~jcnn.data.folders.ImageFolderIndex`: classes,
    samples, what was skipped and why) and ``classes``."""

    def __init__(self, index: ImageFolderIndex, load: Any, **options: Any) -> None:
        super().__init__(index.samples, load, **options)
        self.folder = index
        self.classes = index.classes


#: The ``augment`` settings of the steps after the crop (:func:`jcnn.data.transforms.augment_view`).
_AFTER_CROP = ("hflip", "color_jitter", "trivial_augment", "erasing")


def _random_crop(
    path: str, rng: np.random.Generator, image_size: int, augment: dict[str, Any]
) -> np.ndarray:
    """The random-resized-crop view of the file at ``path``: its box drawn from the header's
    size, the JPEG decoded at the largest scale that keeps the box at least ``image_size``."""
    scale, ratio = augment.get("scale", (0.08, 1.0)), augment.get("ratio", (3 / 4, 4 / 3))
    interpolation = augment.get("interpolation", "bilinear")
    drawn: list[Any] = []

    def max_scale(width: int, height: int) -> int:
        box = random_resized_crop_params(rng, height, width, scale, ratio)
        drawn.append((width, box))
        return min(box[2], box[3]) // image_size

    image = open_image(path, max_scale=max_scale)
    width, (top, left, h, w) = drawn[0]
    reduced = round(width / image.width)  # the DCT scale: image.width == ceil(width / reduced)
    if reduced == 1:
        return resized_crop(image, top, left, h, w, image_size, interpolation)
    box = (left / reduced, top / reduced, (left + w) / reduced, (top + h) / reduced)
    return resize_box(image, box, image_size, interpolation)


def load_image(
    record: tuple[str, int],
    rng: np.random.Generator,
    *,
    train: bool,
    image_size: int,
    crop_fraction: float = 0.875,
    augment: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, int]:
    """One ``(path, label)`` record as a uint8 ``(image_size, image_size, 3)`` view and its label.

    Training: :func:`~jcnn.data.transforms.train_transform` with ``augment``'s settings, its
    random-resized-crop box drawn from the size in the file's header first, so that a JPEG whose
    box is at least twice ``image_size`` on both sides is decoded at the reduced scale (1/2, 1/4,
    1/8) that keeps it so, and the box resized from there (libjpeg's DCT scaling stands for the
    first part of the antialiased downscale; a box smaller than that, as every box of an
    ImageNet-sized image at 224, gives torchvision's pixels exactly). Evaluation: a JPEG is
    decoded at the smallest draft scale whose shorter side still covers the resize
    (``round(image_size / crop_fraction)``), then :func:`~jcnn.data.transforms.eval_transform`.
    A module-level function, so worker processes can unpickle it (bind the keywords with
    ``functools.partial``).
    """
    path, label = record
    if train:
        view = augment_view(rng, _random_crop(path, rng, image_size, dict(augment or {})),
                            **{k: v for k, v in (augment or {}).items() if k in _AFTER_CROP})  # fmt: skip
    else:
        image = open_image(path, min_size=round(image_size / crop_fraction))
        view = eval_transform(image, image_size, crop_fraction)
    return view, int(label)


def image_folder(
    root: str | os.PathLike[str],
    *,
    train: bool = True,
    image_size: int = 224,
    batch_size: int = 256,
    workers: int = 0,
    threads: int | None = None,
    seed: int = 0,
    augment: Mapping[str, Any] | None = None,
    crop_fraction: float = 0.875,
    drop_remainder: bool | None = None,
    on_bad: OnBad = "raise",
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> ImageFolderSource:
    """A data source of ``(images, labels)`` batches from a folder in torchvision's layout.

    ``root`` is either a folder of class folders (``root/<class>/<image>``) or an ImageNet-style
    root with ``train/`` and ``val/``: then ``train=True`` reads ``root/train`` and
    ``train=False`` reads ``root/val``. Classes are the sorted folder names (their indices are
    the labels, as torchvision's ``ImageFolder``).

    Args:
        root: the folder.
        train: the training view (random-resized-crop, flip, ``augment``; shuffled; the last
            partial batch dropped) or the evaluation view (resize + centre crop; in order;
            every image).
        image_size: the side of the square views.
        batch_size: the global batch (each of ``shard_count`` processes yields its share).
        workers: Grain worker processes that decode and transform (0: in this process).
        threads: loading threads per process (default: the CPU cores over the processes, at
            most 8; :func:`jcnn.data.stream.default_threads`).
        seed: the order of each epoch and each image's random view are functions of
            ``(seed, epoch)`` and ``(seed, epoch, image)`` only, so a resumed run sees the same.
        augment: settings of :func:`jcnn.data.transforms.train_transform` beyond the default
            crop and flip, e.g. ``{"color_jitter": 0.4, "trivial_augment": True, "erasing":
            0.25}`` (keys: :data:`AUGMENT_KEYS`).
        crop_fraction: the evaluation crop's share of the resized shorter side (0.875: 224 of
            256).
        drop_remainder: default ``train``.
        on_bad: ``"raise"`` (default): an empty class folder is an error naming it, and an
            undecodable image (truncated, corrupt, not an image) is an error naming the file
            when it is read (:class:`jcnn.data.stream.LoadError` from
            :class:`jcnn.data.decode.ImageDecodeError`). ``"skip"``: every file is checked
            first (:func:`jcnn.data.folders.verify_images`, a cheap reduced decode), and empty
            folders and bad files are left out and listed with their reason in
            ``source.folder.skipped`` (``source.folder.counts()`` for a run's summary).
        shard_index, shard_count: this process's shard (default: JAX's process index and count).

    Returns:
        An :class:`ImageFolderSource` (a :class:`jcnn.data.stream.StreamSource` with ``.folder``
        and ``.classes``); ``jcnn.fit`` takes it as ``train`` or ``val``.

    Raises:
        FileNotFoundError: no such folder, no class folders, an empty class folder.
        ValueError: unknown ``augment`` keys, ``train/`` and ``val/`` with different classes.

    Example (``tests/data/test_image_folder.py`` runs it on a generated folder)::

        source = image_folder(root, image_size=32, batch_size=4)
        images, labels = next(iter(source))   # uint8 (4, 32, 32, 3), int32 (4,)
    """
    unknown = sorted(set(augment or {}) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(
            f"image_folder: unknown augment settings {unknown}; accepted: {list(AUGMENT_KEYS)}"
        )
    folder = _split_folder(Path(root), train)
    index = scan_image_folder(folder, on_bad=on_bad)
    if on_bad == "skip":
        index = verify_images(index, on_bad="skip")
    load = functools.partial(
        load_image, train=train, image_size=image_size, crop_fraction=crop_fraction,
        augment=dict(augment or {}),
    )  # fmt: skip
    return ImageFolderSource(
        index,
        load,
        batch_size=batch_size,
        seed=seed,
        shuffle=train,
        drop_remainder=train if drop_remainder is None else drop_remainder,
        workers=workers,
        threads=threads,
        shard_index=shard_index,
        shard_count=shard_count,
    )


def _split_folder(root: Path, train: bool) -> Path:
    """``root/train`` or ``root/val`` for an ImageNet-style root, else ``root`` itself."""
    split = root / ("train" if train else "val")
    if (root / "train").is_dir() and split.is_dir():
        return split
    if (root / "train").is_dir() and not split.is_dir():
        raise FileNotFoundError(
            f"image_folder: {root} has train/ but no {split.name}/: give the class folder itself, "
            f"or add {split}/<class>/<image>"
        )
    return root
