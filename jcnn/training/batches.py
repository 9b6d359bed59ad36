"""Mini-batches of in-memory arrays on the host, in the order of the run's data stream.

:func:`batches` is THE host batch iterator of jcnn (``jcnn.fit``'s host loop runs on it):
``(x, y)`` batches in the order of :func:`jcnn.training.keys.epoch_permutation`, optionally
placed on the device (``put``) by a prefetch thread whose errors reach the caller;
:func:`num_batches` says how many it yields. The order of epoch ``e`` for seed ``s`` is
``epoch_permutation(data_rng(s), e, n)``, the order ``fit(seed=s)`` trains on, so
``batches(x, y, B, seed=s, epoch=e)`` yields exactly fit's batches of that epoch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from jcnn.training.keys import data_rng, epoch_permutation

__all__ = ["batches", "num_batches", "prefetched"]

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
