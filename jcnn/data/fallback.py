"""The offline stand-in for MNIST: scikit-learn's 8x8 digits, resized to MNIST's 28x28.

:func:`load_mnist_or_fallback` is MNIST (:func:`~jcnn.data.mnist.load_mnist_splits`) when it can
be found and the digits (with a printed explanation) when not, so that a first run works offline
from any folder; :func:`load_digits_fallback` is the digits as they ship.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from jcnn.data.download import ENV_VAR, SUBDIRS, DatasetUnavailableError, candidate_dirs
from jcnn.data.loading import PathLike
from jcnn.data.mnist import MNIST_FILES, describe_part, load_mnist_splits

__all__ = ["FALLBACK_TRAIN_FRACTION", "load_digits_fallback", "load_mnist_or_fallback"]

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
        f"train = {describe_part('digits', 0, n_tr)}, val = test = {describe_part('digits', cut, cut + n_va)})"
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
