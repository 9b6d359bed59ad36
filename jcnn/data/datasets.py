"""Dataset loaders: MNIST, Fashion-MNIST, CIFAR-10 (binary) and scikit-learn's 8x8 digits.

Every loader returns numpy arrays ``(images, labels)``: images channels-last ``(N, H, W, C)``,
float32 in [0, 1] by default (or the raw uint8 pixels with ``dtype="uint8"``, which
:func:`normalize` turns into the float32 form), labels int32 in 0..9.

Where the files come from (explicit ``data_dir``, ``$JCNN_DATA_DIR``, the user cache, a verified
download) and how files on disk are checked against their published SHA256 is described in
:mod:`jcnn.data.download`. With ``download=False`` a loader never
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
import sys
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
    ENV_VAR,
    SUBDIRS,
    DatasetUnavailableError,
    candidate_dirs,
    ensure_files,
    find_local,
    verify_known,
)
from jcnn.data.idx import read_idx

__all__ = [
    "MNIST_FILES",
    "is_available",
    "load_cifar10",
    "load_digits_fallback",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_or_fallback",
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
        ChecksumMismatchError: a file on disk (cache, ``data_dir``, ``$JCNN_DATA_DIR``) does not
            have its published SHA256 (a ValueError; the message says which file and the fix).
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
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
        ChecksumMismatchError: a file on disk (cache, ``data_dir``, ``$JCNN_DATA_DIR``) does not
            have its published SHA256 (a ValueError; the message says which file and the fix).
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
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
        ChecksumMismatchError: the archive on disk (cache, ``data_dir``, ``$JCNN_DATA_DIR``) does
            not have its published SHA256 (a ValueError; the message says which file and the fix).
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
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
    if source.is_file():  # the archive has a known SHA256 (the extracted .bin files have none)
        verify_known("cifar10", source)
    images, labels = read_cifar10_split(source, split)
    return _finish(images, labels, dtype)


def is_available(
    dataset: str = "mnist", split: str = "train", data_dir: PathLike | None = None
) -> bool:
    """Whether ``dataset``'s ``split`` is on disk (lookup order of :mod:`jcnn.data.download`).

    Cheap: only checks that the files exist; never reads or hashes them and never touches the
    network.

    Args:
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        split: ``"train"`` or ``"test"``.
        data_dir: explicit folder searched first.

    Raises:
        ValueError: unknown dataset or split.
        FileNotFoundError, NotADirectoryError: ``data_dir`` or ``$JCNN_DATA_DIR`` is not an
            existing folder.
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


