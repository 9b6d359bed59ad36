"""``fit``: THE training loop of jcnn -- epochs with evaluation, history, a progress bar,
resumable checkpoints, and hooks.

Every loop of jcnn is this one (``jcnn.distributed.fit_sharded`` and the experiments' seed loop
call it). Its hooks, all keyword-only and optional:

* ``steps``: a :data:`jcnn.train.StepFactory`, ``factory(spec) -> Steps``: how the compiled
  step, epoch and eval functions are made and how the train state and the data reach them.
  Default :func:`jcnn.train.default_steps` (one device); :func:`jcnn.distributed.sharded_steps`
  for a mesh; ``functools.cache(default_steps)`` shares the compiled functions between runs.
* ``on_chunk_end(chunk)``: after every chunk of steps (``log_every`` steps, or up to the next
  checkpoint, or the rest of the epoch) with a :class:`Chunk` holding the per-step metrics.
* ``validate(train_state) -> metrics``: how the validation metrics of an epoch are computed
  (default: the eval step over ``val`` in batches), recorded as ``val_<name>``.
* ``on_epoch_end(epoch, record)``: after every epoch; returning True stops the run there.

Example:
    >>> from jcnn.fit import fit
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    >>> losses = []
    >>> result = fit(
    ...     L.serial(L.Dense(2)), (x, y), epochs=2, batch_size=16, progress=False,
    ...     log_every=2,                                         # a chunk = 2 compiled steps
    ...     on_chunk_end=lambda c: losses.extend(c.metrics["loss"].tolist()),
    ...     validate=lambda ts: {"norm": float(jnp.abs(ts.params["Dense_0"]["kernel"]).sum())},
    ...     on_epoch_end=lambda epoch, record: record["train_loss"] < 0.1,  # True: stop early
    ... )
    >>> len(losses), sorted(result.history), int(result.train_state.step)
    (8, ['epoch', 'seconds', 'train_accuracy', 'train_loss', 'val_norm'], 8)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jcnn.checkpoint import Checkpointer
from jcnn.data.batching import batches, data_rng, epoch_permutation
from jcnn.layers.core import Layer
from jcnn.losses import softmax_cross_entropy
from jcnn.train import (
    MetricsFn,
    StepFactory,
    Steps,
    StepSpec,
    TrainState,
    Transform,
    create_train_state,
    default_metrics,
    default_steps,
    freeze,
)

Arrays = tuple[np.ndarray, np.ndarray]
ValidateFn = Callable[[TrainState], Mapping[str, float]]


@dataclass
class FitResult:
    """What :func:`fit` returns: the final train state and per-epoch history."""

    train_state: TrainState
    history: dict[str, list[float]] = field(default_factory=dict)


class Chunk(NamedTuple):
    """What ``on_chunk_end`` gets after each chunk of training steps.

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
    metrics: dict[str, jax.Array]
    train_state: TrainState


def evaluate(
    eval_step: Callable[[TrainState, Any], dict], ts: TrainState, data: Arrays, batch_size: int
) -> dict[str, float]:
    """Metrics of ``data`` (all of it, the last batch may be smaller), weighted by batch size."""
    x, y = data
    totals: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        metrics = eval_step(ts, (x[i : i + batch_size], y[i : i + batch_size]))
        n = len(x[i : i + batch_size])
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v) * n
    return {k: v / len(x) for k, v in totals.items()}


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ValueError(f"fit: {name} must be a positive int or None, got {value!r}")
    return value


#: ``run(ts, start, num_steps) -> (ts, metrics stacked per step)``: steps ``start ..
#: start+num_steps`` of one epoch, called for consecutive chunks.
ChunkRunner = Callable[[TrainState, int, int], tuple[TrainState, dict]]


def _device_epochs(
    fns: Steps, train: Arrays, shuffle: jax.Array
) -> Callable[[int, int], ChunkRunner]:
    """Chunks of the on-device loop: ``fns.run_epoch`` over data placed once."""
    if fns.run_epoch is None:
        raise ValueError("fit: the step factory gives no run_epoch; pass on_device=False")
    run_epoch = fns.run_epoch
    images, labels = fns.place_data(train)

    def epoch_runner(epoch: int, index: int) -> ChunkRunner:
        del index  # run_epoch takes every chunk's start

        def run(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict]:
            return run_epoch(
                ts, images, labels, epoch, data_rng=shuffle, start=start, num_steps=num_steps
            )

        return run

    return epoch_runner


