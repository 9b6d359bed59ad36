"""Dataset loaders: MNIST, Fashion-MNIST, CIFAR-10 (binary) and scikit-learn's 8x8 digits.

Every loader returns numpy arrays ``(images, labels)``: images channels-last ``(N, H, W, C)``,
float32 in [0, 1] by default (or the raw uint8 pixels with ``dtype="uint8"``, which
:func:`normalize` turns into the float32 form), labels int32 in 0..9.

Where the files come from (explicit ``data_dir``, ``$JCNN_DATA_DIR``, the user cache, a verified
download) is described in :mod:`jcnn.data.download`. With ``download=False`` a loader never
touches the network, so ``load_mnist(download=False)`` (or the cheaper :func:`is_available`) tells
whether MNIST is on disk; a caller without MNIST can fall back to :func:`load_digits_fallback`::

    try:
        splits = load_mnist_splits(download=False)
    except DatasetUnavailableError as err:
        print(err)
        images, labels = load_digits_fallback()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from jcnn.data.cifar import (
    ARCHIVE_NAME,
    EXTRACTED_DIR,
    SPLIT_FILES,
    find_cifar_source,
    read_cifar10_split,
)
from jcnn.data.download import (
    DEFAULT_TIMEOUT,
    DatasetUnavailableError,
    candidate_dirs,
    ensure_files,
    find_local,
)
from jcnn.data.idx import read_idx

__all__ = [
    "MNIST_FILES",
    "is_available",
    "load_cifar10",
    "load_digits_fallback",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_splits",
    "normalize",
]

PathLike = str | os.PathLike[str]

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Split -> (images file, labels file); the same names for MNIST and Fashion-MNIST."""

_DTYPES = ("float32", "uint8")


def normalize(images_uint8: np.ndarray) -> np.ndarray:
    """Maps uint8 pixels 0..255 to float32 in [0, 1] (``x / 255``).

    This is exactly what the loaders do when ``dtype="float32"``.

    Shapes:
        images_uint8: any shape, e.g. (N, H, W, C); the output has the same shape.
    """
    return np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)


def _check_args(split: str, dtype: str, splits: tuple[str, ...] = ("train", "test")) -> None:
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")


