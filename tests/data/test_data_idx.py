"""IDX reader/writer: round trips, exact header bytes, and clear errors for damaged files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from jcnn.data.idx import read_idx, write_idx

REAL_MNIST = Path(
    os.environ.get(
        "JCNN_TEST_MNIST_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
    )
)


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_round_trip_uint8_3d(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    path = write_idx(tmp_path / name, images)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (7, 28, 28)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize("name", ["labels-idx1-ubyte.gz", "labels-idx1-ubyte"])
def test_round_trip_uint8_1d(tmp_path: Path, name: str) -> None:
    labels = np.arange(10, dtype=np.uint8)[::-1]
    out = read_idx(write_idx(tmp_path / name, labels))
    assert out.shape == (10,) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip_other_dtypes(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 12).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a.idx", array))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_header_bytes_are_the_true_format(tmp_path: Path) -> None:
    labels = np.zeros(10000, dtype=np.uint8)
    raw = write_idx(tmp_path / "l", labels).read_bytes()
    assert raw[:8] == bytes([0, 0, 0x08, 1, 0, 0, 0x27, 0x10])  # magic 2049, N=10000 big-endian
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    raw = write_idx(tmp_path / "i", images).read_bytes()
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28])
    assert len(raw) == 16 + 2 * 28 * 28
    ints = write_idx(tmp_path / "n", np.array([1], dtype=np.int32)).read_bytes()
    assert ints == bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 0, 1])  # payload big-endian


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    raw = write_idx(tmp_path / "x.idx", array, compress=True)  # gzip without .gz suffix
    np.testing.assert_array_equal(read_idx(raw), array)
    plain = write_idx(tmp_path / "y.gz", array, compress=False)  # raw with .gz suffix
    np.testing.assert_array_equal(read_idx(plain), array)


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(bytes([1, 2, 8, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(ValueError, match=r"bad\.idx.*bad IDX magic number 0x01020801"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]))  # unknown dtype code
    with pytest.raises(ValueError, match="bad IDX magic"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_truncated_payload_raw_and_gz(tmp_path: Path) -> None:
    data = write_idx(tmp_path / "full", np.zeros((3, 4, 4), np.uint8)).read_bytes()
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(data[:-5])
    with pytest.raises(
        ValueError, match=r"short-idx3-ubyte: IDX size mismatch \(truncated\).*48.*43"
    ):
        read_idx(short)
    short_gz = tmp_path / "short.gz"
    short_gz.write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(ValueError, match=r"short\.gz.*truncated"):
        read_idx(short_gz)
    long = tmp_path / "long"
    long.write_bytes(data + b"xx")
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(long)
    header = tmp_path / "header"
    header.write_bytes(data[:10])
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(header)


def test_damaged_gzip_stream(tmp_path: Path) -> None:
    data = write_idx(tmp_path / "a.gz", np.arange(1000, dtype=np.int32)).read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.gz: damaged or truncated gzip"):
        read_idx(cut)


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no IDX code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
    with pytest.raises(ValueError, match="1..255 dimensions"):
        write_idx(tmp_path / "x", np.array(3, dtype=np.uint8))
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


@pytest.mark.skipif(
    not (REAL_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(), reason="no real MNIST"
)
def test_real_mnist_test_labels() -> None:
    labels = read_idx(REAL_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
