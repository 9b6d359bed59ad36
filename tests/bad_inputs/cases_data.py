"""Catalogue cases for datasets and file formats (``jcnn.data``).

Where the files are looked for (``data_dir``, ``$JCNN_DATA_DIR``), files on disk that are not
the published ones (SHA256), damaged IDX / CIFAR-10 files, and pickles planted where data files
are expected. Every case runs offline (``download=False``) with ``XDG_CACHE_HOME`` and
``$JCNN_DATA_DIR`` set inside ``tmp_path`` for its duration; the fake files are those of
``tests/data/test_data_datasets.py``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

import jcnn.data.download as dl
from jcnn.data import (
    ChecksumMismatchError,
    DatasetUnavailableError,
    cache_dir,
    is_available,
    load_cifar10,
    load_mnist,
    read_idx,
    write_idx,
)
from tests.bad_inputs.cases_checkpoints import _Planted
from tests.bad_inputs.catalogue import Case
from tests.data.test_data_datasets import NAMES, fake_cifar_bytes, make_mnist, sha256


@contextlib.contextmanager
def _isolated(tmp: Path, env_dir: Path | None = None, **sha256: dict[str, str]) -> Iterator[None]:
    """The cache in ``tmp/xdg``, ``$JCNN_DATA_DIR`` = ``env_dir`` (or unset) and, for each
    ``dataset=table`` given, that table of known SHA256s; all restored afterwards."""
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", dl.ENV_VAR)}
    tables = {k: dl.SHA256[k] for k in sha256}
    os.environ["XDG_CACHE_HOME"] = str(tmp / "xdg")
    os.environ.pop(dl.ENV_VAR, None)
    if env_dir is not None:
        os.environ[dl.ENV_VAR] = str(env_dir)
    dl.SHA256.update(sha256)
    try:
        yield
    finally:
        dl.SHA256.update(tables)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _folder(tmp: Path) -> Path:
    """A fake MNIST test split (not the published files) in ``tmp/user``."""
    make_mnist(tmp / "user", "test", 4)
    return tmp / "user"


# --------------------------------------------------------------------------- where to look


def _data_dir_missing(tmp: Path) -> None:
    with _isolated(tmp):
        make_mnist(cache_dir("mnist"), "test", 4)  # would be found if the typo were skipped
        load_mnist("test", data_dir=tmp / "mnsit", download=False)


def _data_dir_is_a_file(tmp: Path) -> None:
    (tmp / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    with _isolated(tmp):
        load_mnist("test", data_dir=tmp / "t10k-images-idx3-ubyte.gz", download=False)


def _env_var_is_a_file(tmp: Path) -> None:
    (tmp / "data.tar").write_bytes(b"")
    with _isolated(tmp, env_dir=tmp / "data.tar"):
        load_mnist("test", download=False)


def _env_var_missing(tmp: Path) -> None:
    with _isolated(tmp, env_dir=tmp / "datasets"):
        is_available("cifar10", "test")


def _valid_existing_empty_data_dir(tmp: Path) -> None:
    (tmp / "empty").mkdir()
    with _isolated(tmp, mnist={}):
        _, labels = make_mnist(cache_dir("mnist"), "test", 5)
        _, y = load_mnist("test", data_dir=tmp / "empty", download=False)
    np.testing.assert_array_equal(y, labels)


# ------------------------------------------------------------------- not the published files


def _cached_file_not_published(tmp: Path) -> None:
    with _isolated(tmp):
        make_mnist(cache_dir("mnist"), "test", 4)  # under the published names, other bytes
        load_mnist("test", download=False)


def _data_dir_file_not_published(tmp: Path) -> None:
    folder = _folder(tmp)
    try:
        with _isolated(tmp):
            load_mnist("test", data_dir=folder, download=False)
    finally:
        assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES["test"])  # untouched


def _valid_verified_once(tmp: Path) -> None:
    with _isolated(tmp, mnist={}):
        folder = cache_dir("mnist")
        make_mnist(folder, "test", 4)
        paths = [folder / n for n in NAMES["test"]]
        dl.SHA256["mnist"] = {p.name: sha256(p) for p in paths}  # as if these were published
        hashed: list[str] = []
        real = dl.sha256_file
        dl.sha256_file = lambda path, *a: hashed.append(Path(path).name) or real(path, *a)
        try:
            load_mnist("test", download=False)
            load_mnist("test", download=False)
            assert sorted(hashed) == sorted(NAMES["test"]), hashed  # once, not twice
            assert all(p.with_name(p.name + dl.MARKER_SUFFIX).is_file() for p in paths)
            stat = paths[0].stat()
            os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # "changed"
            load_mnist("test", download=False)
            assert hashed[2:] == [NAMES["test"][0]], hashed  # only the changed file again
        finally:
            dl.sha256_file = real


def _cifar_archive_not_published(tmp: Path) -> None:
    (tmp / "c").mkdir()
    (tmp / "c" / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b not the archive")
    with _isolated(tmp):
        load_cifar10("test", data_dir=tmp / "c", download=False)


# --------------------------------------------------------------------------- damaged files


def _idx_bad_magic(tmp: Path) -> None:
    path = tmp / "images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x07\x03" + bytes(12))  # dtype code 0x07 does not exist
    read_idx(path)


def _idx_truncated(tmp: Path) -> None:
    data = write_idx(tmp / "full-idx3-ubyte", np.zeros((3, 28, 28), np.uint8)).read_bytes()
    (tmp / "cut-idx3-ubyte").write_bytes(data[:-100])
    read_idx(tmp / "cut-idx3-ubyte")


def _labels_shorter_than_images(tmp: Path) -> None:
    folder = _folder(tmp)
    write_idx(folder / NAMES["test"][1], np.zeros(3, np.uint8))  # 3 labels for 4 images
    with _isolated(tmp, mnist={}):  # files without a known SHA256: the readers check them
        load_mnist("test", data_dir=folder, download=False)


def _cifar_batch_wrong_size(tmp: Path) -> None:
    folder = tmp / "c" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    (folder / "test_batch.bin").write_bytes(fake_cifar_bytes(2, seed=0)[:-7])
    with _isolated(tmp):
        load_cifar10("test", data_dir=tmp / "c", download=False)


# --------------------------------------------------------------------------- planted pickles


def _pickle(tmp: Path) -> bytes:
    return pickle.dumps({"images": _Planted(tmp / "EXECUTED")})


def _pickle_as_mnist_files(tmp: Path) -> None:
    (tmp / "d").mkdir()
    for name in NAMES["test"]:
        (tmp / "d" / name).write_bytes(_pickle(tmp))
    try:
        with _isolated(tmp):
            load_mnist("test", data_dir=tmp / "d", download=False)
    finally:
        assert not (tmp / "EXECUTED").exists(), "the planted pickle was executed"


def _pickle_as_idx(tmp: Path) -> None:
    (tmp / "labels-idx1-ubyte").write_bytes(_pickle(tmp))
    try:
        read_idx(tmp / "labels-idx1-ubyte")
    finally:
        assert not (tmp / "EXECUTED").exists(), "the planted pickle was executed"


def _pickle_as_cifar_batch(tmp: Path) -> None:
    folder = tmp / "c" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    (folder / "test_batch.bin").write_bytes(_pickle(tmp))
    try:
        with _isolated(tmp):
            load_cifar10("test", data_dir=tmp / "c", download=False)
    finally:
        assert not (tmp / "EXECUTED").exists(), "the planted pickle was executed"


def _python_cifar_is_not_read(tmp: Path) -> None:
    """The pickled 'python version' of CIFAR-10 is never opened, let alone unpickled."""
    folder = tmp / "c" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("test_batch", "data_batch_1", "batches.meta"):
        (folder / name).write_bytes(_pickle(tmp))
    try:
        with _isolated(tmp):
            load_cifar10("test", data_dir=tmp / "c", download=False)
    finally:
        assert not (tmp / "EXECUTED").exists(), "the planted pickle was executed"


MNIST_T10K = "t10k-images-idx3-ubyte.gz"
PUBLISHED = dl.SHA256["mnist"][MNIST_T10K]

CASES = [
    Case(
        "data",
        "data_dir_missing",
        "load_mnist(data_dir=<a folder that does not exist>): a typo",
        _data_dir_missing,
        FileNotFoundError,
        ["data_dir", "mnsit does not exist", "--data-dir <folder>", "leave it unset"],
    ),
    Case(
        "data",
        "data_dir_is_a_file",
        "load_mnist(data_dir=<one of the files>)",
        _data_dir_is_a_file,
        NotADirectoryError,
        ["data_dir", "is a file, not a folder", "pass the folder holding the dataset files"],
    ),
    Case(
        "data",
        "env_var_is_a_file",
        "JCNN_DATA_DIR pointing at a file",
        _env_var_is_a_file,
        NotADirectoryError,
        ["$JCNN_DATA_DIR=", "data.tar", "is a file, not a folder", "or unset it"],
    ),
    Case(
        "data",
        "env_var_missing",
        "JCNN_DATA_DIR naming a folder that does not exist",
        _env_var_missing,
        FileNotFoundError,
        ["$JCNN_DATA_DIR=", "datasets", "does not exist", "set JCNN_DATA_DIR to the folder"],
    ),
    Case(
        "data",
        "empty_data_dir_falls_through",
        "load_mnist(data_dir=<an existing folder without the files>)",
        _valid_existing_empty_data_dir,
        valid="the next source ($JCNN_DATA_DIR, then the cache) is used, as documented",
    ),
    Case(
        "data",
        "cached_file_not_published",
        "a cached MNIST file whose SHA256 is not the published one (damaged, other version)",
        _cached_file_not_published,
        ChecksumMismatchError,
        [MNIST_T10K, "SHA256 mismatch", f"expected {PUBLISHED}", "got ", "Delete it"],
    ),
    Case(
        "data",
        "data_dir_file_not_published",
        "data_dir holding files under MNIST's names that are not the published files",
        _data_dir_file_not_published,
        ChecksumMismatchError,
        [f"user/{MNIST_T10K}: SHA256 mismatch", f"expected {PUBLISHED}", "Delete it"],
    ),
    Case(
        "data",
        "verified_once",
        "loading verified files again, then after one of them changed",
        _valid_verified_once,
        valid="each file is hashed once (a marker records it); a changed file is hashed again",
    ),
    Case(
        "data",
        "cifar_archive_not_published",
        "a cifar-10-binary.tar.gz that is not the published archive",
        _cifar_archive_not_published,
        ChecksumMismatchError,
        ["cifar-10-binary.tar.gz: SHA256 mismatch for the cifar10 file", "Delete it"],
    ),
    Case(
        "data",
        "idx_bad_magic",
        "read_idx of a file whose magic number is not 0x0000<dtype><ndim>",
        _idx_bad_magic,
        ValueError,
        ["images-idx3-ubyte: bad IDX magic number 0x00000703", "expected 0x0000<dtype><ndim>"],
    ),
    Case(
        "data",
        "idx_truncated",
        "read_idx of a truncated IDX file",
        _idx_truncated,
        ValueError,
        ["cut-idx3-ubyte: IDX size mismatch (truncated)", "2352 payload bytes", "2252"],
    ),
    Case(
        "data",
        "labels_shorter_than_images",
        "a labels file with fewer entries than the images file",
        _labels_shorter_than_images,
        ValueError,
        ["t10k-labels-idx1-ubyte.gz: expected 4 labels", "got shape (3,)"],
    ),
    Case(
        "data",
        "cifar_batch_wrong_size",
        "a CIFAR-10 .bin batch whose size is not a multiple of 3073 bytes",
        _cifar_batch_wrong_size,
        ValueError,
        ["test_batch.bin: size 6139 bytes", "record size 3073", "truncated"],
    ),
    Case(
        "data",
        "pickle_as_mnist_files",
        "pickles planted under MNIST's file names",
        _pickle_as_mnist_files,
        ChecksumMismatchError,
        [MNIST_T10K, "SHA256 mismatch"],
    ),
    Case(
        "data",
        "pickle_as_idx",
        "read_idx of a pickle",
        _pickle_as_idx,
        ValueError,
        ["labels-idx1-ubyte: bad IDX magic number 0x8004"],
    ),
    Case(
        "data",
        "pickle_as_cifar_batch",
        "a pickle planted as cifar-10-batches-bin/test_batch.bin",
        _pickle_as_cifar_batch,
        ValueError,
        ["test_batch.bin: size", "not a CIFAR-10 binary batch"],
    ),
    Case(
        "data",
        "python_cifar_pickles",
        "only the pickled 'python version' of CIFAR-10 (cifar-10-batches-py) on disk",
        _python_cifar_is_not_read,
        DatasetUnavailableError,
        ["Dataset 'cifar10' is unavailable", "cifar-10-binary.tar.gz", "download=False"],
    ),
    Case(
        "data",
        "unknown_split",
        'load_mnist("validation")',
        lambda tmp: load_mnist("validation", data_dir=tmp, download=False),
        ValueError,
        ["split must be one of ('train', 'test')", "'validation'"],
    ),
    Case(
        "data",
        "unknown_dataset",
        'is_available("imagenet")',
        lambda tmp: is_available("imagenet", "test", tmp),
        ValueError,
        ["unknown dataset 'imagenet'", "mnist, fashion_mnist or cifar10"],
    ),
]