def _finish(images: np.ndarray, labels: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    images = normalize(images) if dtype == "float32" else np.ascontiguousarray(images, np.uint8)
    return images, np.asarray(labels, dtype=np.int32)


def _load_idx_split(
    dataset: str, split: str, data_dir: PathLike | None, download: bool, timeout: float
) -> tuple[np.ndarray, np.ndarray, Path]:
    """Raw uint8 images (N, 28, 28, 1), int32 labels (N,) and the folder they came from."""
    names = MNIST_FILES[split]
    folder = ensure_files(dataset, names, data_dir=data_dir, download=download, timeout=timeout)
    img_path, lbl_path = folder / names[0], folder / names[1]
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{img_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{lbl_path}: expected {images.shape[0]} labels (one per image in {img_path.name}), "
            f"got shape {labels.shape}"
        )
    if labels.size and int(labels.max()) > 9:
        raise ValueError(f"{lbl_path}: label {int(labels.max())} out of range 0..9")
    return images[..., None], labels.astype(np.int32), folder


def load_mnist(
    split: str = "train",
    data_dir: PathLike | None = None,
    download: bool = True,
    dtype: str = "float32",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads MNIST from the IDX files (see :mod:`jcnn.data.download` for the lookup order).

    Args:
        split: ``"train"`` (train-images/labels, 60,000) or ``"test"`` (t10k, 10,000).
        data_dir: folder holding the ``.gz`` IDX files (or a ``mnist/`` subfolder with them).
        download: fetch missing files from the MNIST mirrors into the user cache (SHA256-checked).
            When False, the network is never touched.
        dtype: ``"float32"`` (pixels / 255, in [0, 1]) or ``"uint8"`` (raw 0..255 pixels;
            :func:`normalize` converts them).
        timeout: per-connection download timeout in seconds.

    Returns:
        ``(images, labels)``.

    Shapes:
        images: (N, 28, 28, 1); labels: (N,) int32 in 0..9.

    Raises:
        DatasetUnavailableError: the files are neither on disk nor downloadable.
        ValueError: bad arguments, or a malformed file (the message names it).
    """
    _check_args(split, dtype)
    images, labels, _ = _load_idx_split("mnist", split, data_dir, download, timeout)
    return _finish(images, labels, dtype)


def load_fashion_mnist(
    split: str = "train",
    data_dir: PathLike | None = None,
    download: bool = True,
    dtype: str = "float32",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads Fashion-MNIST; same files names, format and arguments as :func:`load_mnist`.

    Its own subfolder is ``fashion_mnist/`` (in ``data_dir``, ``$JCNN_DATA_DIR`` and the cache).
    Because the file names equal MNIST's, do not point ``data_dir`` at a folder of MNIST files.

    Shapes:
        images: (N, 28, 28, 1), N = 60,000 (train) / 10,000 (test); labels: (N,) int32 in 0..9.

    Raises:
        DatasetUnavailableError: the files are neither on disk nor downloadable.
        ValueError: bad arguments, or a malformed file.
    """
    _check_args(split, dtype)
    images, labels, _ = _load_idx_split("fashion_mnist", split, data_dir, download, timeout)
    return _finish(images, labels, dtype)


def _find_cifar_local(split: str, data_dir: PathLike | None) -> Path | None:
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
    """
    _check_args(split, dtype)
    source = _find_cifar_local(split, data_dir)
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
    images, labels = read_cifar10_split(source, split)
    return _finish(images, labels, dtype)


def is_available(
    dataset: str = "mnist", split: str = "train", data_dir: PathLike | None = None
) -> bool:
    """Whether ``dataset``'s ``split`` is on disk (lookup order of :mod:`jcnn.data.download`).

    Cheap: only checks that the files exist; never reads them and never touches the network.

    Args:
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        split: ``"train"`` or ``"test"``.
        data_dir: explicit folder searched first.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if dataset == "cifar10":
        return _find_cifar_local(split, data_dir) is not None
    if dataset in ("mnist", "fashion_mnist"):
        return find_local(dataset, MNIST_FILES[split], data_dir) is not None
    raise ValueError(f"unknown dataset {dataset!r}; expected mnist, fashion_mnist or cifar10")


def _subset(
    images: np.ndarray, labels: np.ndarray, n: int | None, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    if n is None:
        return images, labels
    if not 0 < n <= len(images):
        raise ValueError(f"n_train must be in 1..{len(images)} for {what}, got {n}")
    if n == len(images):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False))
    return images[idx], labels[idx]


def load_mnist_splits(
    data_dir: PathLike | None = None,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    download: bool = True,
    dtype: str = "float32",
) -> dict[str, Any]:
    """MNIST as train / validation / test splits, from whatever MNIST files are available.

    Two modes, chosen by what :func:`load_mnist` can get (with ``download=True`` the train files
    are downloaded if possible, which selects the full mode):

    * **full** (``source`` starts with ``"mnist:full"``) -- the train *and* test files are
      available: ``train`` = the 60,000 training images; ``test`` = the 10,000 t10k images.
      With ``n_val`` given, ``val`` = the *last* ``n_val`` training images and ``train`` keeps the
      first ``60000 - n_val``. Without ``n_val`` no holdout is taken: ``val`` is the test set
      (the same arrays as ``test``).
    * **t10k-only** (``source`` starts with ``"mnist:t10k-only"``) -- only
      ``t10k-images-idx3-ubyte.gz`` / ``t10k-labels-idx1-ubyte.gz`` exist (as in the course folder
      ``shared/data/mnist``): the 10,000 test images are split deterministically, the first 5,000
      -> ``train``, the last 5,000 -> ``val``, and ``test`` is the same arrays as ``val`` (there is
      no untouched test set in this mode). With ``n_val`` given, ``val`` = ``test`` = the last
      ``n_val`` (<= 5,000) images.

    In both modes ``n_train`` (if given) keeps a random subset of that many training examples,
    drawn without replacement with ``np.random.default_rng(seed)`` and kept in file order; ``seed``
    is used for nothing else.

    Args:
        data_dir: explicit folder searched first (see :mod:`jcnn.data.download`).
        n_train: number of training examples to keep (None: all).
        n_val: validation size, see the modes above (None: the default of the mode).
        seed: seed of the ``n_train`` subset.
        download: allow downloading missing files; when False the network is never touched.
        dtype: ``"float32"`` (default, in [0, 1]) or ``"uint8"``.

    Returns:
        ``{"train": (x, y), "val": (x, y), "test": (x, y), "source": str}`` where ``source`` names
        the mode, the sizes and the folder the files came from.

    Shapes:
        x: (N, 28, 28, 1); y: (N,) int32. t10k-only mode: N = 5,000 / 5,000 / 5,000;
        full mode: 60,000 (or 60,000 - n_val) / 10,000 (or n_val) / 10,000.

    Raises:
        DatasetUnavailableError: not even the t10k files are available.
        ValueError: bad ``n_train`` / ``n_val`` / ``dtype``.
    """
    _check_args("train", dtype)
    try:
        x_train, y_train, train_dir = _load_idx_split(
            "mnist", "train", data_dir, download, DEFAULT_TIMEOUT
        )
    except DatasetUnavailableError:
        x_train = y_train = train_dir = None
    x_test, y_test, test_dir = _load_idx_split("mnist", "test", data_dir, download, DEFAULT_TIMEOUT)

    if x_train is not None and y_train is not None:
        if n_val is not None:
            if not 0 < n_val < len(x_train):
                raise ValueError(f"n_val must be in 1..{len(x_train) - 1}, got {n_val}")
            cut = len(x_train) - n_val
            val = (x_train[cut:], y_train[cut:])
            x_train, y_train = x_train[:cut], y_train[:cut]
            val_text = f"val = last {n_val} of train"
        else:
            val = (x_test, y_test)
            val_text = "val = test (no holdout)"
        train = _subset(x_train, y_train, n_train, seed, "the full MNIST training set")
        test = (x_test, y_test)
        source = (
            f"mnist:full ({len(train[0])} train, {val_text}, {len(x_test)} test) "
            f"from {train_dir} and {test_dir}"
        )
    else:
        half = len(x_test) // 2
        if n_val is not None and not 0 < n_val <= len(x_test) - half:
            raise ValueError(
                f"n_val must be in 1..{len(x_test) - half} in t10k-only mode, got {n_val}"
            )
        start = len(x_test) - n_val if n_val is not None else half
        train = _subset(x_test[:half], y_test[:half], n_train, seed, "the t10k-only split")
        val = (x_test[start:], y_test[start:])
        test = val
        source = (
            f"mnist:t10k-only (train = first {half} of t10k"
            f"{f' subsampled to {n_train}' if n_train is not None else ''}, "
            f"val = test = t10k[{start}:]) from {test_dir}"
        )

    def fin(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return _finish(pair[0], pair[1], dtype)

    out_val = fin(val)
    out_test = out_val if test is val else fin(test)
    return {"train": fin(train), "val": out_val, "test": out_test, "source": source}


def load_digits_fallback() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits, as a small offline stand-in for MNIST.

    Needs scikit-learn (the data ship with it; no network). Pixel values 0..16 are divided by 16.

    Returns:
        ``(images, labels)``: float32 in [0, 1] and int32 in 0..9.

    Shapes:
        images: (1797, 8, 8, 1); labels: (1797,).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (np.asarray(digits.images, dtype=np.float32) / np.float32(16.0))[..., None]
    return images, np.asarray(digits.target, dtype=np.int32)
