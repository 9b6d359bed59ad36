"""Callbacks of :func:`jcnn.fit`: values that watch a run and may stop it [Keras callbacks].

``fit`` calls every callback's hooks in this order::

    on_train_begin(RunInfo)                once, before the first epoch (also on a resumed run)
    on_chunk_end(chunk)                    after each compiled chunk of steps
    extend_record(EpochEnd)                after each epoch, for every callback first: extra entries
                                           merged into the epoch's record before it enters the
                                           history
    on_epoch_end(EpochEnd)                 then, for every callback; True stops after this epoch
    on_train_end(history)                  once, also when training raised or was preempted

Every hook of :class:`Callback` does nothing, so a callback defines only the ones it needs. The
built-in ones:

* :class:`MetricsLogger`: one row per epoch to a JSON-lines or CSV file.
* :class:`TensorBoard`: the epoch's scalars to TensorBoard (needs ``tensorboardX``).
* :class:`KeepBest`: checkpoints the train state whenever a metric improves.
* :class:`EarlyStopping`: stops when a metric has stopped improving.
* :class:`LearningRate`: adds the schedule's learning rate to each record;
  :func:`learning_rate_of` reads it from an ``optax.inject_hyperparams`` state instead.

All of them are resume-aware: on a run resumed from a checkpoint, ``on_train_begin`` reads the
history so far (:attr:`RunInfo.history`), so no row is logged twice, a better earlier checkpoint
is not overwritten and the patience counts the epochs before the interruption.

Epochs: :attr:`EpochEnd.epoch` counts from 0 (like ``range(epochs)``); everything a callback
writes or reports (log rows, ``best_epoch``, ``stopped_epoch``, checkpoint meta) counts from 1,
as ``history["epoch"]`` does.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochEnd",
    "KeepBest",
    "LearningRate",
    "MetricsLogger",
    "RunInfo",
    "TensorBoard",
    "learning_rate_of",
]

_MODES = ("auto", "min", "max")


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


# ----------------------------------------------------------------------------- argument checks


def _path_arg(caller: str, name: str, value: Any) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise TypeError(
            f"{caller}: {name} must be a path (str or os.PathLike), got "
            f"{type(value).__name__} {value!r:.60}"
        )
    return Path(value)


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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


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


def _is_writer() -> bool:
    """Only the first process writes logs in a multi-process run (they would clash)."""
    return jax.process_index() == 0


def _row(end: EpochEnd) -> dict[str, Any]:
    """The log row of an epoch: ``epoch`` (from 1), ``step`` and the record's values."""
    row: dict[str, Any] = {"epoch": end.epoch + 1, "step": int(end.train_state.step)}
    for k, v in end.record.items():
        if k not in row:
            row[k] = v if _is_int(v) else float(v)
    return row


