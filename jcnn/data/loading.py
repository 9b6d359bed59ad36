"""What every data set loader shares: its argument checks and its pixel format.

A loader returns images float32 in [0, 1] (``dtype="float32"``, pixels / 255: :func:`normalize`)
or the raw uint8 pixels (``dtype="uint8"``), and int32 labels.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["DTYPES", "PathLike", "check_args", "finish", "normalize"]

PathLike = str | os.PathLike[str]

DTYPES = ("float32", "uint8")


def normalize(images_uint8: np.ndarray) -> np.ndarray:
    """Maps uint8 pixels 0..255 to float32 in [0, 1] (``x / 255``).

    This is exactly what the loaders do when ``dtype="float32"``.

    Shapes:
        images_uint8: any shape, e.g. (N, H, W, C); the output has the same shape.
    """
    return np.asarray(images_uint8, dtype=np.float32) / np.float32(255.0)


def check_args(split: str, dtype: str, splits: tuple[str, ...] = ("train", "test")) -> None:
    """ValueError unless ``split`` is one of ``splits`` and ``dtype`` one of :data:`DTYPES`."""
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")


def finish(images: np.ndarray, labels: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 ``images`` in the asked ``dtype`` (float32: :func:`normalize`), int32 labels."""
    images = normalize(images) if dtype == "float32" else np.ascontiguousarray(images, np.uint8)
    return images, np.asarray(labels, dtype=np.int32)