def _host_epochs(
    fns: Steps, train: Arrays, shuffle: jax.Array, batch_size: int, prefetch: int
) -> Callable[[int, int], ChunkRunner]:
    """Chunks of the host loop: ``fns.train_step`` per batch of :func:`jcnn.data.batches`."""
    if fns.train_step is None:
        raise ValueError("fit: the step factory gives no train_step; pass on_device=True")
    train_step = fns.train_step
    x, y = train
    steps = len(x) // batch_size
    local = len(range(batch_size)[fns.batch_rows])  # rows of each batch this process loads

    def epoch_runner(epoch: int, index: int) -> ChunkRunner:
        perm = np.asarray(epoch_permutation(shuffle, epoch, len(x)))
        # Step i trains on perm[i*B:(i+1)*B] (as run_epoch does); this process loads its rows.
        order = perm[: steps * batch_size].reshape(steps, batch_size)[:, fns.batch_rows]
        it: Iterator[Any] = batches(
            x, y, local, order=order.reshape(-1), start=index, put=fns.place_data, prefetch=prefetch
        )

        def run(ts: TrainState, start: int, num_steps: int) -> tuple[TrainState, dict]:
            del start  # the iterator started at the epoch's first step and follows the chunks
            per_step = []
            for _ in range(num_steps):
                ts, metrics = train_step(ts, next(it))
                per_step.append(metrics)
            return ts, jax.tree.map(lambda *v: jnp.stack(v), *per_step)

        return run

    return epoch_runner


def _validate_val(fns: Steps, val: Arrays, batch_size: int) -> ValidateFn:
    """The default validation: ``fns.eval_step`` over ``val`` (see :func:`evaluate`)."""
    eval_step = fns.eval_step
    if eval_step is None:
        raise ValueError("fit: val needs an eval_step; the step factory gives none")
    return lambda ts: evaluate(eval_step, ts, val, batch_size)


