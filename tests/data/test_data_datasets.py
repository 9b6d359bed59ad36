"""Dataset loaders, lookup order, downloads (file:// only, never the internet) and CIFAR-10 binary.

An autouse fixture points every mirror at a missing file:// folder, clears ``JCNN_DATA_DIR`` and
moves ``XDG_CACHE_HOME`` into ``tmp_path``, so no test can reach the network or the real cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import jcnn.data.download as dl
from jcnn.data import (
    DatasetUnavailableError,
    cache_dir,
    is_available,
    load_cifar10,
    load_digits_fallback,
    load_fashion_mnist,
    load_mnist,
    load_mnist_splits,
    normalize,
    write_idx,
)
from jcnn.data.cifar import RECORD_BYTES, read_cifar10_split, read_cifar_binary
from jcnn.data.download import ChecksumMismatchError, download_file

REAL_MNIST = Path(
    os.environ.get(
        "JCNN_TEST_MNIST_DIR",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist",
    )
)
NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    offline = (tmp_path / "no-such-mirror").as_uri() + "/"
    for key in list(dl.MIRRORS):
        monkeypatch.setitem(dl.MIRRORS, key, (offline,))


def make_mnist(folder: Path, split: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Writes a fake split in the true IDX .gz format; returns the uint8 images and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    write_idx(folder / NAMES[split][0], images)
    write_idx(folder / NAMES[split][1], labels)
    return images, labels


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- MNIST from disk


def test_load_mnist_from_folder(tmp_path: Path) -> None:
    images, labels = make_mnist(tmp_path / "d", "test", 12)
    x, y = load_mnist("test", data_dir=tmp_path / "d", download=False)
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (12,) and y.dtype == np.int32
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x[..., 0], images / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y, labels)
    xu, yu = load_mnist("test", data_dir=tmp_path / "d", download=False, dtype="uint8")
    assert xu.dtype == np.uint8 and xu.shape == (12, 28, 28, 1)
    np.testing.assert_array_equal(normalize(xu), x)
    np.testing.assert_array_equal(yu, y)


def test_dataset_subfolder_and_fashion_separation(tmp_path: Path) -> None:
    _, mnist_labels = make_mnist(tmp_path / "root" / "mnist", "train", 5, seed=1)
    _, fashion_labels = make_mnist(tmp_path / "root" / "fashion_mnist", "train", 7, seed=2)
    _, y = load_mnist("train", data_dir=tmp_path / "root", download=False)
    np.testing.assert_array_equal(y, mnist_labels)
    _, y = load_fashion_mnist("train", data_dir=tmp_path / "root", download=False)
    np.testing.assert_array_equal(y, fashion_labels)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_mnist(tmp_path / "explicit", "test", 3)
    make_mnist(tmp_path / "env", "test", 4)
    make_mnist(cache_dir("mnist"), "test", 5)
    assert cache_dir("mnist") == tmp_path / "xdg" / "jcnn" / "mnist"
    monkeypatch.setenv("JCNN_DATA_DIR", str(tmp_path / "env"))
    assert len(load_mnist("test", data_dir=tmp_path / "explicit", download=False)[0]) == 3
    assert len(load_mnist("test", download=False)[0]) == 4  # env beats cache
    monkeypatch.delenv("JCNN_DATA_DIR")
    assert len(load_mnist("test", download=False)[0]) == 5  # cache
    # an explicit folder without the files falls through to the next source
    assert len(load_mnist("test", data_dir=tmp_path / "empty", download=False)[0]) == 5


def test_default_cache_is_home_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "jcnn" / "mnist"


def test_is_available(tmp_path: Path) -> None:
    make_mnist(tmp_path, "test", 2)
    assert is_available("mnist", "test", tmp_path)
    assert not is_available("mnist", "train", tmp_path)
    assert not is_available("cifar10", "test", tmp_path)
    with pytest.raises(ValueError):
        is_available("imagenet", "test", tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation", data_dir=tmp_path, download=False)
    with pytest.raises(ValueError, match="dtype"):
        load_mnist("test", data_dir=tmp_path, download=False, dtype="float64")


def test_malformed_files_name_the_file(tmp_path: Path) -> None:
    make_mnist(tmp_path, "test", 4)
    write_idx(tmp_path / NAMES["test"][1], np.zeros(3, np.uint8))  # 3 labels for 4 images
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: expected 4 labels"):
        load_mnist("test", data_dir=tmp_path, download=False)
    write_idx(tmp_path / NAMES["test"][0], np.zeros((4, 27, 28), np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: expected uint8 images"):
        load_mnist("test", data_dir=tmp_path, download=False)
    (tmp_path / NAMES["test"][0]).write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist("test", data_dir=tmp_path, download=False)


# --------------------------------------------------------------------------- downloads


def serve(
    monkeypatch: pytest.MonkeyPatch, dataset: str, folder: Path, hashes: dict[str, str]
) -> None:
    """Mirrors: a missing folder first (to exercise the fallback), then ``folder``; given hashes."""
    missing = (folder.parent / "missing-mirror").as_uri() + "/"
    monkeypatch.setitem(dl.MIRRORS, dataset, (missing, folder.as_uri() + "/"))
    monkeypatch.setitem(dl.SHA256, dataset, hashes)


def test_download_success_via_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = tmp_path / "server"
    images, labels = make_mnist(server, "test", 6)
    serve(monkeypatch, "mnist", server, {n: sha256(server / n) for n in NAMES["test"]})
    x, y = load_mnist("test", data_dir=tmp_path / "nothing-here")
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[..., 0], normalize(images))
    cached = sorted(p.name for p in cache_dir("mnist").iterdir())
    assert cached == sorted(NAMES["test"])  # no temporary files left
    # now cached: works without the network
    monkeypatch.setitem(dl.MIRRORS, "mnist", ())
    assert len(load_mnist("test", download=False)[0]) == 6


def test_checksum_mismatch_refused_and_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tmp_path / "server"
    make_mnist(server, "test", 6)
    hashes = {n: sha256(server / n) for n in NAMES["test"]}
    hashes[NAMES["test"][0]] = "0" * 64
    serve(monkeypatch, "mnist", server, hashes)
    with pytest.raises(DatasetUnavailableError, match="SHA256 mismatch") as info:
        load_mnist("test")
    assert "refused and deleted" in str(info.value)
    assert not (cache_dir("mnist") / NAMES["test"][0]).exists()
    assert not [p for p in cache_dir("mnist").iterdir() if p.name.startswith(".")]
    # and at the lowest level
    dest = tmp_path / "out" / "file.gz"
    with pytest.raises(ChecksumMismatchError):
        download_file((server / NAMES["test"][0]).as_uri(), dest, sha256="f" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_offline_error_is_helpful(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("simulated: no network")

    monkeypatch.setattr(dl.urllib.request, "urlopen", no_network)
    monkeypatch.setenv("JCNN_DATA_DIR", str(tmp_path / "envdir"))
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist("train", data_dir=tmp_path / "mydir")
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    for needle in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        str(tmp_path / "mydir"),
        "data_dir argument",
        str(tmp_path / "envdir"),
        "$JCNN_DATA_DIR",
        str(cache_dir("mnist")),
        "user cache",
        "failed",
        "simulated: no network",
        "data_dir=",
        "JCNN_DATA_DIR=",
    ]:
        assert needle in msg, needle


def test_download_false_never_touches_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(dl.urllib.request, "urlopen", forbidden)
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        load_mnist("test", download=False)
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        load_cifar10("test", data_dir=tmp_path, download=False)
    with pytest.raises(DatasetUnavailableError):
        load_mnist_splits(tmp_path, download=False)


def test_every_known_file_has_a_sha256() -> None:
    for dataset, table in dl.SHA256.items():
        assert dataset in dl.MIRRORS and dataset in dl.SUBDIRS
        for digest in table.values():
            assert len(digest) == 64 and int(digest, 16) >= 0
    assert dl.SHA256["mnist"]["t10k-images-idx3-ubyte.gz"].startswith("167310007f")


# --------------------------------------------------------------------------- splits


def test_splits_full_mode(tmp_path: Path) -> None:
    _, ytr = make_mnist(tmp_path, "train", 30, seed=1)
    _, yte = make_mnist(tmp_path, "test", 8, seed=2)
    s = load_mnist_splits(tmp_path, download=False)
    assert s["source"].startswith("mnist:full")
    assert len(s["train"][0]) == 30 and s["val"][0].shape == (8, 28, 28, 1)
    np.testing.assert_array_equal(s["val"][1], yte)  # no holdout: val is the test set
    np.testing.assert_array_equal(s["test"][1], yte)
    s = load_mnist_splits(tmp_path, n_val=10, download=False)
    np.testing.assert_array_equal(s["train"][1], ytr[:20])
    np.testing.assert_array_equal(s["val"][1], ytr[20:])
    np.testing.assert_array_equal(s["test"][1], yte)
    s1 = load_mnist_splits(tmp_path, n_train=7, seed=3, download=False)
    s2 = load_mnist_splits(tmp_path, n_train=7, seed=3, download=False)
    assert s1["train"][0].shape == (7, 28, 28, 1)
    np.testing.assert_array_equal(s1["train"][0], s2["train"][0])
    with pytest.raises(ValueError, match="n_train"):
        load_mnist_splits(tmp_path, n_train=31, download=False)


def test_splits_t10k_only_mode(tmp_path: Path) -> None:
    images, labels = make_mnist(tmp_path, "test", 20)
    s = load_mnist_splits(tmp_path, download=False)
    assert s["source"].startswith("mnist:t10k-only")
    np.testing.assert_array_equal(s["train"][1], labels[:10])
    np.testing.assert_array_equal(s["val"][1], labels[10:])
    np.testing.assert_array_equal(s["val"][0][..., 0], normalize(images[10:]))
    assert s["test"] is s["val"]
    s = load_mnist_splits(tmp_path, n_val=4, download=False)
    np.testing.assert_array_equal(s["val"][1], labels[16:])
    with pytest.raises(ValueError, match="n_val"):
        load_mnist_splits(tmp_path, n_val=11, download=False)


@pytest.mark.skipif(
    not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="no real MNIST"
)
def test_splits_on_the_real_folder() -> None:
    s = load_mnist_splits(REAL_MNIST, download=False)
    assert s["source"].startswith("mnist:t10k-only")
    for key in ("train", "val", "test"):
        x, y = s[key]
        assert x.shape == (5000, 28, 28, 1) and x.dtype == np.float32
        assert y.shape == (5000,) and y.dtype == np.int32
        assert x.min() >= 0.0 and x.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
    assert s["train"][1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    _, y = load_mnist("test", data_dir=REAL_MNIST, download=False)
    np.testing.assert_array_equal(y[5000:], s["val"][1])


# --------------------------------------------------------------------------- CIFAR-10


def fake_cifar_bytes(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, size=(n, RECORD_BYTES), dtype=np.uint8)
    records[:, 0] = rng.integers(0, 10, size=n)
    return records.tobytes()


def expected_from_bytes(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Reference decoder written per pixel: image[i, j, c] = record[1 + c*1024 + i*32 + j]."""
    rec = np.frombuffer(data, np.uint8).reshape(-1, RECORD_BYTES)
    images = np.zeros((len(rec), 32, 32, 3), np.uint8)
    for c in range(3):
        for i in range(32):
            images[:, i, :, c] = rec[:, 1 + c * 1024 + i * 32 : 1 + c * 1024 + i * 32 + 32]
    return images, rec[:, 0].astype(np.int32)


