"""Decoding one image file to uint8 RGB, the way torchvision's ``pil_loader`` does, with JPEG draft mode.

Every image becomes ``Image.convert("RGB")`` of what Pillow opened: grayscale (``L``, ``I;16``),
palette (``P``), ``CMYK`` and images with alpha (``RGBA``, ``LA``, ``P`` with transparency) alike, so
pixels equal torchvision's ``ImageFolder`` default loader [torchvision ``datasets.folder.pil_loader``].
Alpha is dropped, not composited over a background, exactly as ``convert("RGB")`` does.

A file Pillow cannot read, or reads only in part, raises :class:`ImageDecodeError` naming the file
and what was wrong. Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at ``False`` (jcnn never
sets it): a truncated JPEG is an error, not an image with a grey bottom.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

__all__ = ["ImageDecodeError", "decode_image", "open_image"]

# Errors Pillow raises for bad data (besides OSError, which also covers UnidentifiedImageError and
# "image file is truncated"): plugins parse headers with struct and raise SyntaxError, ValueError,
# EOFError or IndexError on nonsense; DecompressionBombError is an Exception of its own.
_PILLOW_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    TypeError,
    Image.DecompressionBombError,
)
# A missing or unreadable path is not bad image data: let the operating system's error through.
_FILE_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded: truncated, corrupt, or not an image at all.

    The message names the file (or ``<N bytes>`` for in-memory data) and Pillow's reason.
    """


def _describe_source(source: str | os.PathLike[str] | bytes) -> str:
    """How an error message names ``source``: the path as given, or ``<N bytes>`` for raw data."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


def decode_image(
    source: str | os.PathLike[str] | bytes, *, min_size: int | None = None
) -> np.ndarray:
    """Decode an image file (path or encoded bytes) to uint8 RGB, as torchvision's ``pil_loader``.

    With ``min_size``, a JPEG is decoded at reduced size by libjpeg's DCT scaling (Pillow's draft
    mode, ``img.draft("RGB", (min_size, min_size))``), which is several times faster than a full
    decode followed by a resize. JPEG allows only the scale factors 1/2, 1/4 and 1/8 (or 1): the
    largest that keeps the shorter side ``>= min_size`` is used, and the reduced size is
    ``ceil(W / s), ceil(H / s)`` for ``s`` in 1, 2, 4, 8. So the result is at most 8x smaller and
    may still be up to twice ``min_size`` on its shorter side; resize afterwards to an exact size.
    Other formats (PNG, BMP, WebP, ...) have no reduced decode and come back at full size. If the
    image is already smaller than ``min_size`` it is decoded at full size (never upscaled).

    Shapes:
        returns: ``(H, W, 3)`` uint8; with ``min_size`` on a JPEG, ``(ceil(H/s), ceil(W/s), 3)``
        with ``s`` the largest of 8, 4, 2, 1 such that ``min(H, W) // min_size >= s``.

    Args:
        source: A file path, or the encoded bytes of an image file.
        min_size: If given (``>= 1``), the shorter side the caller needs; lets JPEGs decode at a
            reduced scale. ``None`` (default) decodes at full size.

    Returns:
        A C-contiguous, writable ``np.uint8`` array ``(H, W, 3)``.

    Raises:
        ImageDecodeError: The data is not an image Pillow knows, or is truncated or corrupt. The
            message names the file.
        FileNotFoundError: ``source`` is a path that does not exist (likewise other OS errors
            about the path itself).
        ValueError: ``min_size`` is not a positive integer.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (16, 12), 128).save(buffer, "PNG")   # grayscale, 16 wide, 12 high
        >>> image = decode_image(buffer.getvalue())
        >>> image.shape, image.dtype, int(image[0, 0, 2])
        ((12, 16, 3), dtype('uint8'), 128)
    """
    return _array(open_image(source, min_size=min_size), _describe_source(source))


def _array(rgb: Image.Image, name: str) -> np.ndarray:
    array = np.array(rgb, dtype=np.uint8)
    if array.ndim != 3 or array.shape[-1] != 3:  # defensive: convert("RGB") always gives 3 channels
        raise ImageDecodeError(f"cannot decode image {name}: got an array of shape {array.shape}")
    return array


def open_image(
    source: str | os.PathLike[str] | bytes,
    *,
    min_size: int | None = None,
    max_scale: Callable[[int, int], int] | None = None,
) -> Image.Image:
    """:func:`decode_image` as a loaded RGB ``PIL.Image`` (the same pixels, the same errors):
    what the resizing transforms of :mod:`jcnn.data.transforms` take without a NumPy round
    trip.

    ``max_scale(width, height)``, called with the full size read from the header before
    anything is decoded (for every format), returns the largest reduction the caller accepts; a
    JPEG is then decoded at the largest of 1/8, 1/4, 1/2 within it (and within ``min_size``),
    its size ``ceil(W / s), ceil(H / s)``. The random-resized-crop of
    :func:`jcnn.data.image_folder.load_image` draws its box there.

    Example:
        >>> from PIL import Image
        >>> import io
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (16, 12), 128).save(buffer, "PNG")
        >>> image = open_image(buffer.getvalue())
        >>> image.mode, image.size
        ('RGB', (16, 12))
    """
    if min_size is not None and (
        isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1
    ):
        raise ValueError(f"decode_image: min_size must be a positive int or None, got {min_size!r}")
    name = _describe_source(source)
    fp = (
        io.BytesIO(bytes(source))
        if isinstance(source, (bytes, bytearray, memoryview))
        else os.fspath(source)
    )
    try:
        with Image.open(fp) as img:
            limit = None if max_scale is None else int(max_scale(*img.size))
            if min_size is not None and img.format == "JPEG":
                # draft picks s = largest of 8, 4, 2, 1 with min(W // m, H // m) >= s; then
                # ceil(short / s) >= short / s >= m, so the shorter side stays >= min_size.
                img.draft("RGB", (min_size, min_size))
            elif limit is not None and limit >= 2 and img.format == "JPEG":
                scale = next(s for s in (8, 4, 2) if s <= limit)
                # W // (W // s) == s for W >= s * s: draft then picks exactly s
                img.draft("RGB", (img.size[0] // scale, img.size[1] // scale))
            img.load()
            rgb = img.convert("RGB") if img.mode != "RGB" else img  # pixels stay after exit
    except _FILE_ERRORS:
        raise
    except _PILLOW_ERRORS as error:
        raise ImageDecodeError(
            f"cannot decode image {name}: {type(error).__name__}: {error}. The file is truncated, "
            "corrupt or not an image; delete or replace it, or skip bad files "
            "(jcnn.data.verify_images(index, on_bad='skip'))."
        ) from error
    return rgb
