"""MNIST and Fashion-MNIST: the IDX files of a split, and MNIST as train / val / test splits.

Both data sets ship as the same four gzipped IDX files (:data:`MNIST_FILES`), each in its own
subfolder (``mnist/``, ``fashion_mnist/``); where they are looked up and how they are verified is
:mod:`jcnn.data.download`, how they are parsed :mod:`jcnn.data.idx`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jcnn.data.download import DEFAULT_TIMEOUT, DatasetUnavailableError, ensure_files
from jcnn.data.idx import read_idx
from jcnn.data.loading import PathLike, check_args, finish

__all__ = ["MNIST_FILES", "load_fashion_mnist", "load_mnist", "load_mnist_splits"]

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""Split -> (images file, labels file); the same names for MNIST and Fashion-MNIST."""


def load_idx_split(
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
        ChecksumMismatchError: a file on disk (cache, ``data_dir``, ``$JCNN_DATA_DIR``) does not
            have its published SHA256 (a ValueError; the message says which file and the fix).
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
    """
    check_args(split, dtype)
    images, labels, _ = load_idx_split("mnist", split, data_dir, download, timeout)
    return finish(images, labels, dtype)


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
        ChecksumMismatchError: a file on disk (cache, ``data_dir``, ``$JCNN_DATA_DIR``) does not
            have its published SHA256 (a ValueError; the message says which file and the fix).
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
    """
    check_args(split, dtype)
    images, labels, _ = load_idx_split("fashion_mnist", split, data_dir, download, timeout)
    return finish(images, labels, dtype)


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


def describe_part(
    name: str, start: int, stop: int, n: int | None = None, seed: int | None = None
) -> str:
    """``"t10k[5000:10000] (5000)"``, or ``"1000 random of t10k[0:5000] (seed 0)"`` for a subset.

    The words of a ``source`` string: which slice of which file, and how many images.
    """
    if n is None or n == stop - start:
        return f"{name}[{start}:{stop}] ({stop - start})"
    return f"{n} random of {name}[{start}:{stop}] (seed {seed})"


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
      ``t10k-images-idx3-ubyte.gz`` / ``t10k-labels-idx1-ubyte.gz`` exist (as in the course's data
      folder): the 10,000 test images are split deterministically, the first 5,000
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
        ``{"train": (x, y), "val": (x, y), "test": (x, y), "source": str}`` where ``source`` says
        exactly what was used: the mode, each split as a slice of its file with its size (and
        the seed of a random subset), and the folder(s) the files came from, e.g. ``"mnist:t10k-only
        (train = 1000 random of t10k[0:5000] (seed 0), val = test = t10k[9500:10000] (500)) from
        <folder>"`` for ``n_train=1000, n_val=500``, or ``"mnist:full (train = train[0:55000]
        (55000), val = train[55000:60000] (5000), test = t10k[0:10000] (10000)) from <folder> and
        <folder>"`` for ``n_val=5000``.

    Shapes:
        x: (N, 28, 28, 1); y: (N,) int32. t10k-only mode: N = 5,000 / 5,000 / 5,000;
        full mode: 60,000 (or 60,000 - n_val) / 10,000 (or n_val) / 10,000.

    Raises:
        DatasetUnavailableError: not even the t10k files are available.
        ValueError: bad ``n_train`` / ``n_val`` / ``dtype``, or a malformed file.
        ChecksumMismatchError: a file on disk (cache, ``data_dir``, ``$JCNN_DATA_DIR``) does not
            have its published SHA256 (a ValueError; the message says which file and the fix).
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
    """
    check_args("train", dtype)
    try:
        x_train, y_train, train_dir = load_idx_split(
            "mnist", "train", data_dir, download, DEFAULT_TIMEOUT
        )
    except DatasetUnavailableError:
        x_train = y_train = train_dir = None  # type: ignore[assignment]
    x_test, y_test, test_dir = load_idx_split("mnist", "test", data_dir, download, DEFAULT_TIMEOUT)

    if x_train is not None and y_train is not None:
        total, n_test = len(x_train), len(x_test)
        if n_val is not None:
            if not 0 < n_val < total:
                raise ValueError(f"n_val must be in 1..{total - 1}, got {n_val}")
            cut = total - n_val
            val = (x_train[cut:], y_train[cut:])
            x_train, y_train = x_train[:cut], y_train[:cut]
            val_text = f"val = {describe_part('train', cut, total)}"
            test_text = f"test = {describe_part('t10k', 0, n_test)}"
        else:
            cut = total
            val = (x_test, y_test)
            val_text = f"val = test = {describe_part('t10k', 0, n_test)}"
            test_text = "no holdout"
        train = _subset(x_train, y_train, n_train, seed, "the full MNIST training set")
        test = (x_test, y_test)
        source = (
            f"mnist:full (train = {describe_part('train', 0, cut, n_train, seed)}, {val_text}, "
            f"{test_text}) from {train_dir} and {test_dir}"
        )
    else:
        n_test = len(x_test)
        half = n_test // 2
        if n_val is not None and not 0 < n_val <= n_test - half:
            raise ValueError(f"n_val must be in 1..{n_test - half} in t10k-only mode, got {n_val}")
        start = n_test - n_val if n_val is not None else half
        train = _subset(x_test[:half], y_test[:half], n_train, seed, "the t10k-only split")
        val = (x_test[start:], y_test[start:])
        test = val
        source = (
            f"mnist:t10k-only (train = {describe_part('t10k', 0, half, n_train, seed)}, "
            f"val = test = {describe_part('t10k', start, n_test)}) from {test_dir}"
        )

    def fin(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return finish(pair[0], pair[1], dtype)

    out_val = fin(val)
    out_test = out_val if test is val else fin(test)
    return {"train": fin(train), "val": out_val, "test": out_test, "source": source}