def make_cifar(folder: Path, as_archive: bool) -> dict[str, bytes]:
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    files = {name: fake_cifar_bytes(2 + k, seed=k) for k, name in enumerate(names)}
    folder.mkdir(parents=True, exist_ok=True)
    if as_archive:
        with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        for name, data in files.items():
            (folder / "cifar-10-batches-bin").mkdir(exist_ok=True)
            (folder / "cifar-10-batches-bin" / name).write_bytes(data)
    return files


def test_cifar_record_layout(tmp_path: Path) -> None:
    data = fake_cifar_bytes(3, seed=9)
    (tmp_path / "b.bin").write_bytes(data)
    images, labels = read_cifar_binary(tmp_path / "b.bin")
    ref_images, ref_labels = expected_from_bytes(data)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(images, ref_images)
    np.testing.assert_array_equal(labels, ref_labels)


@pytest.mark.parametrize("as_archive", [False, True])
def test_load_cifar10_folder_and_archive(tmp_path: Path, as_archive: bool) -> None:
    files = make_cifar(tmp_path / "c", as_archive)
    x, y = load_cifar10("train", data_dir=tmp_path / "c", download=False)
    train = b"".join(files[f"data_batch_{i}.bin"] for i in range(1, 6))
    ref_x, ref_y = expected_from_bytes(train)
    assert x.shape == (2 + 3 + 4 + 5 + 6, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, normalize(ref_x))
    np.testing.assert_array_equal(y, ref_y)
    xt, yt = load_cifar10("test", data_dir=tmp_path / "c", download=False, dtype="uint8")
    np.testing.assert_array_equal(xt, expected_from_bytes(files["test_batch.bin"])[0])
    assert is_available("cifar10", "test", tmp_path / "c")


