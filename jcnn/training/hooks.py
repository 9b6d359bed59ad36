"""The hooks of :func:`jcnn.fit`'s callbacks: :class:`Callback` and what its hooks receive.

``fit`` calls every callback's hooks in this order::

    on_train_begin(RunInfo)                once, before the first epoch (also on a resumed run)
    on_chunk_end(chunk)                    after each compiled chunk of steps
    extend_record(EpochEnd)                after each epoch, for every callback first: extra entries
                                           merged into the epoch's record before it enters the
                                           history
    on_epoch_end(EpochEnd)                 then, for every callback; True stops after this epoch
    on_train_end(history)                  once, also when training raised or was preempted

Every hook of :class:`Callback` does nothing, so a callback defines only the ones it needs.

Epochs: :attr:`EpochEnd.epoch` counts from 0 (like ``range(epochs)``); everything a callback
writes or reports (log rows, ``best_epoch``, ``stopped_epoch``, checkpoint meta) counts from 1,
as ``history["epoch"]`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Callback", "EpochEnd", "RunInfo"]


class RunInfo(NamedTuple):
    """What a run is, given once to :meth:`Callback.on_train_begin`.

    Attributes:
        epochs: the total number of epochs asked for.
        steps_per_epoch: optimiser steps per epoch.
        batch_size: examples per step.
        start_epoch: 0 for a fresh run; for a resumed run the epoch (from 0) it continues with,
            i.e. the number of epochs completed before.
        history: the history so far, lists per key (``"epoch"``, ``"train_loss"``,
            ``"val_accuracy"``, ``"lr"``, ``"seconds"``...); non-empty when resumed.
        checkpoint_dir: the run's checkpoint folder, or None.

    Example:
        >>> info = RunInfo(epochs=10, steps_per_epoch=100, batch_size=32, start_epoch=0,
        ...                history={}, checkpoint_dir=None)
        >>> info.epochs * info.steps_per_epoch
        1000
    """

    epochs: int
    steps_per_epoch: int
    batch_size: int
    start_epoch: int
    history: dict[str, list[float]]
    checkpoint_dir: str | None


class EpochEnd(NamedTuple):
    """What :meth:`Callback.extend_record` and :meth:`Callback.on_epoch_end` receive.

    Attributes:
        epoch: the epoch just finished, counted from 0.
        record: this epoch's entries: ``train_<metric>``, ``val_<metric>``,
            ``ema_val_<metric>`` (with EMA), ``lr``, ``seconds``; in ``on_epoch_end`` also what
            every ``extend_record`` added.
        history: the whole history, this epoch included (``extend_record`` sees it without
            this epoch's entries).
        train_state: the :class:`jcnn.train.TrainState` after the epoch. Read it, do not keep
            it: its buffers may be donated to the next epoch; copy what you keep
            (``jax.device_get``).

    Example:
        >>> end = EpochEnd(epoch=0, record={"train_loss": 0.5}, history={"epoch": [1],
        ...                "train_loss": [0.5]}, train_state=None)
        >>> end.epoch + 1 == end.history["epoch"][-1]
        True
    """

    epoch: int
    record: dict[str, float]
    history: dict[str, list[float]]
    train_state: Any


class Callback:
    """Base class of fit's callbacks; every hook is optional and does nothing here.

    Subclass it and define the hooks you need. The order in which ``fit`` calls them is in the
    module docstring; see :class:`RunInfo` and :class:`EpochEnd` for what they receive.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, end):
        ...         print(f"epoch {end.epoch + 1}: {end.record['train_loss']:.2f}")
        ...         return end.record["train_loss"] < 0.1   # True stops the run
        >>> PrintLoss().on_epoch_end(EpochEnd(0, {"train_loss": 0.25}, {}, None))
        epoch 1: 0.25
        False
    """

    def on_train_begin(self, info: RunInfo) -> None:
        """Called once before the first epoch, with what the run is (and its history so far)."""

    def extend_record(self, end: EpochEnd) -> Mapping[str, float] | None:
        """Extra entries for this epoch's record (None: none).

        Called for every callback before the record enters the history and before any
        ``on_epoch_end``; so the entries are in the history, the checkpoint and every logger.
        """
        return None

    def on_chunk_end(self, chunk: Any) -> None:
        """Called after each compiled chunk of steps.

        ``chunk`` has ``.epoch``, ``.start`` (the first step's index in the epoch),
        ``.num_steps``, ``.step`` (the optimiser step after the chunk), ``.metrics`` (name ->
        ``(num_steps,)`` array of per-step values) and ``.train_state``.
        """

    def on_epoch_end(self, end: EpochEnd) -> bool | None:
        """Called after each epoch (record complete, in the history); True stops the run."""
        return None

    def on_train_end(self, history: dict[str, list[float]]) -> None:
        """Called once at the end, also when training raised or was preempted: close files."""