def fit(
    layer: Layer,
    train: Arrays,
    *,
    val: Arrays | None = None,
    optimizer: optax.GradientTransformation | None = None,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = softmax_cross_entropy,
    metrics_fn: MetricsFn = default_metrics,
    epochs: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    on_device: bool = True,
    frozen: Sequence[str] = (),
    train_state: TrainState | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    transform: Transform | None = None,
    eval_batch_size: int = 1000,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
    steps: StepFactory = default_steps,
    validate: ValidateFn | None = None,
    on_chunk_end: Callable[[Chunk], None] | None = None,
    log_every: int | None = None,
    prefetch: int = 2,
) -> FitResult:
    """Trains ``layer`` on ``train = (images, labels)`` for ``epochs`` epochs.

    Args:
        layer: the network (per-example ``Layer``).
        train: ``(x, y)`` numpy arrays, ``x: (N, *example_shape)``.
        val: optional ``(x, y)`` evaluated after each epoch with ``train=False``.
        optimizer: any optax optimiser, schedules included (default ``adam(1e-3)``).
        loss_fn, metrics_fn: ``loss_fn(outputs, y)``; extra metrics (default accuracy).
        epochs, batch_size, seed: the run; each epoch drops its last partial batch.
        on_device: ``True`` runs each epoch as one compiled ``lax.scan`` over data resident on
            the device; ``False`` runs one compiled call per step with host batches prefetched.
            Both give the same result for the same seed (same permutations, same step keys).
        frozen: parameter path patterns to keep fixed (see :func:`jcnn.train.freeze`).
        train_state: start from this state instead of initialising (transfer learning).
        checkpoint_dir: where to save; if it holds a checkpoint, training RESUMES from it.
        checkpoint_every: save every N steps (and at the end of every epoch); default: each epoch.
        keep_checkpoints: how many recent checkpoints to keep.
        transform: ``transform(key, x_batch)`` applied to every training batch (augmentation).
        eval_batch_size: batch size of evaluation.
        progress: show a tqdm bar with loss and accuracy.
        on_epoch_end: called with ``(epoch, record)`` after each epoch (``epoch`` from 0,
            ``record`` the epoch's history entries); returning True stops training there.
        steps: the step factory, ``steps(StepSpec) -> Steps`` (module docstring).
        validate: ``validate(train_state) -> {name: value}`` after each epoch, recorded as
            ``val_<name>``; default: the eval step over ``val`` in batches of
            ``eval_batch_size`` (give ``val`` or ``validate``, not both).
        on_chunk_end: called with a :class:`Chunk` after every chunk of steps.
        log_every: steps per chunk (progress-bar update, ``on_chunk_end`` call; one compiled
            call of the on-device loop); chunks also end at checkpoints and epoch ends.
            Default: up to the next checkpoint or the end of the epoch.
        prefetch: host batches prepared ahead by a background thread (host loop).

    Returns:
        :class:`FitResult` with the final state and ``history`` (lists per epoch: ``epoch``,
        ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``).

    Raises:
        ValueError: fewer examples than ``batch_size``, ``transform`` with the host loop,
            both ``val`` and ``validate``, or a factory without the loop asked for.
    """
    x_train, y_train = train
    n = len(x_train)
    if len(y_train) != n:
        raise ValueError(f"fit: {n} training images but {len(y_train)} labels")
    steps_per_epoch = n // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"fit: {n} training examples are fewer than batch_size={batch_size}")
    if transform is not None and not on_device:
        raise ValueError("fit: transform is supported by the on-device loop only")
    if val is not None and validate is not None:
        raise ValueError("fit: give val (evaluated by the eval step) or validate, not both")
    _positive("checkpoint_every", checkpoint_every)
    _positive("log_every", log_every)

    optimizer = optimizer or optax.adam(1e-3)
    if train_state is None:
        ts = create_train_state(layer, x_train.shape[1:], optimizer, seed=seed)
    else:
        ts = train_state
    if frozen:
        optimizer = freeze(optimizer, ts.params, frozen)
        ts = ts._replace(opt_state=optimizer.init(ts.params))
    fns = steps(StepSpec(layer.apply, loss_fn, optimizer, metrics_fn, batch_size, transform))
    ts = fns.place_state(ts)  # the steps donate it: a copy (or a sharded copy) of the caller's
    if val is not None:
        validate = _validate_val(fns, val, eval_batch_size)
    shuffle = data_rng(seed)
    if on_device:
        epoch_runner = _device_epochs(fns, train, shuffle)
    else:
        epoch_runner = _host_epochs(fns, train, shuffle, batch_size, prefetch)

    ckpt = Checkpointer(checkpoint_dir, keep=keep_checkpoints) if checkpoint_dir else None
    start_epoch, start_index = 0, 0
    if ckpt is not None and ckpt.latest_step() is not None:
        ts, meta = ckpt.restore(ts)
        start_epoch, start_index = int(meta["epoch"]), int(meta["index"])
    periods = [p for p in (checkpoint_every, log_every) if p is not None]

    history: dict[str, list[float]] = {}
    total = (epochs - start_epoch) * steps_per_epoch - start_index
    bar = tqdm(total=max(total, 0), disable=not progress, unit="step", dynamic_ncols=True)
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        index = start_index if epoch == start_epoch else 0
        counted = 0
        run = epoch_runner(epoch, index)
        while index < steps_per_epoch:
            chunk = min([steps_per_epoch - index] + [p - index % p for p in periods])
            first = index
            ts, metrics = run(ts, index, chunk)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(jnp.sum(v))
            index += chunk
            counted += chunk
            bar.update(chunk)
            bar.set_postfix(epoch=epoch + 1, **{k: f"{v / counted:.4f}" for k, v in sums.items()})
            done = index == steps_per_epoch
            at_checkpoint = checkpoint_every is not None and index % checkpoint_every == 0
            if ckpt is not None and (done or at_checkpoint):
                meta = {"epoch": epoch + 1 if done else epoch, "index": 0 if done else index}
                ckpt.save(int(ts.step), ts, meta=meta)
            if on_chunk_end is not None:
                on_chunk_end(Chunk(epoch, first, chunk, int(ts.step), metrics, ts))
        record = {f"train_{k}": v / max(counted, 1) for k, v in sums.items()}
        if validate is not None:
            record.update({f"val_{k}": float(v) for k, v in validate(ts).items()})
        record["seconds"] = time.perf_counter() - t0
        history.setdefault("epoch", []).append(epoch + 1)
        for k, v in record.items():
            history.setdefault(k, []).append(v)
        if progress:
            bar.write(
                f"epoch {epoch + 1}/{epochs}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "seconds")
                + f" ({record['seconds']:.1f} s)"
            )
        if on_epoch_end is not None and on_epoch_end(epoch, record):
            break
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return FitResult(train_state=ts, history=history)
