"""CIFAR-10 from its *binary* version (``cifar-10-binary.tar.gz``), never the pickled one.

Each ``.bin`` file is a sequence of 3073-byte records: one label byte (0..9) followed by the
32x32 red plane, then green, then blue (row-major, 1024 bytes each). ``data_batch_1.bin`` ..
``data_batch_5.bin`` hold the 50,000 training images and ``test_batch.bin`` the 10,000 test
images. They can be read from the extracted folder ``cifar-10-batches-bin/`` (or any folder
holding the ``.bin`` files directly) or straight from the ``.tar.gz`` archive, in memory, without
extracting anything to disk. :func:`load_cifar10` finds a split (or downloads the archive) as
:mod:`jcnn.data.download` describes and reads it with these readers.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jcnn.data.download import DEFAULT_TIMEOUT, candidate_dirs, ensure_files, verify_known
from jcnn.data.loading import PathLike, check_args, finish

__all__ = [
    "ARCHIVE_NAME",
    "CLASS_NAMES",
    "EXTRACTED_DIR",
    "IMAGE_SHAPE",
    "RECORD_BYTES",
    "SPLIT_FILES",
    "find_cifar_local",
    "find_cifar_source",
    "load_cifar10",
    "parse_cifar_records",
    "read_cifar10_split",
    "read_cifar_binary",
]

ARCHIVE_NAME = "cifar-10-binary.tar.gz"
EXTRACTED_DIR = "cifar-10-batches-bin"
IMAGE_SHAPE = (32, 32, 3)
RECORD_BYTES = 1 + 32 * 32 * 3
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def parse_cifar_records(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parses the bytes of one CIFAR-10 binary batch file.

    Args:
        data: the file content, a whole number of 3073-byte records.
        name: the file name used in error messages.

    Returns:
        ``(images, labels)``: uint8 images and int32 labels.

    Shapes:
        images: (N, 32, 32, 3) (channels last, from the R, G, B planes); labels: (N,).

    Raises:
        ValueError: the size is not a multiple of 3073 bytes, or a label is above 9.
    """
    if len(data) == 0 or len(data) % RECORD_BYTES:
        raise ValueError(
            f"{name}: size {len(data)} bytes is not a positive multiple of the CIFAR-10 record "
            f"size {RECORD_BYTES} (1 label byte + 3072 pixel bytes); the file is truncated or not "
            "a CIFAR-10 binary batch"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise ValueError(f"{name}: label byte {int(labels.max())} out of range 0..9")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar_binary(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 binary batch file from disk (see :func:`parse_cifar_records`).

    Shapes:
        images: (N, 32, 32, 3) uint8; labels: (N,) int32.
    """
    path = Path(path)
    return parse_cifar_records(path.read_bytes(), str(path))


def find_cifar_source(folder: str | os.PathLike[str], split: str) -> Path | None:
    """Where ``split`` can be read from inside ``folder``, or None.

    Checked in order: ``folder/cifar-10-batches-bin/`` with the split's ``.bin`` files, the
    ``.bin`` files directly in ``folder``, the archive ``folder/cifar-10-binary.tar.gz``.

    Returns:
        A folder holding the ``.bin`` files, or the archive path.
    """
    folder = Path(folder)
    names = SPLIT_FILES[split]
    for candidate in (folder / EXTRACTED_DIR, folder):
        if all((candidate / n).is_file() for n in names):
            return candidate
    archive = folder / ARCHIVE_NAME
    return archive if archive.is_file() else None


def _read_from_archive(archive: Path, names: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in names and base not in parts:
                    f = tar.extractfile(member)
                    assert f is not None
                    parts[base] = parse_cifar_records(f.read(), f"{archive}:{member.name}")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(
            f"{archive}: damaged or truncated archive ({type(err).__name__}: {err})"
        ) from err
    missing = [n for n in names if n not in parts]
    if missing:
        raise ValueError(f"{archive}: archive does not contain {', '.join(missing)}")
    return [parts[n] for n in names]


def read_cifar10_split(source: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads the ``train`` or ``test`` split from a folder of ``.bin`` files or the archive.

    Args:
        source: a folder holding the split's ``.bin`` files, or ``cifar-10-binary.tar.gz``
            (read in memory with :mod:`tarfile`, nothing is extracted).
        split: ``"train"`` (data_batch_1..5, concatenated in order) or ``"test"`` (test_batch).

    Returns:
        ``(images, labels)``: uint8 images and int32 labels.

    Shapes:
        images: (N, 32, 32, 3); labels: (N,). N = 50,000 (train) / 10,000 (test) for the real data.

    Raises:
        ValueError: unknown split, a malformed batch file, or an archive lacking a batch.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    source = Path(source)
    names = SPLIT_FILES[split]
    if source.is_dir():
        parts = [read_cifar_binary(source / n) for n in names]
    else:
        parts = _read_from_archive(source, names)
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


# --------------------------------------------------------------------------- the loader


def find_cifar_local(split: str, data_dir: PathLike | None) -> Path | None:
    """The first source of ``split`` (:func:`find_cifar_source`) in the searched folders, or None."""
    for _, folder in candidate_dirs("cifar10", data_dir):
        source = find_cifar_source(folder, split)
        if source is not None:
            return source
    return None


def load_cifar10(
    split: str = "train",
    data_dir: PathLike | None = None,
    download: bool = True,
    dtype: str = "float32",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads CIFAR-10 from its binary version (``cifar-10-binary.tar.gz``; never unpickles).

    In each searched folder (``data_dir``/``cifar10``, ``data_dir``, the same under
    ``$JCNN_DATA_DIR``, then the user cache) the split is read from the extracted
    ``cifar-10-batches-bin/`` folder, the ``.bin`` files themselves, or the archive (in memory).
    If none is found and ``download`` is True the archive (170 MB) is downloaded to the cache and
    verified against its SHA256.

    Args:
        split: ``"train"`` (data_batch_1..5, 50,000 images) or ``"test"`` (test_batch, 10,000).
        data_dir: explicit folder searched first.
        download: allow the download; when False the network is never touched.
        dtype: ``"float32"`` (in [0, 1]) or ``"uint8"``.
        timeout: per-connection download timeout in seconds.

    Returns:
        ``(images, labels)``; class names are in :data:`jcnn.data.cifar.CLASS_NAMES`.

    Shapes:
        images: (N, 32, 32, 3) channels last (R, G, B); labels: (N,) int32 in 0..9.

    Raises:
        DatasetUnavailableError: the files are neither on disk nor downloadable.
        ValueError: bad arguments, or a malformed batch file / archive.
        ChecksumMismatchError: the archive on disk (cache, ``data_dir``, ``$JCNN_DATA_DIR``) does
            not have its published SHA256 (a ValueError; the message says which file and the fix).
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
    """
    check_args(split, dtype)
    source = find_cifar_local(split, data_dir)
    if source is None:
        wanted = f"{ARCHIVE_NAME} or {EXTRACTED_DIR}/{{{','.join(SPLIT_FILES[split])}}}"
        folder = ensure_files(
            "cifar10",
            [ARCHIVE_NAME],
            data_dir=data_dir,
            download=download,
            timeout=timeout,
            description=wanted,
        )
        source = folder / ARCHIVE_NAME
    if source.is_file():  # the archive has a known SHA256 (the extracted .bin files have none)
        verify_known("cifar10", source)
    images, labels = read_cifar10_split(source, split)
    return finish(images, labels, dtype)
