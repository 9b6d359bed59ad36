"""Data augmentation on the device (JAX), and the host batch iterator's names.

Host side: :func:`batches`, :func:`prefetched` and :func:`num_batches` live with the loop that
runs on them, :mod:`jcnn.training.batches` (re-exported here).

Device side: :func:`random_crop`, :func:`random_flip` and :func:`augment` are pure functions of a
PRNG key, usable inside ``jax.jit``, ``lax.scan`` and ``vmap`` (``padding`` / ``crop_padding`` /
``flip`` are static Python values). The random decisions come from :func:`crop_offsets` and
:func:`flip_mask` with the same key, so they can be reproduced (e.g. by a numpy reference).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from jcnn.training.batches import batches, num_batches, prefetched  # noqa: F401
from jcnn.training.keys import DATA_STREAM, data_rng, epoch_permutation  # noqa: F401

__all__ = [
    "augment",
    "batches",
    "crop_offsets",
    "data_rng",
    "epoch_permutation",
    "flip_mask",
    "num_batches",
    "prefetched",
    "random_crop",
    "random_flip",
]


def crop_offsets(key: jax.Array, batch: int, padding: int) -> jax.Array:
    """Per-image crop offsets used by :func:`random_crop`: uniform in ``0..2*padding``.

    Shapes:
        output: (batch, 2) int32, columns (row offset, column offset) into the padded image.
    """
    return jax.random.randint(key, (batch, 2), 0, 2 * padding + 1, dtype=jnp.int32)


def flip_mask(key: jax.Array, batch: int) -> jax.Array:
    """Per-image flip decisions used by :func:`random_flip`: True with probability 0.5.

    Shapes:
        output: (batch,) bool.
    """
    return jax.random.bernoulli(key, 0.5, (batch,))


def random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """Zero-pads height and width by ``padding`` and crops back to (H, W) at a random offset.

    Each image gets its own offset ``(dy, dx) = crop_offsets(key, B, padding)[i]``; the output is
    ``pad(images)[i, dy:dy+H, dx:dx+W]``. ``padding`` must be a static Python int (0 returns the
    input unchanged). Jit-compatible (``lax.dynamic_slice`` under ``vmap``).

    Args:
        key: PRNG key.
        images: batch of images, channels last.
        padding: zero padding on each side of H and W.

    Returns:
        The cropped batch, same shape and dtype as ``images``.

    Shapes:
        images: (B, H, W, C); output: (B, H, W, C).
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if images.ndim != 4:
        raise ValueError(f"random_crop expects (B, H, W, C) images, got shape {images.shape}")
    if padding == 0:
        return images
    return _random_crop(key, images, padding)


@partial(jax.jit, static_argnames=("padding",))
def _random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    # jitted so that eager calls compile once instead of dispatching op by op
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = crop_offsets(key, b, padding)

    def crop_one(image: jax.Array, offset: jax.Array) -> jax.Array:
        return lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop_one)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Flips each image horizontally (along W) with probability 0.5.

    The decisions are ``flip_mask(key, B)``. Jit-compatible.

    Args:
        key: PRNG key.
        images: batch of images, channels last.

    Returns:
        The batch with the selected images mirrored left-right.

    Shapes:
        images: (B, H, W, C); output: (B, H, W, C).
    """
    if images.ndim != 4:
        raise ValueError(f"random_flip expects (B, H, W, C) images, got shape {images.shape}")
    return _random_flip(key, images)


@jax.jit
def _random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    mask = flip_mask(key, images.shape[0])
    return jnp.where(mask[:, None, None, None], images[:, :, ::-1, :], images)


def augment(
    key: jax.Array, images: jax.Array, *, crop_padding: int = 0, flip: bool = False
) -> jax.Array:
    """Random crop (if ``crop_padding > 0``) then random horizontal flip (if ``flip``).

    The key is split as ``crop_key, flip_key = jax.random.split(key)``; the crop uses
    ``crop_key`` and the flip ``flip_key`` (see :func:`random_crop`, :func:`random_flip`).
    ``crop_padding`` and ``flip`` are static. Jit-compatible.

    Args:
        key: PRNG key.
        images: batch of images, channels last.
        crop_padding: padding of :func:`random_crop` (0: no crop).
        flip: apply :func:`random_flip`.

    Returns:
        The augmented batch.

    Shapes:
        images: (B, H, W, C); output: (B, H, W, C).
    """
    crop_key, flip_key = jax.random.split(key)
    if crop_padding:
        images = random_crop(crop_key, images, crop_padding)
    if flip:
        images = random_flip(flip_key, images)
    return images
