"""Image folders in torchvision's layout: ``root/<class>/**/<image>``, classes sorted to indices.

:func:`scan_image_folder` lists the files the way torchvision's ``ImageFolder`` does, so the class
indices and the sample order are the same as there [torchvision ``datasets.folder.find_classes`` and
``make_dataset``]:

- classes are the sorted names of the folders directly under ``root`` (``os.scandir``);
- per class (in that order), the class folder is walked with ``os.walk(followlinks=True)``, the walk
  sorted by folder path, and the file names of each folder sorted;
- a file is a sample when its name ends, case-insensitively, with one of :data:`IMG_EXTENSIONS`.

Files with other extensions are ignored, as torchvision does, but listed in ``skipped`` with the
reason ``"not an image extension"`` so a run can report them. Bad data is an error naming the file
or folder by default (``on_bad="raise"``); ``on_bad="skip"`` skips it and records why in ``skipped``:

- a root with no class folders: always an error (there is nothing to train on);
- a class folder with no file with an image extension: an error, or skipped (the class keeps its
  index, as with torchvision's ``allow_empty=True``, so train and val indices still agree);
- a file with an image extension that does not decode: found by :func:`verify_images` (cheap, before
  training) or when :func:`jcnn.data.decode_image` reads it (:class:`jcnn.data.ImageDecodeError`).

:func:`image_folder_splits` reads the ImageNet-style ``root/train/<class>/...`` and
``root/val/<class>/...`` and checks that both splits have the same classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from PIL import Image

from jcnn.data.decode import _FILE_ERRORS, _PILLOW_ERRORS, ImageDecodeError

__all__ = [
    "IMG_EXTENSIONS",
    "ImageFolderIndex",
    "image_folder_splits",
    "scan_image_folder",
    "verify_images",
]

#: torchvision's ``IMG_EXTENSIONS`` (``datasets.folder``), matched case-insensitively.
IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)

NOT_AN_IMAGE = "not an image extension"
EMPTY_CLASS = "empty class folder: no file with an image extension"

OnBad = Literal["raise", "skip"]


@dataclass(frozen=True)
class ImageFolderIndex:
    """The files of one image folder, in torchvision ``ImageFolder``'s order; nothing decoded yet.

    Attributes:
        root: The folder scanned (``~`` expanded).
        classes: Class folder names, sorted; the label of ``classes[i]`` is ``i``.
        class_to_idx: ``{class name: label}``.
        samples: ``(path, label)`` per image file, grouped by class in label order, each class's
            files in walk order (see the module docstring).
        skipped: ``(path, reason)`` for each file or folder left out: non-image files, and with
            ``on_bad="skip"`` empty class folders and files that failed :func:`verify_images`.
    """

    root: str
    classes: tuple[str, ...]
    class_to_idx: dict[str, int] = field(hash=False)
    samples: tuple[tuple[str, int], ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        """The number of samples."""
        return len(self.samples)

    def counts(self) -> dict[str, int]:
        """``{reason: how many}`` over ``skipped``, for a run's summary."""
        out: dict[str, int] = {}
        for _, reason in self.skipped:
            key = reason.split(":")[0]
            out[key] = out.get(key, 0) + 1
        return out


def _check_on_bad(on_bad: str) -> None:
    if on_bad not in ("raise", "skip"):
        raise ValueError(f"on_bad must be 'raise' or 'skip', got {on_bad!r}")


def _find_classes(root: str) -> tuple[str, ...]:
    if not os.path.exists(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"image folder {root!r} is not a folder")
    with os.scandir(root) as entries:
        classes = tuple(sorted(entry.name for entry in entries if entry.is_dir()))
    if not classes:
        raise FileNotFoundError(
            f"image folder {root!r} has no class folders: expected root/<class>/<image> "
            "(one sub-folder per class, as torchvision's ImageFolder)"
        )
    return classes


def scan_image_folder(
    root: str | os.PathLike[str],
    *,
    extensions: Sequence[str] = IMG_EXTENSIONS,
    on_bad: OnBad = "raise",
) -> ImageFolderIndex:
    """List the images of ``root/<class>/**/<file>`` as torchvision's ``ImageFolder`` does.

    Nothing is decoded: a file with an image extension whose content is bad is found by
    :func:`verify_images` or when decoded.

    Args:
        root: The folder holding one sub-folder per class.
        extensions: File name endings that make a file a sample, matched case-insensitively;
            default torchvision's :data:`IMG_EXTENSIONS`.
        on_bad: ``"raise"`` (default): an empty class folder is an error naming it. ``"skip"``:
            it is recorded in ``skipped`` and its class keeps its index.

    Returns:
        An :class:`ImageFolderIndex`.

    Raises:
        FileNotFoundError: ``root`` does not exist, has no class folders (whatever ``on_bad``),
            or (with ``on_bad="raise"``) a class folder has no image file.
        NotADirectoryError: ``root`` is a file.
        ValueError: ``on_bad`` is neither ``"raise"`` nor ``"skip"``.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> for name in ("cat", "dog"):
        ...     os.makedirs(os.path.join(root, name))
        ...     Image.new("RGB", (16, 12)).save(os.path.join(root, name, "0.png"))
        >>> index = scan_image_folder(root)
        >>> index.classes, [(os.path.relpath(p, root), y) for p, y in index.samples]
        (('cat', 'dog'), [('cat/0.png', 0), ('dog/0.png', 1)])
    """
    _check_on_bad(on_bad)
    root_str = os.path.expanduser(os.fspath(root))
    classes = _find_classes(root_str)
    class_to_idx = {name: i for i, name in enumerate(classes)}
    endings = tuple(e.lower() for e in extensions)
    samples: list[tuple[str, int]] = []
    skipped: list[tuple[str, str]] = []
    empty: list[str] = []
    for name in classes:
        class_dir = os.path.join(root_str, name)
        found = 0
        # Sorting the walk's (folder, dirs, files) tuples orders folders by path, as torchvision.
        for folder, _, fnames in sorted(os.walk(class_dir, followlinks=True)):
            for fname in sorted(fnames):
                path = os.path.join(folder, fname)
                if path.lower().endswith(endings):
                    samples.append((path, class_to_idx[name]))
                    found += 1
                else:
                    skipped.append((path, NOT_AN_IMAGE))
        if not found:
            empty.append(class_dir)
            skipped.append((class_dir, EMPTY_CLASS))
    if empty and on_bad == "raise":
        raise FileNotFoundError(
            f"image folder {root_str!r}: {len(empty)} class folder(s) with no file ending in "
            f"{', '.join(endings)}: {', '.join(repr(d) for d in empty)}. Add images, remove the "
            "folder, or pass on_bad='skip' to keep the class with no samples."
        )
    return ImageFolderIndex(root_str, classes, class_to_idx, tuple(samples), tuple(skipped))


