"""Mini-batching on the host (numpy) and data augmentation on the device (JAX).

Host side: :func:`batches` is THE host batch iterator of jcnn (``jcnn.fit``'s host loop runs
on it): ``(x, y)`` batches in the order of :func:`epoch_permutation`, optionally placed on the
device (``put``) by a prefetch thread; :func:`num_batches` says how many it yields. The order of
epoch ``e`` for seed ``s`` is ``epoch_permutation(data_rng(s), e, n)``, the order ``fit(seed=s)``
trains on, so ``batches(x, y, B, seed=s, epoch=e)`` yields exactly fit's batches of that epoch.

Device side: :func:`random_crop`, :func:`random_flip` and :func:`augment` are pure functions of a
PRNG key, usable inside ``jax.jit``, ``lax.scan`` and ``vmap`` (``padding`` / ``crop_padding`` /
``flip`` are static Python values). The random decisions come from :func:`crop_offsets` and
:func:`flip_mask` with the same key, so they can be reproduced (e.g. by a numpy reference).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

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

T = TypeVar("T")
HostBatch = tuple[np.ndarray, np.ndarray]


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Number of batches :func:`batches` yields for ``n`` examples.

    ``n // batch_size`` with ``drop_remainder``, else ``ceil(n / batch_size)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n // batch_size if drop_remainder else -(-n // batch_size)


class _Failed:
    """What the producer thread of :func:`prefetched` sends when its iterator raised."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def prefetched(items: Iterable[T], size: int) -> Iterator[T]:
    """``items``, produced by a background thread up to ``size`` items ahead of the consumer.

    An exception raised while producing is re-raised here, in the consumer, after the items
    produced before it (the thread does not die silently, leaving the consumer waiting). When
    the consumer stops early (``close()``, garbage collection) the thread stops too.
    ``size < 1`` produces the items in the calling thread, one at a time.

    Example:
        >>> list(prefetched((i * i for i in range(4)), 2))
        [0, 1, 4, 9]
    """
    if size < 1:
        yield from items
        return
    out: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def offer(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # handed to the consumer and raised there
            offer(_Failed(error))
        else:
            offer(_DONE)

    threading.Thread(target=produce, name="jcnn-prefetch", daemon=True).start()
    try:
        while (item := out.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()


def batches(
    images: Any,
    labels: Any,
    batch_size: int,
    *,
    seed: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = True,
    epoch: int = 0,
    order: Sequence[int] | np.ndarray | None = None,
    start: int = 0,
    put: Callable[[HostBatch], Any] | None = None,
    prefetch: int = 0,
) -> Iterator[Any]:
    """Iterates once (one epoch) over ``(images, labels)`` in mini-batches.

    Args:
        images: array (or memory map) with the examples along axis 0.
        labels: array with as many entries as ``images`` along axis 0.
        batch_size: examples per batch.
        seed: shuffling seed; with ``epoch`` it fixes the order,
            ``epoch_permutation(data_rng(seed), epoch, N)`` (the order of ``fit(seed=seed)``).
            None with ``shuffle=True`` gives a non-reproducible order.
        shuffle: shuffle the order; False keeps the original order (batches are then views).
        drop_remainder: drop the last, smaller batch (so every batch has ``batch_size``
            examples and a jitted step compiles once); False yields it.
        epoch: epoch number, mixed into the seed so each epoch has its own order.
        order: the example indices to batch, in order (instead of ``seed``/``shuffle``/
            ``epoch``), e.g. a permutation, or the rows of each global batch one process loads.
        start: index of the first batch to yield (resuming mid-epoch).
        put: applied to every ``(x, y)`` numpy batch before it is yielded, e.g.
            ``jax.device_put`` or ``jcnn.distributed.shard_batch``; it runs in the prefetch
            thread when ``prefetch > 0``.
        prefetch: gather (and ``put``) up to this many batches ahead in a background thread
            (see :func:`prefetched`: its errors are raised here); 0 gathers them on demand.

    Yields:
        ``(x, y)`` numpy batches, or ``put((x, y))``; ``num_batches(len(order), batch_size)``
        of them minus ``start``.

    Shapes:
        images: (N, ...); labels: (N, ...); x: (B, ...); y: (B, ...), B = ``batch_size`` (the last
        batch may be smaller when ``drop_remainder=False``).

    Raises:
        ValueError: mismatched lengths, ``batch_size < 1``, ``start`` outside the epoch, or
            ``order`` together with ``seed`` or ``epoch``.

    Example:
        >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
        >>> [yb.tolist() for _, yb in batches(x, y, 2, shuffle=False)]
        [[0, 1], [2, 3]]
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"images and labels differ in length: {n} vs {len(labels)}")
    if order is not None:
        if seed is not None or epoch != 0:
            raise ValueError("batches: give either order or seed/epoch, not both")
        index = np.asarray(order)
        if index.ndim != 1 or (index.size and not np.issubdtype(index.dtype, np.integer)):
            raise ValueError(f"batches: order must be 1-D integers, got {index.dtype}{index.shape}")
    elif shuffle:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        index = np.asarray(epoch_permutation(data_rng(seed), epoch, n))
    else:
        index = None
    count = num_batches(n if index is None else len(index), batch_size, drop_remainder)
    if not 0 <= start <= count:
        raise ValueError(f"batches: start={start} outside 0..{count} (batches in the epoch)")

    def gather() -> Iterator[Any]:
        for b in range(start, count):
            lo, hi = b * batch_size, (b + 1) * batch_size
            if index is None:
                batch = images[lo:hi], labels[lo:hi]
            else:
                idx = index[lo:hi]
                batch = images[idx], labels[idx]
            yield batch if put is None else put(batch)

    return prefetched(gather(), prefetch)


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