def test_cifar_errors(tmp_path: Path) -> None:
    bad = tmp_path / "data_batch_1.bin"
    bad.write_bytes(fake_cifar_bytes(2, 0)[:-1])
    with pytest.raises(ValueError, match="data_batch_1.bin: size 6145 bytes"):
        read_cifar_binary(bad)
    records = np.frombuffer(fake_cifar_bytes(1, 0), np.uint8).copy()
    records[0] = 10
    bad.write_bytes(records.tobytes())
    with pytest.raises(ValueError, match="label byte 10"):
        read_cifar_binary(bad)
    with tarfile.open(tmp_path / "partial.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        data = fake_cifar_bytes(1, 0)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="does not contain data_batch_1.bin"):
        read_cifar10_split(tmp_path / "partial.tar.gz", "train")
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes((tmp_path / "partial.tar.gz").read_bytes()[:40])
    with pytest.raises(ValueError, match="cut.tar.gz"):
        read_cifar10_split(truncated, "test")


def test_cifar_download_via_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = make_cifar(tmp_path / "server", as_archive=True)
    archive = tmp_path / "server" / "cifar-10-binary.tar.gz"
    serve(monkeypatch, "cifar10", tmp_path / "server", {archive.name: sha256(archive)})
    _, y = load_cifar10("test")
    np.testing.assert_array_equal(y, expected_from_bytes(files["test_batch.bin"])[1])
    assert (cache_dir("cifar10") / archive.name).is_file()


# --------------------------------------------------------------------------- fallback


def test_digits_fallback() -> None:
    x, y = load_digits_fallback()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