def image_folder_splits(
    root: str | os.PathLike[str],
    *,
    splits: Sequence[str] = ("train", "val"),
    extensions: Sequence[str] = IMG_EXTENSIONS,
    on_bad: OnBad = "raise",
) -> dict[str, ImageFolderIndex]:
    """Scan the ImageNet-style ``root/train/<class>/...`` and ``root/val/<class>/...`` splits.

    Every split must have the same class folders as the first, so a label means the same class
    in all of them.

    Args:
        root: The folder holding one folder per split.
        splits: The split folder names; default ``("train", "val")``.
        extensions: As :func:`scan_image_folder`.
        on_bad: As :func:`scan_image_folder`.

    Returns:
        ``{split name: ImageFolderIndex}`` in the order of ``splits``.

    Raises:
        FileNotFoundError: A split folder is missing, or any error of :func:`scan_image_folder`.
        ValueError: A split's classes differ from the first split's (the message lists which).
    """
    _check_on_bad(on_bad)
    root_str = os.path.expanduser(os.fspath(root))
    out: dict[str, ImageFolderIndex] = {}
    for split in splits:
        path = os.path.join(root_str, split)
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"{root_str!r} has no {split!r} folder: expected {os.path.join(root_str, split)}"
                f"/<class>/<image> for each of the splits {tuple(splits)}"
            )
        out[split] = scan_image_folder(path, extensions=extensions, on_bad=on_bad)
    first, reference = next(iter(out.items()))
    for split, index in out.items():
        if index.classes != reference.classes:
            missing = sorted(set(reference.classes) - set(index.classes))
            extra = sorted(set(index.classes) - set(reference.classes))
            raise ValueError(
                f"{os.path.join(root_str, split)!r} has other classes than "
                f"{os.path.join(root_str, first)!r}: missing {missing}, extra {extra}. Both "
                "splits need the same class folders (an empty one is allowed with on_bad='skip') "
                "so that labels agree."
            )
    return out


def _verify_one(path: str) -> None:
    with Image.open(path) as img:
        if img.format == "JPEG":
            # Image.verify() checks nothing for JPEG; a decode at 1/8 scale (DCT scaling, a small
            # part of a full decode's cost) still reads every entropy-coded byte and so finds a
            # truncated or corrupt scan.
            img.draft(img.mode, (1, 1))
            img.load()
        else:
            img.verify()  # PNG: every chunk's CRC up to IEND; other formats: the header


def verify_images(index: ImageFolderIndex, *, on_bad: OnBad = "raise") -> ImageFolderIndex:
    """Open every sample cheaply to find truncated, corrupt and non-image files before training.

    PNG and most formats are checked with Pillow's ``Image.verify()`` (no pixel decode); JPEGs,
    for which ``verify()`` checks nothing, are decoded at 1/8 scale. A file that passes may in
    rare cases still fail a full decode, which then raises :class:`jcnn.data.ImageDecodeError`.

    Args:
        index: From :func:`scan_image_folder`.
        on_bad: ``"raise"`` (default): the first bad file is an error naming it. ``"skip"``: bad
            files are left out of ``samples`` and listed in ``skipped`` with Pillow's reason.

    Returns:
        ``index`` without the bad files (the same index when all are good).

    Raises:
        ImageDecodeError: With ``on_bad="raise"``, the first file that does not open; the
            message names it and says what was wrong.
        ValueError: ``on_bad`` is neither ``"raise"`` nor ``"skip"``.
    """
    _check_on_bad(on_bad)
    good: list[tuple[str, int]] = []
    bad: list[tuple[str, str]] = []
    for path, label in index.samples:
        try:
            _verify_one(path)
        except (*_FILE_ERRORS, *_PILLOW_ERRORS) as error:
            reason = f"cannot decode: {type(error).__name__}: {error}"
        else:
            good.append((path, label))
            continue
        if on_bad == "raise":
            raise ImageDecodeError(
                f"bad image {path!r} in {index.root!r}: {reason}. Delete or replace it, or pass "
                "on_bad='skip' to leave it out (listed in the index's skipped)."
            )
        bad.append((path, reason))
    if not bad:
        return index
    return replace(index, samples=tuple(good), skipped=index.skipped + tuple(bad))
