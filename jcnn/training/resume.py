"""What a run saves to resume exactly, and how it picks up: state, position, history, data.

A checkpoint's meta holds the epoch and the step index within it, the history so far, the
partial sums of a cut epoch, the position of a streamed training source (its ``state()``, which
a resumed run restores so it continues the same sample order), and a fingerprint of the
training data (:func:`fingerprint`, or the source's own ``fingerprint()``), so
``fit`` pointed at the checkpoint dir of a run on other data says so instead of silently
returning that run's state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jcnn.training.checkpoint import Checkpointer
from jcnn.training.state import TrainState

#: Examples hashed by :func:`fingerprint` (spread evenly over the set).
SAMPLE = 16


def fingerprint(x: Any, y: Any) -> dict[str, Any]:
    """Sizes, dtypes and a hash of a sample of ``(x, y)``: cheap for any size (16 rows read).

    Example:
        >>> a = fingerprint(np.zeros((10, 2), np.float32), np.arange(10))
        >>> a["examples"], a["x"]
        (10, [[2], 'float32'])
        >>> a == fingerprint(np.ones((10, 2), np.float32), np.arange(10))
        False
    """
    n = len(x)
    rows = np.unique(np.linspace(0, n - 1, min(SAMPLE, n)).astype(np.int64))
    digest = hashlib.sha256()
    for a in (x, y):
        digest.update(np.ascontiguousarray(np.asarray(a[rows])).tobytes())
    return {
        "examples": n,
        "x": [list(x.shape[1:]), str(x.dtype)],
        "y": [list(y.shape[1:]), str(y.dtype)],
        "sample_sha256": digest.hexdigest()[:16],
    }


def source_fingerprint(source: Any) -> dict[str, Any]:
    """What identifies a data source in a checkpoint: its ``fingerprint()``, else its type and
    length."""
    if hasattr(source, "fingerprint"):
        return dict(source.fingerprint())
    return {"source": type(source).__name__, "batches": len(source)}


def _note(step: int, epoch: int, index: int, epochs: int, steps_per_epoch: int, where: Path) -> str:
    """The line ``fit`` prints when it resumes from a checkpoint."""
    resumed = f"resumed from step {step}"
    if index:
        return (
            f"fit: {resumed} (epoch {epoch + 1} of {epochs}, after step {index} of its "
            f"{steps_per_epoch}) in {where}"
        )
    if epoch >= epochs:
        done = f"epoch {epoch} of {epochs} done" if epoch == epochs else f"{epoch} epochs done"
        return (
            f"fit: {resumed} ({done}, epochs={epochs}): nothing left to train; returning the "
            f"checkpoint's state and history ({where})"
        )
    return f"fit: {resumed} (epoch {epoch} of {epochs} done; continuing with epoch {epoch + 1}) in {where}"


@dataclass
class Resume:
    """Where a run starts: the state, the epoch and step index, the history, the cut epoch's
    partial sums (``{"sums", "steps", "seconds"}``), and what was said about it."""

    train_state: TrainState
    epoch: int = 0
    index: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    partial: dict[str, Any] = field(default_factory=dict)
    resumed_from: int | None = None
    note: str = ""
    source: dict[str, Any] | None = None

    @classmethod
    def load(
        cls,
        ckpt: Checkpointer | None,
        ts: TrainState,
        *,
        data: dict[str, Any],
        epochs: int,
        steps_per_epoch: int,
    ) -> Resume:
        """The start of a run: afresh, or from the latest checkpoint in ``ckpt``.

        Raises:
            ValueError: the checkpoint was written by a run on other data (its fingerprint
                differs from ``data``).
        """
        latest = None if ckpt is None else ckpt.latest_step()
        if ckpt is None or latest is None:
            return cls(ts)
        step = int(latest)
        ts, meta = ckpt.restore(ts)
        saved = meta.get("data")
        if saved is not None and saved != data:
            raise ValueError(
                f"fit: checkpoint_dir {ckpt.directory} holds a run on other training data (saved "
                f"{saved}, now {data}); resuming would continue that run. Give this run its own "
                "checkpoint_dir, or remove the folder to start afresh"
            )
        epoch, index = int(meta["epoch"]), int(meta["index"])
        history = {k: list(v) for k, v in meta.get("history", {}).items()}
        partial = meta.get("partial", {}) if index else {}
        note = _note(step, epoch, index, epochs, steps_per_epoch, ckpt.directory)
        return cls(ts, epoch, index, history, partial, step, note, meta.get("source"))


def save(
    ckpt: Checkpointer,
    ts: TrainState,
    *,
    epoch: int,
    index: int,
    history: dict[str, list[float]],
    data: dict[str, Any],
    partial: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
) -> None:
    """A checkpoint at step ``ts.step``: after ``index`` steps of ``epoch`` (0: its start);
    ``source``: the streamed training source's position there (its ``state()``)."""
    meta: dict[str, Any] = {"epoch": epoch, "index": index, "history": history, "data": data}
    if partial:
        meta["partial"] = partial
    if source is not None:
        meta["source"] = source
    ckpt.save(int(ts.step), ts, meta=meta)
