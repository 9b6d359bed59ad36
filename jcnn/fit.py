"""``fit``: epochs of training with evaluation, history, a progress bar and resumable checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jcnn.checkpoint import Checkpointer
from jcnn.layers.core import Layer
from jcnn.losses import softmax_cross_entropy
from jcnn.train import (
    TrainState,
    create_train_state,
    data_rng,
    default_metrics,
    epoch_permutation,
    freeze,
    host_batches,
    make_epoch,
    make_eval_step,
    make_train_step,
)

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass
class FitResult:
    """What :func:`fit` returns: the final train state and per-epoch history."""

    train_state: TrainState
    history: dict[str, list[float]] = field(default_factory=dict)


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


def fit(
    layer: Layer,
    train: Arrays,
    *,
    val: Arrays | None = None,
    optimizer: optax.GradientTransformation | None = None,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] = softmax_cross_entropy,
    metrics_fn: Callable[..., dict] = default_metrics,
    epochs: int = 10,
    batch_size: int = 128,
    seed: int = 0,
    on_device: bool = True,
    frozen: Sequence[str] = (),
    train_state: TrainState | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    transform: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    eval_batch_size: int = 1000,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
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
        on_epoch_end: called with ``(epoch, metrics)`` after each epoch.

    Returns:
        :class:`FitResult` with the final state and ``history`` (lists per epoch: ``epoch``,
        ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``).
    """
    x_train, y_train = train
    n = len(x_train)
    steps_per_epoch = n // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"fit: {n} training examples are fewer than batch_size={batch_size}")
    optimizer = optimizer or optax.adam(1e-3)
    if train_state is not None:  # copied: the compiled steps donate (delete) their input state
        ts = jax.tree_util.tree_map(jnp.copy, train_state)
    else:
        ts = create_train_state(layer, x_train.shape[1:], optimizer, seed=seed)
    if frozen:
        optimizer = freeze(optimizer, ts.params, frozen)
        ts = ts._replace(opt_state=optimizer.init(ts.params))
    shuffle_rng = data_rng(seed)

    ckpt = Checkpointer(checkpoint_dir, keep=keep_checkpoints) if checkpoint_dir else None
    every = checkpoint_every or steps_per_epoch
    start_epoch, start_index = 0, 0
    history: dict[str, list[float]] = {}
    if ckpt is not None and ckpt.latest_step() is not None:
        ts, meta = ckpt.restore(ts)
        start_epoch, start_index = int(meta["epoch"]), int(meta["index"])

    eval_step = make_eval_step(layer.apply, loss_fn, metrics_fn=metrics_fn)
    if on_device:
        run_epoch = make_epoch(
            layer.apply, loss_fn, optimizer, batch_size, metrics_fn=metrics_fn, transform=transform
        )
        images, labels = jax.device_put(x_train), jax.device_put(y_train)
    else:
        if transform is not None:
            raise ValueError("fit: transform is supported by the on-device loop only")
        step_fn = make_train_step(layer.apply, loss_fn, optimizer, metrics_fn=metrics_fn)

    total = (epochs - start_epoch) * steps_per_epoch - start_index
    bar = tqdm(total=max(total, 0), disable=not progress, unit="step", dynamic_ncols=True)
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        index = start_index if epoch == start_epoch else 0
        counted = 0
        if not on_device:
            perm = np.asarray(epoch_permutation(shuffle_rng, epoch, n))
            batches = host_batches(x_train, y_train, batch_size, perm, start=index)
        while index < steps_per_epoch:
            chunk = min(every - index % every, steps_per_epoch - index)
            if on_device:
                ts, metrics = run_epoch(
                    ts, images, labels, epoch, data_rng=shuffle_rng, start=index, num_steps=chunk
                )
                chunk_sums = {k: float(jnp.sum(v)) for k, v in metrics.items()}
            else:
                chunk_sums = {}
                for _ in range(chunk):
                    ts, metrics = step_fn(ts, next(batches))
                    for k, v in metrics.items():
                        chunk_sums[k] = chunk_sums.get(k, 0.0) + float(v)
            for k, v in chunk_sums.items():
                sums[k] = sums.get(k, 0.0) + v
            index += chunk
            counted += chunk
            bar.update(chunk)
            bar.set_postfix(epoch=epoch + 1, **{k: f"{v / counted:.4f}" for k, v in sums.items()})
            if ckpt is not None:
                done = index == steps_per_epoch
                meta = {"epoch": epoch + 1 if done else epoch, "index": 0 if done else index}
                ckpt.save(int(ts.step), ts, meta=meta)
        record = {f"train_{k}": v / max(counted, 1) for k, v in sums.items()}
        if val is not None:
            record.update(
                {f"val_{k}": v for k, v in evaluate(eval_step, ts, val, eval_batch_size).items()}
            )
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
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return FitResult(train_state=ts, history=history)
