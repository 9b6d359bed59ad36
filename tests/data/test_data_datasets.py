"""Dataset loaders, lookup order, downloads (file:// only, never the internet), checksums of
files on disk, and CIFAR-10 binary.

An autouse fixture points every mirror at a missing file:// folder, clears ``JCNN_DATA_DIR`` and
moves ``XDG_CACHE_HOME`` into ``tmp_path``, so no test can reach the network or the real cache.
It also empties the table of known SHA256s (the fake files written here are not the published
ones); the tests of verification put the fake files' digests in it (:func:`known`).
"""

from __future__ import annotations

import hashlib
import io
import json
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
    load_mnist_or_fallback,
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


PUBLISHED_SHA256 = {dataset: dict(table) for dataset, table in dl.SHA256.items()}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    offline = (tmp_path / "no-such-mirror").as_uri() + "/"
    for key in list(dl.MIRRORS):
        monkeypatch.setitem(dl.MIRRORS, key, (offline,))
        monkeypatch.setitem(dl.SHA256, key, {})


def known(monkeypatch: pytest.MonkeyPatch, dataset: str, *paths: Path) -> None:
    """Makes ``paths`` (as they are now) the published files of ``dataset``."""
    monkeypatch.setitem(dl.SHA256, dataset, {p.name: sha256(p) for p in paths})


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
    # an explicit (existing) folder without the files falls through to the next source
    (tmp_path / "empty").mkdir()
    assert len(load_mnist("test", data_dir=tmp_path / "empty", download=False)[0]) == 5


def test_data_dir_and_env_var_must_be_existing_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_mnist(cache_dir("mnist"), "test", 5)  # would be found if a bad path fell through
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileNotFoundError, match="data_dir .*typo.* does not exist"):
        load_mnist("test", data_dir=tmp_path / "typo", download=False)
    with pytest.raises(NotADirectoryError, match="data_dir .*a_file is a file, not a folder"):
        is_available("mnist", "test", data_dir=tmp_path / "a_file")
    monkeypatch.setenv("JCNN_DATA_DIR", str(tmp_path / "a_file"))
    with pytest.raises(NotADirectoryError) as info:
        load_mnist("test", download=False)
    assert f"$JCNN_DATA_DIR='{tmp_path / 'a_file'}'" in str(info.value)
    assert "is a file, not a folder" in str(info.value) and "unset it" in str(info.value)
    monkeypatch.setenv("JCNN_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError, match=r"\$JCNN_DATA_DIR=.*gone.* does not exist"):
        load_cifar10("test", download=False)


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
    (tmp_path / "nothing-here").mkdir()
    x, y = load_mnist("test", data_dir=tmp_path / "nothing-here")
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x[..., 0], normalize(images))
    cached = sorted(p.name for p in cache_dir("mnist").iterdir())
    markers = [n + dl.MARKER_SUFFIX for n in NAMES["test"]]  # verified while downloading
    assert cached == sorted([*NAMES["test"], *markers])  # no temporary files left
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
    monkeypatch.setitem(dl.SHA256, "mnist", PUBLISHED_SHA256["mnist"])
    (tmp_path / "envdir").mkdir()
    (tmp_path / "mydir").mkdir()
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
    for dataset, table in PUBLISHED_SHA256.items():
        assert dataset in dl.MIRRORS and dataset in dl.SUBDIRS
        for digest in table.values():
            assert len(digest) == 64 and int(digest, 16) >= 0
    assert PUBLISHED_SHA256["mnist"]["t10k-images-idx3-ubyte.gz"].startswith("167310007f")


# --------------------------------------------------------------------------- files on disk


