"""Reader and writer for the IDX format of the MNIST family (LeCun et al.).

An IDX file is a 4-byte magic number, one big-endian uint32 per dimension, then the payload in
C order and big-endian byte order::

    magic = 0x00 0x00 <dtype code> <ndim>

with the dtype codes ``0x08`` ubyte, ``0x09`` signed byte, ``0x0B`` int16, ``0x0C`` int32,
``0x0D`` float32 and ``0x0E`` float64. MNIST ships ``idx3-ubyte`` images (N, 28, 28) and
``idx1-ubyte`` labels (N,), usually gzip-compressed. Files are recognised as gzip by their first two
bytes (``1f 8b``), not by their name, so a raw file called ``*.gz`` (or the reverse) still loads.

Every problem with a file (bad magic, unknown dtype code, truncated or oversize payload, damaged
gzip stream) raises a ``ValueError`` naming the file and what was wrong.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from jcnn.data.download import write_atomic

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX dtype code -> big-endian numpy dtype of the payload."""

_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Returns the (decompressed) content of ``path``; gzip is detected by its magic bytes."""
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path}: damaged or truncated gzip stream ({type(err).__name__}: {err})"
        ) from err


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an IDX file (raw or gzip-compressed) into a numpy array.

    Args:
        path: the file, e.g. ``t10k-images-idx3-ubyte.gz``.

    Returns:
        The array with the dimensions from the header, in native byte order (uint8 for
        ``ubyte`` files, int8/int16/int32/float32/float64 for the other codes).

    Shapes:
        images file ``idx3``: (N, rows, cols); labels file ``idx1``: (N,); in general one axis per
        dimension in the header.

    Raises:
        ValueError: the magic number is wrong, the dtype code is unknown, the file is shorter or
            longer than its header says, or the gzip stream is damaged. The message names the file.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file: only {len(data)} bytes, no 4-byte magic number")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()}: expected 0x0000<dtype><ndim> "
            f"with dtype code one of {[hex(c) for c in IDX_DTYPES]}"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated IDX header: magic says {ndim} dimensions "
            f"({header_size} header bytes) but the file has {len(data)} bytes"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_size
    if actual != expected:
        kind = "truncated" if actual < expected else "trailing bytes"
        raise ValueError(
            f"{path}: IDX size mismatch ({kind}): header declares shape {dims} of {dtype.name} "
            f"= {expected} payload bytes, but the file holds {actual}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> Path:
    """Writes ``array`` as an IDX file, the exact format :func:`read_idx` (and MNIST) uses.

    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so readers never see a half-written file.

    Args:
        path: destination; gzip-compressed when it ends in ``.gz`` (unless ``compress`` says
            otherwise).
        array: any array whose dtype is uint8, int8, int16, int32, float32 or float64, with
            1 to 255 dimensions.
        compress: force (True) or prevent (False) gzip compression; None follows the file name.

    Returns:
        The path written.

    Shapes:
        array: (d0, d1, ...) stored as-is; e.g. images (N, 28, 28) uint8, labels (N,) uint8.

    Raises:
        ValueError: unsupported dtype or number of dimensions.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(
            f"write_idx: dtype {array.dtype} has no IDX code; use one of "
            f"{sorted(str(d) for d in codes)}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: IDX needs 1..255 dimensions, got {array.ndim}")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    return write_atomic(path, payload)
