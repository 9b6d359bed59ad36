"""The loops that run a train step over a data set: on the host, or on the device.

Both run the SAME :class:`jcnn.training.step.TrainStep` (so augmentation, micro-batches, DP-SGD,
EMA and the mesh work in both), in the order ``epoch_permutation(data_rng, epoch, n)`` (step
``i`` of an epoch trains on ``perm[i*B:(i+1)*B]``), and are cut into chunks of steps that
:func:`jcnn.fit` schedules (:class:`ChunkSchedule`): a chunk is the unit of progress, metrics,
checkpoints and preemption.

* :class:`HostLoop`: host batches gathered (and placed) by a prefetch thread, one compiled
  step per batch.
* :class:`SourceLoop`: the batches of a data source (:class:`jcnn.training.checks.DataSource`,
  e.g. a streamed :class:`jcnn.data.stream.StreamSource`) in the source's own order, placed by
  a prefetch thread; it keeps the source's position after the last batch a step consumed.
* :class:`DeviceLoop`: the data set placed on the device(s) once (a full copy per device of a
  mesh); each step gathers its batch there. A chunk is one ``lax.fori_loop`` over a run-time
  number of steps (one compiled program for every chunk length; :func:`device_loop_mode`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jcnn.training.batches import batches, prefetched
from jcnn.training.keys import epoch_permutation
from jcnn.training.state import TrainState
from jcnn.training.step import TrainStep

Arrays = tuple[Any, Any]
#: ``run(ts, start, num_steps) -> (ts, metrics stacked per step)``: consecutive chunks of one epoch.
ChunkRunner = Callable[[TrainState, int, int], tuple[TrainState, dict]]

#: A chunk of the loops aims at this many seconds (a signal is honoured between chunks).
CHUNK_SECONDS = 2.0


class Chunk(NamedTuple):
    """What callbacks' ``on_chunk_end`` get after each chunk of training steps.

    Attributes:
        epoch: the epoch, counted from 0.
        start: index of the chunk's first step within the epoch.
        num_steps: steps in the chunk.
        step: optimiser steps taken so far (the train state's ``step``).
        metrics: ``{name: (num_steps,) array}``, the metrics of every step of the chunk.
        train_state: the state after the chunk. The next chunk donates (deletes) it: copy what
            you keep (``jax.tree.map(jnp.copy, ...)``).
    """

    epoch: int
    start: int
    num_steps: int
    step: int
    metrics: dict[str, Any]
    train_state: TrainState


class ChunkSchedule:
    """Chunk lengths: up to the next period boundary (checkpoints, ``log_every``), the epoch's
    end, and a budget of steps that keeps a chunk near ``seconds`` of work (measured: it starts
    at one step and follows the observed time per step).

    Example:
        >>> schedule = ChunkSchedule(10, periods=(4,), seconds=None)
        >>> [schedule.next(i) for i in (0, 4, 8)]
        [4, 4, 2]
    """

    def __init__(
        self, steps_per_epoch: int, periods: tuple[int, ...] = (), seconds: float | None = None
    ) -> None:
        self.steps_per_epoch, self.periods, self.seconds = steps_per_epoch, periods, seconds
        self.budget = 1 if seconds is not None else steps_per_epoch

    def next(self, index: int) -> int:
        """The length of the chunk that starts at step ``index`` of the epoch."""
        bounds = [self.steps_per_epoch - index, self.budget]
        return min(bounds + [p - index % p for p in self.periods])

    def observe(self, num_steps: int, seconds: float) -> None:
        """Adapts the budget to a chunk of ``num_steps`` steps that took ``seconds``."""
        if self.seconds is None:
            return
        per_step = seconds / max(num_steps, 1)
        fit = int(self.seconds / per_step) if per_step > 0 else self.steps_per_epoch
        self.budget = max(1, min(fit, 2 * max(self.budget, num_steps), self.steps_per_epoch))


def _stack(per_step: list[dict]) -> dict:
    return jax.tree.map(lambda *v: jnp.stack(v), *per_step)


class HostLoop:
    """One compiled step per host batch, batches gathered and placed by a prefetch thread.

    On many processes each loads only its rows of every global batch (the placement's
    ``batch_rows``).
    """

    def __init__(
        self, step: TrainStep, data: Arrays, batch_size: int, data_rng: jax.Array, prefetch: int
    ) -> None:
        self.step, self.data, self.batch_size = step, data, batch_size
        self.data_rng, self.prefetch = data_rng, prefetch
        self.rows = step.placement.batch_rows(batch_size)

    def epoch(self, epoch: int, index: int) -> ChunkRunner:
        """The chunk runner of ``epoch``, starting at its step ``index``."""
        x, y = self.data
        steps = len(x) // self.batch_size
        perm = np.asarray(epoch_permutation(self.data_rng, epoch, len(x)))
        order = perm[: steps * self.batch_size].reshape(steps, self.batch_size)[:, self.rows]
        local = order.shape[1]
        put = self.step.placement.place_batch
        it: Iterator[Any] = batches(
            x, y, local, order=order.reshape(-1), start=index, put=put, prefetch=self.prefetch
        )

        def run(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict]:
            del start  # the iterator started at the epoch's first step and follows the chunks
            per_step = []
            for _ in range(num_steps):
                ts, metrics = self.step(ts, next(it))
                per_step.append(metrics)
            return ts, _stack(per_step)

        return run


class SourceLoop:
    """One compiled step per batch of a data source, placed by a prefetch thread.

    The source orders its own batches (:class:`jcnn.training.checks.DataSource`); on many
    processes each yields its rows of every global batch and ``place_batch`` assembles the
    global batch on the mesh. :attr:`position` is the source's ``state()`` after the last batch
    a step consumed (the prefetch thread reads ahead), what a checkpoint saves.
    """

    def __init__(self, step: TrainStep, source: Any, prefetch: int) -> None:
        self.step, self.source, self.prefetch = step, source, prefetch
        self.position: dict[str, Any] = source.state()

    def epoch(self, epoch: int, index: int) -> ChunkRunner:
        """The chunk runner of ``epoch`` from its step ``index`` (where the source must be:
        :func:`jcnn.fit` restores a resumed run's source position first)."""
        at = self.source.state()
        if (at.get("epoch"), at.get("index")) != (epoch, index):
            if index:
                raise ValueError(
                    f"fit: the data source is at batch {at.get('index')} of epoch "
                    f"{at.get('epoch')}, but the run resumes at batch {index} of epoch {epoch}: "
                    "its checkpoint holds no matching source position"
                )
            self.source.set_epoch(epoch)
        self.position = self.source.state()
        put, source = self.step.placement.place_batch, self.source

        def produce() -> Iterator[tuple[dict[str, Any], Any]]:
            for batch in source:
                yield source.state(), put(batch)

        it = prefetched(produce(), self.prefetch)

        def run(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict]:
            del start  # the iterator started at the resume point and follows the chunks
            per_step = []
            for _ in range(num_steps):
                self.position, batch = next(it)
                ts, metrics = self.step(ts, batch)
                per_step.append(metrics)
            return ts, _stack(per_step)

        return run


def device_loop_mode(platform: str) -> str:
    """How the on-device loop runs a chunk on ``platform``: ``"loop"`` everywhere.

    ``"loop"`` is one compiled ``lax.fori_loop`` over the chunk's steps (no host round trip per
    step); ``"dispatch"`` (``DeviceLoop(mode="dispatch")``) one compiled step per batch. Inside
    a loop, XLA:CPU does not rewrite convolutions to the layouts of its fast runtime (its
    ``ConvCanonicalization`` pass reads only the entry computation), so the native conv
    gradients ran in its generic emitter, 10-36x slower per step; jcnn's ``lowering="auto"``
    writes CPU conv gradients that are canonical already (:mod:`jcnn.lowering`), and then the
    loop is as fast as dispatching or faster (``python -m bench.lowering_loops``: ResNet-18 on
    32x32 1.15 vs 1.12 s per step, three ``Conv(16, 3)`` 28.6 vs 34.6 ms, the course CNN at
    batch 1,000 92 vs 125 ms; ``python -m bench.loops`` compares whole epochs).
    """
    del platform
    return "loop"


class DeviceLoop:
    """The data set resident on the device(s); each step gathers its batch there.

    ``mode`` (default :func:`device_loop_mode` of the placement's platform): ``"loop"`` runs a
    chunk as one compiled ``fori_loop`` whose trip count is a run-time value (so every chunk
    length shares one program); ``"dispatch"`` runs one compiled step per batch.
    """

    def __init__(
        self,
        step: TrainStep,
        data: Arrays,
        batch_size: int,
        data_rng: jax.Array,
        *,
        mode: str | None = None,
        placed: bool = False,
    ) -> None:
        placement = step.placement
        self.step, self.batch_size, self.data_rng = step, batch_size, data_rng
        self.mode = device_loop_mode(placement.platform) if mode is None else mode
        if self.mode not in ("loop", "dispatch"):
            raise ValueError(f"DeviceLoop: mode must be 'loop' or 'dispatch', got {mode!r}")
        self.images, self.labels = data if placed else placement.place_dataset(tuple(data))
        self._permutation = jax.jit(epoch_permutation, static_argnums=(2,))

    @property
    def steps(self) -> int:
        """Steps per epoch (the remainder of the data is dropped)."""
        return len(self.images) // self.batch_size

    def _batch(self, xs: Any, ys: Any, perm: jax.Array, i: jax.Array) -> Arrays:
        idx = jax.lax.dynamic_slice_in_dim(perm, i * self.batch_size, self.batch_size)
        return jnp.take(xs, idx, axis=0), jnp.take(ys, idx, axis=0)

    def _jit(self, fn: Callable, ts: TrainState) -> Callable:
        kwargs: dict[str, Any] = {"donate_argnums": self.step.donate_argnums}
        shardings = self.step.placement.state_shardings(ts)
        if shardings is not None:
            mesh = self.step.placement.mesh
            assert mesh is not None  # state shardings exist only on a mesh
            full = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            kwargs["out_shardings"] = (shardings, full)
        return jax.jit(fn, **kwargs)

    def _program(self, mode: str, ts: TrainState) -> Callable:
        """The compiled chunk (``"loop"``) or step (``"dispatch"``) for ``ts``'s structure."""
        leaves, treedef = jax.tree.flatten(ts)
        key = (mode, treedef, tuple(jnp.shape(a) for a in leaves), self.steps, self.batch_size)
        programs = self.step.programs  # shared by every loop of this step: one compile per run
        if key not in programs:
            programs[key] = self._jit(self._looped if mode == "loop" else self._one_step, ts)
        return programs[key]

    def _one_step(self, ts, xs, ys, perm, i):
        return self.step.update(ts, self._batch(xs, ys, perm, i))

    def _looped(self, ts, xs, ys, perm, start, num_steps):
        """``num_steps`` (a run-time value) steps from ``start`` in one ``fori_loop``.

        The step is traced once: into a jaxpr whose output shapes size the per-step metric
        buffers, then evaluated in the loop body.
        """
        closed, shapes = jax.make_jaxpr(self.step.update, return_shape=True)(
            ts, self._batch(xs, ys, perm, start)
        )
        out_tree = jax.tree.structure(shapes)

        def update(ts, batch):
            flat = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves((ts, batch)))
            return jax.tree.unflatten(out_tree, flat)

        buffers = jax.tree.map(lambda m: jnp.zeros((self.steps, *m.shape), m.dtype), shapes[1])

        def body(j, carry):
            ts, buffers = carry
            ts, metrics = update(ts, self._batch(xs, ys, perm, start + j))
            return ts, jax.tree.map(lambda b, m: b.at[j].set(m), buffers, metrics)

        return jax.lax.fori_loop(0, num_steps, body, (ts, buffers))

    def epoch(self, epoch: int, index: int, data_rng: jax.Array | None = None) -> ChunkRunner:
        """The chunk runner of ``epoch`` (any start: the permutation lives on the device)."""
        del index
        rng = self.data_rng if data_rng is None else data_rng
        perm = self._permutation(rng, epoch, len(self.images))
        xs, ys = self.images, self.labels

        def run(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict]:
            if self.mode == "loop":
                program = self._program("loop", ts)
                ts, buffers = program(ts, xs, ys, perm, jnp.int32(start), jnp.int32(num_steps))
                return ts, jax.tree.map(lambda b: b[:num_steps], buffers)
            one_step, per_step = self._program("dispatch", ts), []
            for i in range(start, start + num_steps):
                ts, metrics = one_step(ts, xs, ys, perm, jnp.int32(i))
                per_step.append(metrics)
            return ts, _stack(per_step)

        return run


def timed(run: ChunkRunner) -> Callable[[TrainState, int, int], tuple[TrainState, dict, float]]:
    """``run`` that also returns its wall time (after the chunk's results are ready)."""

    def call(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict, float]:
        t0 = time.perf_counter()
        ts, metrics = run(ts, start, num_steps)
        metrics = jax.device_get(metrics)
        return ts, metrics, time.perf_counter() - t0

    return call
