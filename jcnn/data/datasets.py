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

The loaders live by family -- :mod:`jcnn.data.mnist` (MNIST, Fashion-MNIST and MNIST's splits),
:mod:`jcnn.data.cifar` (CIFAR-10), :mod:`jcnn.data.fallback` (the digits) -- and share
:mod:`jcnn.data.loading`; this module gathers them and tells whether a data set is on disk
(:func:`is_available`).
"""

from __future__ import annotations

from jcnn.data.cifar import find_cifar_local, load_cifar10
from jcnn.data.download import find_local
from jcnn.data.fallback import FALLBACK_TRAIN_FRACTION as FALLBACK_TRAIN_FRACTION
from jcnn.data.fallback import load_digits_fallback, load_mnist_or_fallback
from jcnn.data.loading import PathLike as PathLike
from jcnn.data.loading import normalize
from jcnn.data.mnist import (
    MNIST_FILES,
    load_fashion_mnist,
    load_mnist,
    load_mnist_splits,
)

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
        return find_cifar_local(split, data_dir) is not None
    if dataset in ("mnist", "fashion_mnist"):
        return find_local(dataset, MNIST_FILES[split], data_dir) is not None
    raise ValueError(f"unknown dataset {dataset!r}; expected mnist, fashion_mnist or cifar10")