def _write_atomic(path: Path, text: str) -> None:
    """Replaces ``path`` by ``text`` all at once (temp file in the same folder + os.replace)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append(path: Path, text: str) -> None:
    with open(path, "a", newline="", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


# ------------------------------------------------------------------------------- MetricsLogger


def _json_value(value: Any) -> Any:
    """Strict JSON: NaN and infinities are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_text(header: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _csv_epoch(row: Mapping[str, str]) -> int | None:
    try:
        return int(float(row.get("epoch") or "nan"))
    except (TypeError, ValueError):
        return None


class MetricsLogger(Callback):
    """Appends one row per epoch to a JSON-lines (``.jsonl``) or CSV (``.csv``) file.

    A row is the epoch's record plus ``"epoch"`` (from 1) and ``"step"`` (the optimiser step
    after the epoch), first. Each row is flushed and synced when written, so a crash loses no
    finished epoch. JSON lines are strict JSON: a NaN or infinite value is written as ``null``.
    A CSV file's header is the first row's keys; a later row with new keys (e.g. validation
    every few epochs) rewrites the file once with the union of the keys, empty cells where a
    row has no value. Rewrites are atomic (a temporary file replaces the old one).

    A fresh run (``start_epoch == 0``) starts the file anew; a resumed run keeps the rows of the
    epochs before ``start_epoch`` and drops the later ones (written after the checkpoint it
    resumed from), so no epoch appears twice. In a multi-process run only process 0 writes.

    Args:
        path: the file; its parent folders are created.
        format: ``"jsonl"`` or ``"csv"``; None (default) takes it from the suffix of ``path``.

    Raises:
        TypeError: ``path`` is not a str or path.
        ValueError: ``format`` is not one of them, or None and the suffix is neither
            ``.jsonl`` nor ``.csv``.

    Example:
        >>> import json, tempfile
        >>> from types import SimpleNamespace
        >>> log = MetricsLogger(tempfile.mkdtemp() + "/run/metrics.jsonl")
        >>> ts = SimpleNamespace(step=jnp.array(100))      # any train state with .step
        >>> log.on_epoch_end(EpochEnd(0, {"train_loss": 0.5, "lr": 0.1}, {}, ts))
        >>> [json.loads(line) for line in log.path.read_text().splitlines()]
        [{'epoch': 1, 'step': 100, 'train_loss': 0.5, 'lr': 0.1}]
    """

    def __init__(self, path: str | os.PathLike[str], *, format: str | None = None) -> None:
        self.path = _path_arg("MetricsLogger", "path", path)
        if format is None:
            format = {".jsonl": "jsonl", ".csv": "csv"}.get(self.path.suffix.lower())
            if format is None:
                raise ValueError(
                    f"MetricsLogger: cannot tell the format of {str(self.path)!r} from its "
                    f"suffix {self.path.suffix!r}; name the file *.jsonl or *.csv, or pass "
                    "format='jsonl' or format='csv'"
                )
        elif format not in ("jsonl", "csv"):
            raise ValueError(
                f"MetricsLogger: format must be 'jsonl', 'csv' or None (from the suffix), got "
                f"{format!r}"
            )
        self.format = format
        if self.path.is_dir():
            raise IsADirectoryError(
                f"MetricsLogger: path {self.path} is a folder; pass a file path such as "
                f"{self.path / ('metrics.' + format)}"
            )

    def on_train_begin(self, info: RunInfo) -> None:
        """Starts the file anew (fresh run) or drops the rows after ``info.start_epoch``."""
        if not _is_writer():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keep = int(info.start_epoch)
        if keep <= 0 or not self.path.exists():
            _write_atomic(self.path, "")
            return
        if self.format == "jsonl":
            lines = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    epoch = int(row["epoch"])
                except (ValueError, TypeError, KeyError):  # e.g. a line cut by a crash
                    continue
                if epoch <= keep:
                    lines.append(line + "\n")
            _write_atomic(self.path, "".join(lines))
        else:
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = [r for r in reader if _csv_epoch(r) is not None and _csv_epoch(r) <= keep]
            _write_atomic(self.path, _csv_text(header, rows) if rows else "")

    def on_epoch_end(self, end: EpochEnd) -> None:
        """Appends the epoch's row (rewriting a CSV file when the row brings new columns)."""
        if not _is_writer():
            return
        row = _row(end)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "jsonl":
            row = {k: _json_value(v) for k, v in row.items()}
            _append(self.path, json.dumps(row, allow_nan=False) + "\n")
            return
        header: list[str] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
        if not header:
            _write_atomic(self.path, _csv_text(list(row), [row]))
        elif set(row) <= set(header):
            out = io.StringIO()
            csv.DictWriter(out, fieldnames=header, restval="", lineterminator="\n").writerow(row)
            _append(self.path, out.getvalue())
        else:
            union = header + [k for k in row if k not in header]
            with open(self.path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            _write_atomic(self.path, _csv_text(union, [*rows, row]))


# --------------------------------------------------------------------------------- TensorBoard


class TensorBoard(Callback):
    """Writes each epoch's record as TensorBoard scalars, at global step ``epoch + 1``.

    Tags group by split: ``train_<m>`` -> ``train/<m>``, ``val_<m>`` -> ``val/<m>``,
    ``ema_val_<m>`` -> ``ema_val/<m>``; other entries keep their name (``lr``, ``seconds``)
    (:meth:`tag`). A resumed run tells TensorBoard to discard what an interrupted run logged
    for the epochs from ``start_epoch + 1`` on (``purge_step``), so curves do not double back.
    Needs the optional ``tensorboardX`` (``pip install tensorboardX``); the writer is opened
    by ``on_train_begin`` (or the first epoch) and closed by ``on_train_end``. In a
    multi-process run only process 0 writes.

    Args:
        logdir: the folder of the event files (``tensorboard --logdir <it>``).

    Raises:
        ImportError: ``tensorboardX`` is not installed.
        TypeError: ``logdir`` is not a str or path.

    Example:
        >>> TensorBoard.tag("val_accuracy"), TensorBoard.tag("lr")
        ('val/accuracy', 'lr')
        >>> tb = TensorBoard("runs/exp1")   # doctest: +SKIP
        >>> fit(..., callbacks=[tb])        # doctest: +SKIP
    """

    _PREFIXES = ("ema_val_", "train_", "val_")

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        self.logdir = _path_arg("TensorBoard", "logdir", logdir)
        self._writer_class = _summary_writer_class()
        self._writer: Any = None

    @staticmethod
    def tag(name: str) -> str:
        """The TensorBoard tag of a record entry: ``"train_loss"`` -> ``"train/loss"``.

        Example:
            >>> TensorBoard.tag("ema_val_loss")
            'ema_val/loss'
        """
        for prefix in TensorBoard._PREFIXES:
            if name.startswith(prefix) and len(name) > len(prefix):
                return f"{prefix[:-1]}/{name[len(prefix) :]}"
        return name

    def _open(self, purge_step: int | None = None) -> Any:
        if self._writer is None:
            self._writer = self._writer_class(logdir=str(self.logdir), purge_step=purge_step)
        return self._writer

    def on_train_begin(self, info: RunInfo) -> None:
        """Opens the writer (purging the epochs a resumed run redoes)."""
        if not _is_writer():
            return
        self.on_train_end({})  # a writer left open by an earlier run
        self._open(info.start_epoch + 1 if info.start_epoch > 0 else None)

    def on_epoch_end(self, end: EpochEnd) -> None:
        """Adds the record's scalars at step ``end.epoch + 1`` and flushes."""
        if not _is_writer():
            return
        writer = self._open()
        for name, value in end.record.items():
            writer.add_scalar(self.tag(name), float(value), global_step=end.epoch + 1)
        writer.flush()

    def on_train_end(self, history: dict[str, list[float]]) -> None:
        """Closes the writer."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _summary_writer_class() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "TensorBoard needs the optional package tensorboardX, which is not installed: "
            'pip install tensorboardX (or pip install "jcnn[tensorboard]"); or log with '
            "MetricsLogger, which needs nothing"
        ) from err
    return SummaryWriter


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
        self.directory = _path_arg("KeepBest", "directory", directory).absolute()
        self.monitor = _monitor_arg("KeepBest", monitor)
        self.mode = _mode_arg("KeepBest", mode, monitor)
        if keep is not None and (not _is_int(keep) or int(keep) < 1):
            raise (TypeError if not _is_int(keep) else ValueError)(
                f"KeepBest: keep must be an int >= 1 (how many of the best checkpoints to "
                f"keep) or None to keep all, got {type(keep).__name__} {keep!r}"
            )
        self.keep = None if keep is None else int(keep)
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
        if not _is_int(patience):
            raise TypeError(
                f"EarlyStopping: patience must be an int >= 0 (epochs without improvement to "
                f"tolerate), got {type(patience).__name__} {patience!r}"
            )
        if patience < 0:
            raise ValueError(
                f"EarlyStopping: patience must be an int >= 0 (epochs without improvement to "
                f"tolerate), got {patience}"
            )
        if not isinstance(min_delta, numbers.Real) or isinstance(min_delta, bool | np.bool_):
            raise TypeError(
                f"EarlyStopping: min_delta must be a real number >= 0, got "
                f"{type(min_delta).__name__} {min_delta!r}"
            )
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(
                f"EarlyStopping: min_delta must be a finite number >= 0 (the least change that "
                f"counts as an improvement, whatever the mode), got {min_delta}"
            )
        self.patience = int(patience)
        self.min_delta = float(min_delta)
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


# ------------------------------------------------------------------------------- learning rate


class LearningRate(Callback):
    """Adds ``"lr"``, the learning rate of the epoch's last step, to each epoch's record.

    For an optimiser built with a bare optax schedule (``optax.adam(schedule)``), whose state
    does not hold the learning rate: the value is ``schedule(step - 1)``, where ``step`` is the
    train state's step after the epoch (the schedule is called with the count of steps before
    a step, so ``step - 1`` is the last step's). An optimiser made with
    ``optax.inject_hyperparams`` needs no callback: fit reads its rate with
    :func:`learning_rate_of`.

    Args:
        schedule: ``step -> learning rate`` (an optax schedule, or any callable).

    Raises:
        TypeError: ``schedule`` is not callable (e.g. a float: a constant needs no logging).

    Example:
        >>> from types import SimpleNamespace
        >>> lr = LearningRate(optax.linear_schedule(1.0, 0.0, transition_steps=100))
        >>> ts = SimpleNamespace(step=jnp.array(51))   # 51 steps done: the last one was 50
        >>> lr.extend_record(EpochEnd(0, {}, {}, ts))
        {'lr': 0.5}
    """

    def __init__(self, schedule: Callable[[Any], Any]) -> None:
        if not callable(schedule):
            raise TypeError(
                f"LearningRate: schedule must be a callable step -> learning rate (an optax "
                f"schedule), got {type(schedule).__name__} {schedule!r:.60}; a constant "
                "learning rate needs no callback"
            )
        self.schedule = schedule

    def extend_record(self, end: EpochEnd) -> dict[str, float]:
        """``{"lr": schedule(step - 1)}`` (``schedule(0)`` before any step)."""
        step = max(int(end.train_state.step) - 1, 0)
        return {"lr": float(self.schedule(step))}


def _is_hyperparams_entry(path: tuple, value: Any) -> bool:
    parent = path[-2] if len(path) >= 2 else None
    return getattr(parent, "name", None) == "hyperparams" and np.size(value) >= 1


def learning_rate_of(opt_state: Any) -> float | None:
    """The learning rate held in an ``optax.inject_hyperparams`` state, or None.

    Searches the whole ``opt_state`` (chains, ``multi_transform``/``masked`` nesting, wrappers)
    for an ``InjectHyperparamsState``'s ``hyperparams["learning_rate"]``. When several
    transformations hold one (a ``multi_transform`` with a rate per group), the first in tree
    order is returned. After step ``t`` the state holds the rate of step ``t - 1``, the last
    step taken (the same as :class:`LearningRate` reports); before any step, the first one's.

    Args:
        opt_state: an optax optimiser state (e.g. ``train_state.opt_state``).

    Returns:
        The learning rate as a float, or None when no transformation holds one (an optimiser
        built with a float or a bare schedule; use :class:`LearningRate` for the latter).

    Example:
        >>> opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.25)
        >>> learning_rate_of(opt.init({"w": jnp.ones(3)}))   # float32 in the state: 0.25 is exact
        0.25
        >>> learning_rate_of(optax.adam(0.1).init({"w": jnp.ones(3)})) is None
        True
    """
    import optax.tree_utils as otu

    found = [
        (path, value)
        for path, value in otu.tree_get_all_with_path(opt_state, "learning_rate")
        if _is_hyperparams_entry(path, value)
    ]
    if not found:
        return None
    value = np.asarray(jax.device_get(found[0][1]))
    return float(value.reshape(-1)[0])  # replicated copies (one per device) are all equal