def test_cached_file_is_verified_once_per_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = cache_dir("mnist")
    images, labels = make_mnist(folder, "test", 4)
    paths = [folder / n for n in NAMES["test"]]
    known(monkeypatch, "mnist", *paths)
    hashed: list[str] = []
    real_sha256_file = dl.sha256_file

    def counting(path: Path, *args: object) -> str:
        hashed.append(Path(path).name)
        return real_sha256_file(path, *args)

    monkeypatch.setattr(dl, "sha256_file", counting)
    np.testing.assert_array_equal(load_mnist("test", download=False)[1], labels)
    assert sorted(hashed) == sorted(NAMES["test"])
    markers = [p.with_name(p.name + dl.MARKER_SUFFIX) for p in paths]
    record = json.loads(markers[0].read_text())
    assert record["sha256"] == sha256(paths[0]) and record["size"] == paths[0].stat().st_size
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # atomic: no temp files
    load_mnist("test", download=False)
    assert len(hashed) == 2  # verified once: not hashed again

    # A lost marker, or a file whose mtime changed, is hashed again.
    markers[1].unlink()
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 10**9))
    load_mnist("test", download=False)
    assert sorted(hashed[2:]) == sorted(NAMES["test"])
    markers[0].write_text("{not json")  # an unreadable marker: verified again, rewritten
    load_mnist("test", download=False)
    assert hashed[4:] == [NAMES["test"][0]] and json.loads(markers[0].read_text())["sha256"]

    # The same size, other bytes (a damaged cache entry): refused, kept, the fix said.
    data = bytearray(paths[1].read_bytes())
    data[-1] ^= 0xFF
    paths[1].write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError) as info:
        load_mnist("test", download=False)
    message = str(info.value)
    for needle in (
        str(paths[1]),
        "SHA256 mismatch for the mnist file t10k-labels-idx1-ubyte.gz",
        f"expected {dl.SHA256['mnist'][NAMES['test'][1]]}",
        f"got {sha256(paths[1])}",
        "Delete it",
        "downloads a verified copy",
    ):
        assert needle in message, needle
    assert paths[1].exists()


def test_data_dir_files_are_verified_and_the_folder_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user"
    make_mnist(user, "test", 3)
    known(monkeypatch, "mnist", *(user / n for n in NAMES["test"]))
    assert len(load_mnist("test", data_dir=user, download=False)[0]) == 3
    assert sorted(p.name for p in user.iterdir()) == sorted(NAMES["test"])  # nothing written
    assert len(list((dl.cache_dir() / "verified").iterdir())) == 2  # the markers live there
    make_mnist(user, "test", 3, seed=1)  # other files under the published names
    with pytest.raises(ChecksumMismatchError, match="user/t10k-images-idx3-ubyte.gz: SHA256"):
        load_mnist_splits(user, download=False)


def test_files_without_a_known_sha256_are_not_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_mnist(tmp_path / "d", "test", 2)
    monkeypatch.setattr(dl, "sha256_file", lambda *a: pytest.fail("hashed an unknown file"))
    assert len(load_mnist("test", data_dir=tmp_path / "d", download=False)[0]) == 2


def test_cifar_archive_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_cifar(tmp_path / "c", as_archive=True)
    archive = tmp_path / "c" / "cifar-10-binary.tar.gz"
    known(monkeypatch, "cifar10", archive)
    assert len(load_cifar10("test", data_dir=tmp_path / "c", download=False)[0]) == 7
    monkeypatch.setitem(dl.SHA256, "cifar10", {archive.name: "0" * 64})
    with pytest.raises(ChecksumMismatchError, match=f"expected {'0' * 64}"):
        load_cifar10("test", data_dir=tmp_path / "c", download=False)


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


def test_split_sources_say_exactly_what_was_used(tmp_path: Path) -> None:
    """Each split as a slice of its file with its size, the seed of a random subset."""
    t10k, full = tmp_path / "t10k", tmp_path / "full"
    images, labels = make_mnist(t10k, "test", 20)
    s = load_mnist_splits(t10k, n_train=4, n_val=3, seed=5, download=False)
    assert s["source"] == (
        "mnist:t10k-only (train = 4 random of t10k[0:10] (seed 5), "
        f"val = test = t10k[17:20] (3)) from {t10k}"
    )
    np.testing.assert_array_equal(s["val"][1], labels[17:20])  # what the words say
    assert set(map(bytes, s["train"][0])) <= set(map(bytes, normalize(images[:10, ..., None])))
    s = load_mnist_splits(t10k, download=False)
    assert s["source"] == (
        f"mnist:t10k-only (train = t10k[0:10] (10), val = test = t10k[10:20] (10)) from {t10k}"
    )
    make_mnist(full, "train", 30, seed=1)
    make_mnist(full, "test", 8, seed=2)
    s = load_mnist_splits(full, n_train=7, n_val=10, download=False)
    assert s["source"] == (
        "mnist:full (train = 7 random of train[0:20] (seed 0), val = train[20:30] (10), "
        f"test = t10k[0:8] (8)) from {full} and {full}"
    )
    s = load_mnist_splits(full, download=False)
    assert s["source"].startswith(
        "mnist:full (train = train[0:30] (30), val = test = t10k[0:8] (8), no holdout) from"
    )
    assert [len(s[k][0]) for k in ("train", "val", "test")] == [30, 8, 8]


@pytest.mark.skipif(
    not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="no real MNIST"
)
def test_splits_on_the_real_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(dl.SHA256, "mnist", PUBLISHED_SHA256["mnist"])  # the real files pass
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


