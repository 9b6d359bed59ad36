"""Callbacks of :func:`jcnn.fit` that watch one entry of the epoch's record.

* :class:`KeepBest`: checkpoints the train state whenever the entry improves.
* :class:`EarlyStopping`: stops the run when the entry has stopped improving.

Both are resume-aware: on a run resumed from a checkpoint, ``on_train_begin`` replays the
history so far (:attr:`~jcnn.training.hooks.RunInfo.history`), so a better earlier checkpoint
is not overwritten and the patience counts the epochs before the interruption. An improvement is
strict (NaN never improves); ``mode`` says whether lower (``"min"``) or higher (``"max"``) is
better, and ``"auto"`` picks ``"min"`` for an entry whose name contains ``"loss"``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jcnn.layers.arguments import as_path, int_at_least, real_number
from jcnn.training.hooks import Callback, EpochEnd, RunInfo

__all__ = ["EarlyStopping", "KeepBest"]

_MODES = ("auto", "min", "max")


def _monitor_arg(caller: str, monitor: Any) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(
            f"{caller}: monitor must be the name of a history entry, e.g. 'val_accuracy' or "
            f"'val_loss', got {type(monitor).__name__} {monitor!r:.60}"
        )
    return monitor


def _mode_arg(caller: str, mode: Any, monitor: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` is ``"min"`` when ``monitor`` contains ``"loss"``."""
    if mode not in _MODES:
        raise ValueError(
            f"{caller}: mode must be one of {_MODES}, got {mode!r}; 'max' for metrics that grow "
            "when better (accuracy), 'min' for ones that shrink (loss, error), 'auto' to choose "
            "'min' when the monitor's name contains 'loss'"
        )
    if mode == "auto":
        return "min" if "loss" in monitor else "max"
    return mode


def _monitored(caller: str, monitor: str, record: Mapping[str, Any]) -> float:
    """``float(record[monitor])``; a KeyError listing the record's keys when it is missing."""
    if monitor not in record:
        hint = (
            ", or give val= to fit (val_ entries need validation data)"
            if monitor.startswith(("val_", "ema_val_"))
            else ""
        )
        raise KeyError(
            f"{caller}: the epoch's record has no {monitor!r}; its entries are "
            f"{sorted(record)}; pass one of them as monitor={hint}"
        )
    return float(record[monitor])


def _past_values(history: Mapping[str, list[float]], monitor: str, upto: int) -> list[tuple]:
    """``[(epoch, value), ...]`` of ``history[monitor]`` for the epochs (from 1) <= ``upto``."""
    values = list(history.get(monitor, []))
    epochs = list(history.get("epoch", []))
    if len(epochs) != len(values):  # a metric not recorded every epoch: count its entries
        epochs = list(range(1, len(values) + 1))
    return [(int(e), float(v)) for e, v in zip(epochs, values) if int(e) <= upto]


def _improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (NaN never does)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


# ------------------------------------------------------------------------------------ KeepBest


def _open_checkpointer(directory: Path, keep: int | None) -> Any:
    from jcnn.training.checkpoint import Checkpointer  # orbax loads with it; only when first needed

    return Checkpointer(directory, keep=keep)


