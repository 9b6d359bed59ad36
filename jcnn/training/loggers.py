"""Logging callbacks of :func:`jcnn.fit`: each epoch's record to a file or to TensorBoard.

* :class:`MetricsLogger`: one row per epoch to a JSON-lines or CSV file.
* :class:`TensorBoard`: the epoch's scalars to TensorBoard (needs ``tensorboardX``).

Both are resume-aware: on a run resumed from a checkpoint, ``on_train_begin`` drops (or tells
TensorBoard to discard) what the interrupted run logged after the checkpoint, so no epoch is
logged twice. In a multi-process run only process 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jax

from jcnn.layers.arguments import as_path, is_int
from jcnn.training.hooks import Callback, EpochEnd, RunInfo

__all__ = ["MetricsLogger", "TensorBoard"]


def _is_writer() -> bool:
    """Only the first process writes logs in a multi-process run (they would clash)."""
    return jax.process_index() == 0


def _row(end: EpochEnd) -> dict[str, Any]:
    """The log row of an epoch: ``epoch`` (from 1), ``step`` and the record's values."""
    row: dict[str, Any] = {"epoch": end.epoch + 1, "step": int(end.train_state.step)}
    for k, v in end.record.items():
        if k not in row:
            row[k] = v if is_int(v) else float(v)
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
        self.path = as_path(path, "MetricsLogger: path")
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
                rows = [r for r in reader if (e := _csv_epoch(r)) is not None and e <= keep]
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
        self.logdir = as_path(logdir, "TensorBoard: logdir")
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
