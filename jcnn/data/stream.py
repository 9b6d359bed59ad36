"""A streaming data source on Grain: records loaded by worker processes, resumable and sharded.

:class:`StreamSource` turns a random-access sequence of records (file paths, ``(path, label)``
pairs, small arrays: anything a ``load`` function understands) into an iterable of
``(images, labels)`` numpy batches, uint8 ``(B, H, W, C)`` and int32 ``(B,)``, with
``len()`` = batches per epoch and a position that :meth:`~StreamSource.state` saves and
:meth:`~StreamSource.restore` restores [Grain's checkpointable iterators]. :func:`jcnn.fit`
takes one where it takes arrays (it runs the host loop over its batches and keeps the position
in its checkpoints, so a resumed run continues the same sample order).

The pipeline of epoch ``e`` is Grain's ``MapDataset``::

    MapDataset.range(n).shuffle(seed=order_seed(seed, e))  # record indices, epoch e's order
      [: steps * batch_size]                                # whole global batches
      .map(load(records[i], rng(seed, e, i)))               # decode, crop, ...: in the workers
      .batch(batch_size // shard_count)                     # this shard's rows, consecutive
      [shard_index::shard_count]                            # its part of every global batch
      .to_iter_dataset(ReadOptions(threads, buffer))        # threads per process, read-ahead
      .mp_prefetch(workers)                                 # worker processes (0: in-process)

so the order of epoch ``e`` is a function of ``(seed, e)`` only, each record's randomness of
``(seed, e, record index)`` only, and neither depends on the number of workers or shards.
Grain's ``mp_prefetch`` hands element ``i`` to worker ``i % workers`` and reads them back in
order, so the batches are the same with 0, 1 or 8 workers. A position is ``(epoch, batch
index)``: the ``MapDataset`` is random access, so a restored source slices the epoch at the
batch index (no Grain iterator state needs saving, and a position saved with some number of
workers or shards restores with any other).

Sharding: the global batch ``b`` of an epoch is positions ``[b*B, (b+1)*B)`` of its order;
shard ``k`` of ``K`` reads rows ``[k*B/K, (k+1)*B/K)`` of it, the rows that process ``k``
holds of a batch split over a data mesh
(:func:`jcnn.training.placement.process_batch_slice`). On a mesh each process passes its local
batch to :func:`global_batch` (``jax.make_array_from_process_local_data``), which assembles the
global ``(B, ...)`` array split over the mesh axis; ``jcnn.fit(mesh=...)`` does this itself.

Images travel as uint8 and are normalised on the device: make :func:`normalize_on_device` the
net's first layer (so training, validation and prediction all see the same inputs).

Example:
    >>> records = [np.full((2, 2, 1), i, np.uint8) for i in range(10)]
    >>> source = StreamSource(records, lambda r, rng: (r, int(r[0, 0, 0]) % 2), batch_size=4,
    ...                       shard_index=0, shard_count=1)
    >>> len(source), [x.shape for x, _ in source]
    (2, [(4, 2, 2, 1), (4, 2, 2, 1)])
    >>> source.state()["epoch"], source.state()["index"]
    (1, 0)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
import numpy as np

from jcnn.layers.core import Fns, Layer, leaf, parameter_free
from jcnn.training.checks import PAD_LABEL

__all__ = [
    "LoadError",
    "StreamSource",
    "default_threads",
    "global_batch",
    "normalize_on_device",
    "order_seed",
    "record_rng",
]

#: ``load(record, rng) -> (image uint8 (H, W, C), label int)``.
LoadFn = Callable[[Any, np.random.Generator], tuple[Any, Any]]
Batch = tuple[np.ndarray, np.ndarray]

#: The keys of :meth:`StreamSource.state` that a restored source must share with the saved one.
_SAME = ("seed", "batch_size", "examples", "shuffle")
#: Records hashed by :meth:`StreamSource.fingerprint` (spread evenly over the set).
_SAMPLE = 16
#: Epochs one Grain pipeline (and its worker processes) runs ahead over before a new one starts.
EPOCHS_AHEAD = 1000


def default_threads(workers: int) -> int:
    """Loading threads per process: this machine's CPU cores shared over the ``workers``
    processes (or this one), at least 1 and at most 8.

    Example:
        >>> 1 <= default_threads(2) <= 8
        True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, (cores or 1) // max(workers, 1)))