def test_mnist_or_fallback_prints_the_whole_explanation(capsys: pytest.CaptureFixture) -> None:
    # No data_dir, no $JCNN_DATA_DIR, an empty cache (the autouse fixture) and no download.
    with pytest.raises(DatasetUnavailableError) as info:
        load_mnist_splits(download=False)
    reason = str(info.value).splitlines()
    assert len(reason) >= 4  # the folders searched, why no download, how to provide the files
    data = load_mnist_or_fallback(download=False)
    err = capsys.readouterr().err
    assert err.startswith("MNIST is not available, so scikit-learn's 8x8 digits are used")
    for line in reason:  # every line of the library's explanation, none cut off
        assert line in err, line
    assert "--data-dir <folder>" in err and "$JCNN_DATA_DIR" in err
    assert data["source"] == (
        "sklearn-digits fallback (1797 8x8 digits resized to 28x28, permuted with seed 0: "
        "train = digits[0:1078] (1078), val = test = digits[1078:1797] (719))"
    )
    assert data["source"] in err
    assert data["train"][0].shape == (1078, 28, 28, 1) and data["val"] is data["test"]
    assert data["train"][0].dtype == np.float32 and data["train"][1].dtype == np.int32
    assert 0.0 <= data["train"][0].min() and data["train"][0].max() <= 1.0
    # The images are the digits, permuted with seed 0 and centred on a 28x28 canvas.
    _, labels = load_digits_fallback()
    order = np.random.default_rng(0).permutation(len(labels))
    np.testing.assert_array_equal(data["train"][1], labels[order[:1078]])
    np.testing.assert_array_equal(data["val"][1], labels[order[1078:]])
    assert data["train"][0][:, :4].max() == 0.0 and data["train"][0][:, 24:].max() == 0.0


def test_mnist_or_fallback_sizes_and_quiet(capsys: pytest.CaptureFixture) -> None:
    data = load_mnist_or_fallback(download=False, n_train=100, n_val=50, quiet=True)
    assert capsys.readouterr().err == ""
    assert data["train"][0].shape == (100, 28, 28, 1) and data["val"][0].shape == (50, 28, 28, 1)
    assert data["source"].endswith(
        "train = digits[0:100] (100), val = test = digits[1078:1128] (50))"
    )
    more = load_mnist_or_fallback(download=False, n_train=5000, quiet=True)  # more than there are
    assert len(more["train"][0]) == 1078 and "train = digits[0:1078] (1078)" in more["source"]
    with pytest.raises(ValueError, match="n_val must be >= 1"):
        load_mnist_or_fallback(download=False, n_val=0, quiet=True)


def test_mnist_or_fallback_uses_mnist_when_found(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, labels = make_mnist(tmp_path / "user", "test", 12)
    data = load_mnist_or_fallback(tmp_path / "user", download=False, n_val=2)
    assert data["source"].startswith("mnist:t10k-only (train = t10k[0:6] (6)")
    np.testing.assert_array_equal(data["val"][1], labels[10:])
    _, labels = make_mnist(cache_dir("mnist"), "test", 8)  # no data_dir: the cache
    assert load_mnist_or_fallback(download=False)["source"].endswith(f"from {cache_dir('mnist')}")
    assert capsys.readouterr().err == ""  # nothing to explain


def test_mnist_or_fallback_never_falls_back_from_a_given_data_dir(tmp_path: Path) -> None:
    make_mnist(cache_dir("mnist"), "test", 5)  # would be used if a bad data_dir fell through
    with pytest.raises(FileNotFoundError, match=f"data_dir {tmp_path / 'typo'} does not exist"):
        load_mnist_or_fallback(tmp_path / "typo", download=False)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="a_file is a file, not a folder"):
        load_mnist_or_fallback(tmp_path / "a_file", download=False)
    (tmp_path / "empty").mkdir()
    make_mnist(tmp_path / "empty", "train", 3)
    (tmp_path / "empty" / NAMES["train"][1]).unlink()  # half a split is no split
    with pytest.raises(FileNotFoundError) as info:
        load_mnist_or_fallback(tmp_path / "empty", download=False)
    message = str(info.value)
    assert f"data_dir {tmp_path / 'empty'} holds no MNIST files" in message
    assert "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "empty" / "mnist") in message
    make_mnist(tmp_path / "sub" / "mnist", "test", 4)  # the files in <folder>/mnist/ count
    data = load_mnist_or_fallback(tmp_path / "sub", download=False)
    assert data["source"].endswith(f"from {tmp_path / 'sub' / 'mnist'}")