def _part(name: str, start: int, stop: int, n: int | None = None, seed: int | None = None) -> str:
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
    _check_args("train", dtype)
    try:
        x_train, y_train, train_dir = _load_idx_split(
            "mnist", "train", data_dir, download, DEFAULT_TIMEOUT
        )
    except DatasetUnavailableError:
        x_train = y_train = train_dir = None
    x_test, y_test, test_dir = _load_idx_split("mnist", "test", data_dir, download, DEFAULT_TIMEOUT)

    if x_train is not None and y_train is not None:
        total, n_test = len(x_train), len(x_test)
        if n_val is not None:
            if not 0 < n_val < total:
                raise ValueError(f"n_val must be in 1..{total - 1}, got {n_val}")
            cut = total - n_val
            val = (x_train[cut:], y_train[cut:])
            x_train, y_train = x_train[:cut], y_train[:cut]
            val_text = f"val = {_part('train', cut, total)}"
            test_text = f"test = {_part('t10k', 0, n_test)}"
        else:
            cut = total
            val = (x_test, y_test)
            val_text = f"val = test = {_part('t10k', 0, n_test)}"
            test_text = "no holdout"
        train = _subset(x_train, y_train, n_train, seed, "the full MNIST training set")
        test = (x_test, y_test)
        source = (
            f"mnist:full (train = {_part('train', 0, cut, n_train, seed)}, {val_text}, "
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
            f"mnist:t10k-only (train = {_part('t10k', 0, half, n_train, seed)}, "
            f"val = test = {_part('t10k', start, n_test)}) from {test_dir}"
        )

    def fin(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return _finish(pair[0], pair[1], dtype)

    out_val = fin(val)
    out_test = out_val if test is val else fin(test)
    return {"train": fin(train), "val": out_val, "test": out_test, "source": source}


FALLBACK_TRAIN_FRACTION = 0.6
"""Share of the 1,797 scikit-learn digits that :func:`load_mnist_or_fallback` trains on."""


def _require_mnist_folder(data_dir: PathLike) -> None:
    """FileNotFoundError / NotADirectoryError unless ``data_dir`` (or its ``mnist/``) holds MNIST.

    "Holds MNIST" means both files of at least one split (:data:`MNIST_FILES`).
    """
    candidate_dirs("mnist", data_dir)  # raises for a path that does not exist or is a file
    base = Path(data_dir).expanduser()
    folders = (base / SUBDIRS["mnist"], base)
    if any(
        all((f / n).is_file() for n in names) for f in folders for names in MNIST_FILES.values()
    ):
        return
    test, train = " and ".join(MNIST_FILES["test"]), " and ".join(MNIST_FILES["train"])
    raise FileNotFoundError(
        f"data_dir {base} holds no MNIST files: expected {test} (the 10,000 test images; and "
        f"{train} for the standard 60,000 / 10,000 split) in {base} or {folders[0]}. Pass the "
        "folder that holds them (data_dir=<folder>, --data-dir <folder>), or leave data_dir "
        f"unset to use ${ENV_VAR}, the cache, a download or the offline fallback"
    )


def _digits_as_mnist() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits resized to 20x20 and centred on a 28x28 canvas, like MNIST."""
    import jax  # the resize only; the loaders above need numpy alone

    images, labels = load_digits_fallback()
    small = np.asarray(jax.image.resize(images, (len(images), 20, 20, 1), "linear"))
    canvas = np.zeros((len(images), 28, 28, 1), np.float32)
    canvas[:, 4:24, 4:24] = np.clip(small, 0.0, 1.0)
    return canvas, labels


def load_mnist_or_fallback(
    data_dir: PathLike | None = None,
    *,
    download: bool = True,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> dict[str, Any]:
    """MNIST splits from :func:`load_mnist_splits`, or scikit-learn's digits when MNIST is missing.

    The offline stand-in: without a ``data_dir``, when no MNIST files can be found (nor, with
    ``download=True``, downloaded), the 1,797 real handwritten 8x8 digits shipped with
    scikit-learn (:func:`load_digits_fallback`) are resized to 20x20 and centred on a 28x28
    canvas, so that MNIST models run unchanged. They are permuted with
    ``np.random.default_rng(0)`` and split 60 / 40: ``train`` = the first 1,078, ``val`` =
    ``test`` = the other 719; ``n_train`` / ``n_val`` keep the first ``n_train`` / ``n_val`` of
    those (all of them when there are fewer; ``source`` says how many). Falling back prints why to stderr: every line of the
    :class:`~jcnn.data.download.DatasetUnavailableError` (the folders searched, why no download)
    and how to provide the files (``quiet=True``: nothing printed).

    A ``data_dir`` that is given is never fallen back from: it must be an existing folder
    holding both files of an MNIST split (or a ``mnist/`` subfolder with them).

    Args:
        data_dir: folder of the MNIST idx ``.gz`` files (None: ``$JCNN_DATA_DIR``, the cache, a
            download, then the fallback).
        download: allow downloading missing files; when False the network is never touched.
        n_train, n_val, seed: as in :func:`load_mnist_splits` (``seed`` draws its ``n_train``
            subset; the fallback's order is fixed).
        quiet: do not print the fallback's explanation.

    Returns:
        ``{"train": (x, y), "val": (x, y), "test": (x, y), "source": str}`` (float32 images in
        [0, 1], int32 labels); ``source`` says what was used, e.g. ``"sklearn-digits fallback
        (1797 8x8 digits resized to 28x28, permuted with seed 0: train = digits[0:1078] (1078),
        val = test = digits[1078:1797] (719))"``, or MNIST's (:func:`load_mnist_splits`).

    Shapes:
        x: (N, 28, 28, 1); y: (N,).

    Raises:
        FileNotFoundError: ``data_dir`` (or ``$JCNN_DATA_DIR``) does not exist, or ``data_dir``
            holds no MNIST files (the message names it and the files expected).
        NotADirectoryError: ``data_dir`` (or ``$JCNN_DATA_DIR``) is a file.
        DatasetUnavailableError: ``data_dir`` holds only the train files and the t10k files
            are nowhere.
        ValueError, ChecksumMismatchError: as :func:`load_mnist_splits`.

    Example:
        >>> import contextlib, io, tempfile
        >>> from unittest import mock
        >>> nowhere = {"XDG_CACHE_HOME": tempfile.mkdtemp(), "JCNN_DATA_DIR": ""}  # no MNIST
        >>> notice = io.StringIO()
        >>> with mock.patch.dict("os.environ", nowhere), contextlib.redirect_stderr(notice):
        ...     data = load_mnist_or_fallback(download=False, n_val=100)
        >>> data["train"][0].shape, data["val"][0].shape, data["val"] is data["test"]
        ((1078, 28, 28, 1), (100, 28, 28, 1), True)
        >>> data["source"].split(": ")[1]
        'train = digits[0:1078] (1078), val = test = digits[1078:1178] (100))'
        >>> print(notice.getvalue().splitlines()[0])
        MNIST is not available, so scikit-learn's 8x8 digits are used instead:
        >>> load_mnist_or_fallback(tempfile.mkdtemp(), download=False)
        Traceback (most recent call last):
        FileNotFoundError: data_dir ... holds no MNIST files: expected t10k-images-idx3-ubyte.gz ...
    """
    if data_dir is not None:
        _require_mnist_folder(data_dir)
        return load_mnist_splits(
            data_dir, n_train=n_train, n_val=n_val, seed=seed, download=download
        )
    try:
        return load_mnist_splits(n_train=n_train, n_val=n_val, seed=seed, download=download)
    except DatasetUnavailableError as err:
        reason = str(err)
    images, labels = _digits_as_mnist()
    order = np.random.default_rng(0).permutation(len(images))
    total, cut = len(images), int(FALLBACK_TRAIN_FRACTION * len(images))
    for name, n in (("n_train", n_train), ("n_val", n_val)):
        if n is not None and n < 1:
            raise ValueError(f"{name} must be >= 1, got {n}")
    n_tr = cut if n_train is None else min(n_train, cut)
    n_va = total - cut if n_val is None else min(n_val, total - cut)
    train_idx, val_idx = order[:n_tr], order[cut : cut + n_va]
    val = (images[val_idx], labels[val_idx])
    source = (
        f"sklearn-digits fallback ({total} 8x8 digits resized to 28x28, permuted with seed 0: "
        f"train = {_part('digits', 0, n_tr)}, val = test = {_part('digits', cut, cut + n_va)})"
    )
    if not quiet:
        print(
            "MNIST is not available, so scikit-learn's 8x8 digits are used instead:\n"
            f"  {source}\n"
            f"Why: {reason}\n"
            "To train on MNIST, pass the folder of its idx files (data_dir=<folder>, "
            f"--data-dir <folder>) or set ${ENV_VAR}=<folder>.",
            file=sys.stderr,
        )
    return {
        "train": (images[train_idx], labels[train_idx]),
        "val": val,
        "test": val,
        "source": source,
    }


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