class KeepBest(Callback):
    """Checkpoints the train state each time ``monitor`` improves; restores the best one.

    After each epoch, if ``record[monitor]`` is better than every earlier epoch's (strictly;
    NaN never is), the train state is saved with
    ``jcnn.checkpoint.Checkpointer(directory, keep=keep).save(step, train_state,
    meta={"epoch": epoch, monitor: value})`` (``epoch`` from 1). Only improvements are saved,
    so the newest checkpoint is the best; ``keep`` > 1 keeps the runners-up too.

    On a resumed run, ``best`` starts from the history's values of ``monitor`` before
    ``start_epoch``, so a worse epoch does not overwrite a better earlier checkpoint; when it
    saves, it first deletes the checkpoints the interrupted run saved at this step or later
    (epochs this run redoes), since checkpoint steps must increase. A fresh run
    (``start_epoch == 0``) refuses to save into a folder holding checkpoints of this step or
    later, from another run: give each run its own folder.

    Args:
        directory: the folder of the checkpoints (created by the first save); keep it apart
            from fit's own checkpoint folder.
        monitor: the record entry to watch (default ``"val_accuracy"``).
        mode: ``"max"``, ``"min"`` or ``"auto"`` (default): ``"min"`` when ``monitor``
            contains ``"loss"``, else ``"max"``.
        keep: how many of the newest (best) checkpoints to keep, default 1; None keeps all.

    Attributes:
        best: the best value so far (None before the first epoch).
        best_epoch: its epoch, from 1 (None before the first epoch).

    Raises:
        TypeError, ValueError: a bad argument.
        NotADirectoryError: ``directory`` is an existing file.
        KeyError: (at an epoch's end) the record has no ``monitor`` entry.
        ValueError: (at a save of a fresh run) the folder holds checkpoints of later steps.

    Example:
        >>> import tempfile
        >>> from jcnn.train import create_train_state
        >>> ts = create_train_state(L.serial(L.Dense(2)), (3,), optax.sgd(0.1))
        >>> best = KeepBest(tempfile.mkdtemp() + "/best", monitor="val_loss")
        >>> for epoch, loss in enumerate([0.9, 0.5, 0.7]):
        ...     ts = ts._replace(step=ts.step + 10)
        ...     best.on_epoch_end(EpochEnd(epoch, {"val_loss": loss}, {}, ts))
        >>> best.on_train_end({})
        >>> best.best, best.best_epoch, int(best.restore(ts).step)
        (0.5, 2, 20)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        monitor: str = "val_accuracy",
        mode: str = "auto",
        keep: int | None = 1,
    ) -> None:
        self.directory = as_path(directory, "KeepBest: directory").absolute()
        self.monitor = _monitor_arg("KeepBest", monitor)
        self.mode = _mode_arg("KeepBest", mode, monitor)
        hint = "(how many of the best checkpoints to keep) or None to keep all"
        self.keep = None if keep is None else int_at_least(keep, "KeepBest: keep", 1, hint=hint)
        for candidate in (self.directory, *self.directory.parents):
            if candidate.exists():
                if not candidate.is_dir():
                    raise NotADirectoryError(
                        f"KeepBest: directory {self.directory} is (inside) the existing file "
                        f"{candidate}; pass the path of a folder (created at the first save)"
                    )
                break
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._ckpt: Any = None
        self._resumed = False

    def on_train_begin(self, info: RunInfo) -> None:
        """Sets ``best`` from the history before ``info.start_epoch`` (None on a fresh run)."""
        self.best, self.best_epoch = None, None
        self._resumed = info.start_epoch > 0
        for epoch, value in _past_values(info.history, self.monitor, info.start_epoch):
            if _improves(value, self.best, self.mode):
                self.best, self.best_epoch = value, epoch

    def on_epoch_end(self, end: EpochEnd) -> None:
        """Saves the train state when ``record[monitor]`` improved."""
        value = _monitored("KeepBest", self.monitor, end.record)
        if not _improves(value, self.best, self.mode):
            return
        step = int(end.train_state.step)
        if self._ckpt is None:
            self._ckpt = _open_checkpointer(self.directory, self.keep)
        later = [s for s in self._ckpt.all_steps() if s >= step]
        if later and not self._resumed:
            raise ValueError(
                f"KeepBest: cannot save epoch {end.epoch + 1} (step {step}) into "
                f"{self.directory}: it holds checkpoints of steps {later} from another run; "
                "give each run its own folder (or delete this one)"
            )
        for s in later:  # saved by the interrupted run for the epochs this run redoes
            self._ckpt.manager.delete(s)
        self._ckpt.save(step, end.train_state, meta={"epoch": end.epoch + 1, self.monitor: value})
        self.best, self.best_epoch = value, end.epoch + 1

    def on_train_end(self, history: dict[str, list[float]]) -> None:
        """Closes the checkpointer (waits for its writes)."""
        if self._ckpt is not None:
            self._ckpt.close()
            self._ckpt = None

    def restore(self, target: Any) -> Any:
        """The best saved train state, restored into the structure of ``target``.

        Args:
            target: a train state of the same model and optimiser (e.g. the one fit returned
                or a freshly created one); only its structure, shapes and dtypes are used.

        Raises:
            jcnn.checkpoint.CheckpointError: nothing saved yet, or a checkpoint that does not
                fit ``target`` (the message says what differs).
        """
        ckpt = self._ckpt or _open_checkpointer(self.directory, self.keep)
        try:
            if ckpt.latest_step() is None:
                from jcnn.training.checkpoint import CheckpointError

                raise CheckpointError(
                    f"KeepBest.restore: no checkpoint in {self.directory}: no epoch has ended "
                    f"yet with a {self.monitor!r} entry; train with this callback first"
                )
            state, _ = ckpt.restore(target)
        finally:
            if ckpt is not self._ckpt:
                ckpt.close()
        return state


# ------------------------------------------------------------------------------- EarlyStopping


class EarlyStopping(Callback):
    """Stops the run after ``patience`` epochs in a row without improvement of ``monitor``.

    An epoch improves when its value beats the best so far by more than ``min_delta`` (lower
    for ``"min"``, higher for ``"max"``; NaN never improves). After ``patience`` epochs that do
    not, ``on_epoch_end`` returns True and fit stops after that epoch; ``patience=0`` stops at
    the first one. On a resumed run the best value and the count of epochs without improvement
    are recomputed from the history before ``start_epoch``.

    Args:
        monitor: the record entry to watch (default ``"val_loss"``).
        patience: epochs without improvement to tolerate, an int >= 0 (default 3).
        min_delta: the least change that counts as an improvement, >= 0 (default 0.0).
        mode: ``"max"``, ``"min"`` or ``"auto"`` (default): ``"min"`` when ``monitor``
            contains ``"loss"``, else ``"max"``.

    Attributes:
        best: the best value so far; ``best_epoch`` its epoch (from 1).
        wait: epochs since the last improvement.
        stopped_epoch: the epoch (from 1) after which it stopped the run, or None.

    Raises:
        TypeError, ValueError: a bad argument.
        KeyError: (at an epoch's end) the record has no ``monitor`` entry.

    Example:
        >>> stop = EarlyStopping(monitor="val_loss", patience=2)
        >>> [stop.on_epoch_end(EpochEnd(e, {"val_loss": v}, {}, None))
        ...  for e, v in enumerate([1.0, 0.8, 0.9, 0.85])]
        [False, False, False, True]
        >>> stop.stopped_epoch, stop.best, stop.best_epoch
        (4, 0.8, 2)
    """

    def __init__(
        self,
        *,
        monitor: str = "val_loss",
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str = "auto",
    ) -> None:
        self.monitor = _monitor_arg("EarlyStopping", monitor)
        self.mode = _mode_arg("EarlyStopping", mode, monitor)
        self.patience = int_at_least(
            patience, "EarlyStopping: patience", 0, hint="(epochs without improvement to tolerate)"
        )
        self.min_delta = real_number(
            min_delta,
            "EarlyStopping: min_delta",
            low=0,
            finite=True,
            hint="(the least change that counts as an improvement, whatever the mode)",
        )
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def _update(self, epoch: int, value: float) -> bool:
        """Counts one epoch (from 1); True when patience has run out."""
        if _improves(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False
        self.wait += 1
        return self.wait >= self.patience

    def on_train_begin(self, info: RunInfo) -> None:
        """Replays the history before ``info.start_epoch`` (nothing on a fresh run)."""
        self._reset()
        for epoch, value in _past_values(info.history, self.monitor, info.start_epoch):
            self._update(epoch, value)

    def on_epoch_end(self, end: EpochEnd) -> bool:
        """True (stop) when this is the ``patience``-th epoch in a row without improvement."""
        value = _monitored("EarlyStopping", self.monitor, end.record)
        stop = self._update(end.epoch + 1, value)
        if stop:
            self.stopped_epoch = end.epoch + 1
        return stop
