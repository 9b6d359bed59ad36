"""Mini-batching on the host (numpy) and data augmentation on the device (JAX).

Host side: :func:`batches` yields ``(x, y)`` numpy batches, shuffled reproducibly per epoch
with ``np.random.default_rng([seed, epoch])``; :func:`num_batches` says how many it yields.

Device side: :func:`random_crop`, :func:`random_flip` and :func:`augment` are pure functions of a
PRNG key, usable inside ``jax.jit``, ``lax.scan`` and ``vmap`` (``padding`` / ``crop_padding`` /
``flip`` are static Python values). The random decisions come from :func:`crop_offsets` and
:func:`flip_mask` with the same key, so they can be reproduced (e.g. by a numpy reference).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "augment",
    "batches",
    "crop_offsets",
    "epoch_permutation",
    "flip_mask",
    "num_batches",
    "random_crop",
    "random_flip",
]


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Number of batches :func:`batches` yields for ``n`` examples.

    ``n // batch_size`` with ``drop_remainder``, else ``ceil(n / batch_size)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_permutation(n: int, seed: int | None, epoch: int = 0) -> np.ndarray:
    """The example order :func:`batches` uses: a permutation of ``range(n)``.

    ``np.random.default_rng([seed, epoch]).permutation(n)`` -- reproducible for a given
    ``(seed, epoch)`` and different across epochs. ``seed=None`` draws fresh OS entropy.

    Shapes:
        output: (n,) int64.
    """
    rng = np.random.default_rng(None if seed is None else [seed, epoch])
    return rng.permutation(n)


def batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    seed: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = True,
    epoch: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterates once (one epoch) over ``(images, labels)`` in mini-batches.

    Args:
        images: array with the examples along axis 0.
        labels: array with as many entries as ``images`` along axis 0.
        batch_size: examples per batch.
        seed: shuffling seed; with ``epoch`` it fixes the order (see :func:`epoch_permutation`).
            None with ``shuffle=True`` gives a non-reproducible order.
        shuffle: shuffle the order; False keeps the original order (batches are then views).
        drop_remainder: drop the last, smaller batch (so every batch has ``batch_size``
            examples and a jitted step compiles once); False yields it.
        epoch: epoch number, mixed into the seed so each epoch has its own order.

    Yields:
        ``(x, y)`` numpy batches; :func:`num_batches` of them.

    Shapes:
        images: (N, ...); labels: (N, ...); x: (B, ...); y: (B, ...), B = ``batch_size`` (the last
        batch may be smaller when ``drop_remainder=False``).

    Raises:
        ValueError: mismatched lengths or ``batch_size < 1``.
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"images and labels differ in length: {n} vs {len(labels)}")
    count = num_batches(n, batch_size, drop_remainder)
    order = epoch_permutation(n, seed, epoch) if shuffle else None
    for b in range(count):
        lo, hi = b * batch_size, min((b + 1) * batch_size, n)
        if order is None:
            yield images[lo:hi], labels[lo:hi]
        else:
            idx = order[lo:hi]
            yield images[idx], labels[idx]


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