class LoadError(RuntimeError):
    """A record's ``load`` failed or returned something that is not ``(uint8 image, label)``;
    the message names the record (its index and its value) and what went wrong."""


def order_seed(seed: int, epoch: int) -> int:
    """The Grain shuffle seed of ``epoch``'s order (a 32-bit function of ``(seed, epoch)``).

    Example:
        >>> order_seed(0, 0) == order_seed(0, 0) != order_seed(0, 1)
        True
    """
    return int(np.random.SeedSequence([int(seed) % 2**63, int(epoch)]).generate_state(1)[0])


def record_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator handed to ``load`` for record ``index`` in ``epoch``: a function of the
    three numbers only, so augmentation is reproducible with any number of workers.

    Example:
        >>> int(record_rng(0, 1, 2).integers(100)) == int(record_rng(0, 1, 2).integers(100))
        True
    """
    return np.random.default_rng([int(seed) % 2**63, int(epoch), int(index)])


def _shown(record: Any, limit: int = 200) -> str:
    text = " ".join(repr(record).split())  # one line
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Load:
    """``index -> (image, label)`` of epoch ``epoch``: the map that runs in the workers."""

    def __init__(self, records: Sequence[Any], load: LoadFn, seed: int, epoch: int) -> None:
        self.records, self.load, self.seed, self.epoch = records, load, seed, epoch
        self._pad: np.ndarray | None = None

    def __call__(self, index: int) -> tuple[np.ndarray, np.int32]:
        index = int(index)
        if index >= len(self.records):  # a padding row: record 0's shape, zeros, PAD_LABEL
            if self._pad is None:  # record 0 loaded once per epoch's map, not per row
                self._pad = np.zeros_like(self(0)[0])
            return self._pad, np.int32(PAD_LABEL)
        record = self.records[index]
        where = f"StreamSource: record {index} ({_shown(record)})"
        try:
            image, label = self.load(record, record_rng(self.seed, self.epoch, index))
        except Exception as error:  # named here: a worker's traceback alone does not say which
            raise LoadError(f"{where}: load raised {type(error).__name__}: {error}") from error
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3:
            raise LoadError(
                f"{where}: load returned an image of dtype {image.dtype} and shape "
                f"{image.shape}; expected uint8 (H, W, C) (decode to uint8 on the host and "
                "normalise on the device with normalize_on_device)"
            )
        if not isinstance(label, (int, np.integer)) or isinstance(label, bool):
            raise LoadError(f"{where}: load returned label {label!r}; expected an int class index")
        return image, np.int32(label)


def _absl_flags_parsed() -> None:
    """Grain's worker processes read absl flags (their defaults unless a program parsed them):
    outside an absl app the flags are unparsed and Grain raises ``UnparsedFlagAccessError``."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class StreamSource:
    """``(images, labels)`` batches of records loaded by Grain worker processes.

    Iterating yields the batches of the current epoch from the current position and then
    moves to the next epoch, so ``for epoch in range(E): for batch in source: ...`` runs E
    different epochs. One iteration at a time.

    Args:
        records: a random-access sequence (``len`` and integer indexing), e.g. a list of
            ``(path, label)`` pairs; handed to the workers by pickling.
        load: ``load(record, rng) -> (image, label)``: a uint8 ``(H, W, C)`` image (the same
            shape for every record) and an int class; ``rng`` is :func:`record_rng` of
            ``(seed, epoch, record index)``. Runs in the worker processes, so it must pickle
            (a module-level function or a ``functools.partial`` of one).
        batch_size: the GLOBAL batch; each shard yields ``batch_size // shard_count`` rows.
        seed: fixes every epoch's order and every record's randomness.
        shuffle: a new order each epoch (False: the records' order, e.g. for validation).
        drop_remainder: drop the last partial batch of an epoch (default True, so every batch
            has the same shape and a jitted step compiles once). False keeps it: with one
            shard as a smaller batch; with several (an unshuffled source, for evaluation)
            padded to a full batch with rows of label ``PAD_LABEL`` (-1, zero images), so that
            every process runs the same steps; :func:`jcnn.evaluate` and ``fit``'s
            validation leave them out.
        workers: worker processes (Grain's ``mp_prefetch``); 0 loads in this process.
        buffer: batches each process (a worker, or this one with ``workers=0``) holds ready
            ahead of the reader, at least ``threads``: what a pipeline reads ahead is bounded
            by ``max(workers, 1) * buffer`` batches (Grain's own default is 500 per process).
        threads: threads per process that each load whole batches (Pillow's decode and resize
            run beside the GIL); default :func:`default_threads`.
        shard_index, shard_count: this process's shard (default ``jax.process_index()`` of
            ``jax.process_count()``).

    Shapes:
        images: (batch_size // shard_count, H, W, C) uint8; labels: (batch_size // shard_count,)
        int32.

    Raises:
        ValueError: no records, a batch size that is not positive, not a multiple of
            ``shard_count`` or larger than the data, a shard outside ``0..shard_count-1``.
        LoadError: (while iterating) a record's ``load`` raised or returned a bad image or
            label; the error names the record, also from a worker process.

    Example:
        >>> def load(record, rng):
        ...     return record + rng.integers(0, 2, record.shape, np.uint8), 0
        >>> records = [np.zeros((2, 2, 3), np.uint8)] * 8
        >>> source = StreamSource(records, load, batch_size=4, shard_index=0, shard_count=1)
        >>> images, labels = next(iter(source))  # (4, 2, 2, 3) uint8, (4,) int32
        >>> images.dtype, labels.dtype, source.state()["index"]
        (dtype('uint8'), dtype('int32'), 1)
    """

    def __init__(
        self,
        records: Sequence[Any],
        load: LoadFn,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_remainder: bool = True,
        workers: int = 0,
        buffer: int = 4,
        threads: int | None = None,
        shard_index: int | None = None,
        shard_count: int | None = None,
    ) -> None:
        if shard_index is None or shard_count is None:
            import jax  # only for the defaults: workers that unpickle a source need no jax

            shard_index = jax.process_index() if shard_index is None else shard_index
            shard_count = jax.process_count() if shard_count is None else shard_count
        self.records, self.load = records, load
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        self.drop_remainder, self.workers = bool(drop_remainder), int(workers)
        self.threads = default_threads(self.workers) if threads is None else int(threads)
        self.buffer = max(int(buffer), self.threads)
        self.shard_index, self.shard_count = int(shard_index), int(shard_count)
        self._check()
        self.examples = len(records)
        self.local_batch_size = self.batch_size // self.shard_count
        full, rest = divmod(self.examples, self.batch_size)
        self.batches = full + (1 if rest and not self.drop_remainder else 0)
        self.epoch, self.index = 0, 0
        self._live: list[Any] | None = None  # [Grain iterator, the position it stands at]

    def _check(self) -> None:
        n, b, k = len(self.records), self.batch_size, self.shard_count
        if n == 0:
            raise ValueError("StreamSource: no records: give at least one")
        if b < 1 or (self.drop_remainder and b > n):
            raise ValueError(
                f"StreamSource: batch_size={b} with {n} records: give a batch size in 1..{n}"
            )
        if k < 1 or not 0 <= self.shard_index < k:
            raise ValueError(
                f"StreamSource: shard_index={self.shard_index} of shard_count={k}: the index "
                "counts shards from 0 (default jax.process_index() of jax.process_count())"
            )
        if b % k:
            raise ValueError(
                f"StreamSource: batch_size={b} (the global batch) does not split over {k} "
                f"shards: give a multiple of {k}"
            )
        if k > 1 and not self.drop_remainder and self.shuffle:
            raise ValueError(
                f"StreamSource: drop_remainder=False and shuffle=True with {k} shards: the last "
                f"partial batch would be padded with label {PAD_LABEL} rows (as for evaluation); "
                "a shuffled (training) source must drop it: keep drop_remainder=True"
            )
        if self.workers < 0 or self.buffer < 1 or self.threads < 1:
            raise ValueError(
                f"StreamSource: workers={self.workers}, buffer={self.buffer}, "
                f"threads={self.threads}: give workers >= 0 (0: in-process), buffer >= 1 and "
                "threads >= 1"
            )

    def __len__(self) -> int:
        """Batches per epoch (the same for every shard)."""
        return self.batches

    def example_shape(self) -> tuple[int, ...]:
        """The shape of one image, ``(H, W, C)`` (record 0 loaded here, in this process)."""
        image, _ = _Load(self.records, self.load, self.seed, 0)(0)
        return tuple(image.shape)

    def dataset(self, epoch: int) -> grain.MapDataset:
        """Epoch ``epoch``'s batches of this shard as a Grain ``MapDataset`` (random access)."""
        ds = grain.MapDataset.range(self.examples)
        if self.shuffle:
            ds = ds.shuffle(seed=order_seed(self.seed, epoch))
        if self.drop_remainder:
            ds = ds[: self.batches * self.batch_size]
        elif self.shard_count > 1:  # every shard yields the same batches: pad the last one
            pad = grain.MapDataset.range(self.examples, self.batches * self.batch_size)
            ds = grain.MapDataset.concatenate([ds, pad])
        ds = ds.map(_Load(self.records, self.load, self.seed, epoch))
        ds = ds.batch(self.local_batch_size, drop_remainder=self.drop_remainder)
        return ds[self.shard_index :: self.shard_count] if self.shard_count > 1 else ds

    def __iter__(self) -> Iterator[Batch]:
        """The rest of the current epoch's batches; then the position moves to the next epoch.

        The worker processes live on across epochs: one Grain pipeline runs over the next
        :data:`EPOCHS_AHEAD` epochs from the current position, and a later iteration that
        starts where the last one stopped reads on from it (a restore or ``set_epoch`` to
        another position starts a new one)."""
        epoch, start = self.epoch, self.index
        live = self._live
        if live is None or live[1] != (epoch, start):
            self.close()
            live = self._live = [self._pipeline(epoch, start), (epoch, start)]
        it = live[0]
        while self.index < self.batches:
            images, labels = next(it)
            self.index += 1  # before the yield: state() counts the batch as handed over
            live[1] = self._after(epoch, self.index)
            # plain arrays (a copy): Grain's shared-memory arrays outliving the iterator
            # would be released only at exit, with warnings
            yield np.array(images), np.array(labels)
        if (self.epoch, self.index) == (epoch, self.batches):
            self.epoch, self.index = epoch + 1, 0

    def _after(self, epoch: int, index: int) -> tuple[int, int]:
        """The position after batch ``index - 1`` of ``epoch`` (the next epoch's start at its
        end): where the live pipeline stands."""
        return (epoch + 1, 0) if index >= self.batches else (epoch, index)

    def _pipeline(self, epoch: int, start: int) -> Iterator[Any]:
        """Grain's iterator over epochs ``epoch .. epoch + EPOCHS_AHEAD - 1`` from batch
        ``start``, in the worker processes."""
        epochs = [self.dataset(e) for e in range(epoch, epoch + EPOCHS_AHEAD)]
        read = grain.ReadOptions(num_threads=self.threads, prefetch_buffer_size=self.buffer)
        ds = grain.MapDataset.concatenate(epochs)[start:].to_iter_dataset(read)
        if self.workers:
            _absl_flags_parsed()
            options = grain.MultiprocessingOptions(
                num_workers=self.workers, per_worker_buffer_size=self.buffer
            )
            ds = ds.mp_prefetch(options)
        return iter(ds)

    def close(self) -> None:
        """Stops the worker processes of the live pipeline (a later iteration starts anew)."""
        live, self._live = getattr(self, "_live", None), None
        close = getattr(live[0], "close", None) if live is not None else None
        if close is not None:
            close()

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # a source pickles without its live pipeline
        return {**self.__dict__, "_live": None}

    def set_epoch(self, epoch: int) -> None:
        """Moves to the start of ``epoch`` (counted from 0)."""
        self.epoch, self.index = int(epoch), 0

    def state(self) -> dict[str, Any]:
        """The position (JSON-able): the next batch is batch ``index`` of ``epoch``; plus what
        the order depends on, checked by :meth:`restore`."""
        epoch, index = self.epoch, self.index
        if index >= self.batches:
            epoch, index = epoch + 1, 0
        return {
            "epoch": epoch,
            "index": index,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "examples": self.examples,
            "shuffle": self.shuffle,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continues from a position :meth:`state` returned (any number of workers or shards:
        the next batches are exactly those the saved source would have yielded).

        Raises:
            ValueError: the state is of a source with another seed, batch size, number of
                records or shuffling, or its batch index is outside the epoch.
        """
        differ = {
            k: (state.get(k), getattr(self, k)) for k in _SAME if state.get(k) != getattr(self, k)
        }
        if differ:
            shown = ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in differ.items())
            raise ValueError(
                f"StreamSource.restore: the state is of another stream: {shown}; restore it "
                "into a source made with the same records, batch_size, seed and shuffle"
            )
        epoch, index = int(state["epoch"]), int(state["index"])
        if not 0 <= index < self.batches or epoch < 0:
            raise ValueError(
                f"StreamSource.restore: batch {index} of epoch {epoch} is outside the "
                f"{self.batches} batches of an epoch"
            )
        self.epoch, self.index = epoch, index

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the stream (for a checkpoint of a run on it): its size, batch, seed
        and a hash of the ``repr`` of 16 records spread over it."""
        rows = np.unique(np.linspace(0, self.examples - 1, min(_SAMPLE, self.examples)))
        digest = hashlib.sha256()
        for i in rows.astype(np.int64):
            digest.update(repr(self.records[int(i)]).encode())
        return {
            "stream": type(self).__name__,
            "examples": self.examples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "records_sha256": digest.hexdigest()[:16],
        }


def global_batch(local_batch: Any, mesh: Any, axis_name: str = "batch") -> Any:
    """The global batch on ``mesh`` from each process's local batch (rows split over
    ``axis_name``), by ``jax.make_array_from_process_local_data``.

    Process ``p`` of ``P`` passes the batch its :class:`StreamSource` yields (shard ``p`` of
    ``P``: rows ``[p*B/P, (p+1)*B/P)`` of the global batch); every process gets the same
    global ``(B, ...)`` arrays. :func:`jcnn.fit` with ``mesh=`` does this itself.

    Shapes:
        each leaf ``(B / P, ...)`` -> ``(B, ...)`` split over the mesh axis.

    Example:
        >>> mesh = jax.make_mesh((1,), ("batch",))
        >>> global_batch((np.zeros((4, 2, 2, 3), np.uint8), np.zeros(4, np.int32)), mesh)[0].shape
        (4, 2, 2, 3)
    """
    from jcnn.training.placement import shard_batch

    return shard_batch(local_batch, mesh, axis_name=axis_name)


def normalize_on_device(
    mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0, *, scale: float = 255.0
) -> Layer:
    """A layer ``y = (x / scale - mean) / std`` in float32, per channel: uint8 images from a
    :class:`StreamSource` made the network's inputs on the device.

    Make it the net's first layer (``L.serial(normalize_on_device(...), net)``), so training,
    validation and :func:`jcnn.predict` all normalise alike (a ``transform=`` of :func:`jcnn.fit`
    runs only in training). ImageNet's statistics are ``mean=(0.485, 0.456, 0.406)``,
    ``std=(0.229, 0.224, 0.225)``.

    Shapes:
        x: ``(*spatial, C)`` any dtype -> ``(*spatial, C)`` float32.

    Example:
        >>> norm = normalize_on_device((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        >>> norm.apply({}, {}, np.full((1, 1, 3), 255, np.uint8))[0].tolist()
        [[[1.0, 1.0, 1.0]]]
    """
    mean_t = tuple(float(v) for v in np.asarray(mean, np.float32).reshape(-1))
    std_t = tuple(float(v) for v in np.asarray(std, np.float32).reshape(-1))
    if min(std_t) <= 0 or scale <= 0:
        raise ValueError(f"normalize_on_device: std {std} and scale {scale} must be positive")
    hparams = {"mean": mean_t, "std": std_t, "scale": float(scale)}
    return leaf(_normalize_rule, "Normalize", hparams, pointwise=True)


def _normalize_rule(layer: Layer) -> Fns:
    """The functions of :func:`normalize_on_device` (a value: equal settings, equal layers)."""
    hp = layer.hparams
    mean, std, scale = (
        np.asarray(hp["mean"], np.float32),
        np.asarray(hp["std"], np.float32),
        hp["scale"],
    )

    def output_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c = input_shape[-1] if input_shape else None
        for name, a in (("mean", mean), ("std", std)):
            if a.size != 1 and a.size != c:
                raise ValueError(
                    f"normalize_on_device: {name} has {a.size} values for an input of shape "
                    f"{tuple(input_shape)} ({c} channels, last): give one value or one per channel"
                )
        return tuple(input_shape)

    def forward(x: Any) -> Any:
        import jax.numpy as jnp

        x = jnp.asarray(x).astype(jnp.float32)
        per_channel = (1,) * (x.ndim - 1) + (-1,)  # explicit: rank promotion may be "raise"
        m, s = jnp.reshape(mean, per_channel), jnp.reshape(std, per_channel)
        return (x / scale - m) / s

    return parameter_free(output_shape, forward)
