"""Datasets, file formats, batching and augmentation for jcnn.

Datasets: MNIST, Fashion-MNIST, CIFAR-10 (binary version) and scikit-learn's 8x8 digits.

Loaders return numpy ``(images, labels)``: images ``(N, H, W, C)`` float32 in [0, 1] (or uint8 with
``dtype="uint8"``, see :func:`normalize`) and int32 labels. Files are looked up in ``data_dir``,
then ``$JCNN_DATA_DIR``, then the user cache, then downloaded with SHA256 verification (see
:mod:`jcnn.data.download`); when that all fails a :class:`DatasetUnavailableError` explains how
to provide the files. :func:`load_mnist_or_fallback` is MNIST when it can be found and
scikit-learn's bundled 8x8 digits (resized to 28x28, with a printed explanation) when not, so
that a first run works offline from any folder.

Your own images: :func:`image_folder` reads a folder in torchvision's layout (``root/<class>/...``
or ``root/train`` + ``root/val``) as a streaming source (Grain worker processes, uint8 batches,
a position ``jcnn.fit`` checkpoints), with the ImageNet views of :mod:`jcnn.data.transforms`;
:mod:`jcnn.data.mixing` mixes batches on the device (mixup, cutmix).
"""

from jcnn.data.batching import (
    augment,
    batches,
    crop_offsets,
    data_rng,
    epoch_permutation,
    flip_mask,
    num_batches,
    prefetched,
    random_crop,
    random_flip,
)
from jcnn.data.cifar import CLASS_NAMES as CIFAR10_CLASSES
from jcnn.data.cifar import read_cifar10_split, read_cifar_binary
from jcnn.data.datasets import (
    MNIST_FILES,
    is_available,
    load_cifar10,
    load_digits_fallback,
    load_fashion_mnist,
    load_mnist,
    load_mnist_or_fallback,
    load_mnist_splits,
    normalize,
)
from jcnn.data.decode import ImageDecodeError, decode_image, open_image
from jcnn.data.download import (
    ENV_VAR,
    ChecksumMismatchError,
    DatasetUnavailableError,
    cache_dir,
    download_file,
    ensure_files,
)
from jcnn.data.folders import (
    ImageFolderIndex,
    image_folder_splits,
    scan_image_folder,
    verify_images,
)
from jcnn.data.idx import read_idx, write_idx
from jcnn.data.image_folder import ImageFolderSource, image_folder
from jcnn.data.mixing import MixupCutmix, cutmix, mixup
from jcnn.data.stream import LoadError, StreamSource, global_batch, normalize_on_device
from jcnn.data.transforms import eval_transform, train_transform

__all__ = [
    "CIFAR10_CLASSES",
    "ENV_VAR",
    "MNIST_FILES",
    "ChecksumMismatchError",
    "ImageDecodeError",
    "ImageFolderIndex",
    "ImageFolderSource",
    "LoadError",
    "MixupCutmix",
    "StreamSource",
    "DatasetUnavailableError",
    "ImageDecodeError",
    "ImageFolderIndex",
    "augment",
    "batches",
    "cache_dir",
    "crop_offsets",
    "cutmix",
    "data_rng",
    "decode_image",
    "open_image",
    "download_file",
    "ensure_files",
    "epoch_permutation",
    "eval_transform",
    "flip_mask",
    "global_batch",
    "image_folder",
    "image_folder_splits",
    "is_available",
    "load_cifar10",
    "load_digits_fallback",
    "load_fashion_mnist",
    "load_mnist",
    "load_mnist_or_fallback",
    "load_mnist_splits",
    "mixup",
    "normalize",
    "normalize_on_device",
    "num_batches",
    "prefetched",
    "random_crop",
    "random_flip",
    "read_cifar10_split",
    "read_cifar_binary",
    "read_idx",
    "scan_image_folder",
    "train_transform",
    "verify_images",
    "write_idx",
]
