"""fit's callbacks without training: EpochEnd/RunInfo values built by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jcnn.layers import Dense, serial
from jcnn.training.callbacks import (
    Callback,
    EarlyStopping,
    EpochEnd,
    KeepBest,
    LearningRate,
    MetricsLogger,
    RunInfo,
    TensorBoard,
    learning_rate_of,
)
from jcnn.training.checkpoint import CheckpointError
from jcnn.training.legacy import create_train_state


class _State(NamedTuple):
    """The part of a TrainState the loggers read."""

    step: jax.Array


def _info(start_epoch: int = 0, history: dict | None = None, epochs: int = 10) -> RunInfo:
    return RunInfo(epochs, 5, 8, start_epoch, history or {}, None)


def _end(epoch: int, record: dict[str, float], ts: Any = None, history: dict | None = None):
    ts = _State(jnp.asarray(5 * (epoch + 1), jnp.int32)) if ts is None else ts
    return EpochEnd(epoch, record, history or {}, ts)


def _history(**entries: list[float]) -> dict[str, list[float]]:
    n = len(next(iter(entries.values())))
    return {"epoch": list(range(1, n + 1)), **entries}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture
def train_state():
    return create_train_state(serial(Dense(2)), (3,), optax.sgd(0.1))


def test_base_callback_hooks_do_nothing():
    cb = Callback()
    assert cb.on_train_begin(_info()) is None
    assert cb.extend_record(_end(0, {})) is None
    assert cb.on_chunk_end(object()) is None
    assert cb.on_epoch_end(_end(0, {})) is None
    assert cb.on_train_end({}) is None


# ----------------------------------------------------------------------------- MetricsLogger


def test_jsonl_rows_epoch_step_and_record(tmp_path):
    path = tmp_path / "deep" / "er" / "log.jsonl"  # parent folders are created
    log = MetricsLogger(path)
    log.on_train_begin(_info())
    log.on_epoch_end(_end(0, {"train_loss": 0.5, "lr": np.float32(0.25)}))
    assert path.read_text().endswith("\n")  # written through at the epoch's end
    log.on_epoch_end(_end(1, {"train_loss": float("nan"), "val_accuracy": jnp.asarray(0.75)}))
    log.on_train_end({})
    rows = _read_jsonl(path)
    assert rows == [
        {"epoch": 1, "step": 5, "train_loss": 0.5, "lr": 0.25},
        {"epoch": 2, "step": 10, "train_loss": None, "val_accuracy": 0.75},  # NaN: null
    ]
    assert list(rows[0]) == ["epoch", "step", "train_loss", "lr"]


def test_jsonl_fresh_run_starts_anew_and_resume_truncates(tmp_path):
    path = tmp_path / "log.jsonl"
    log = MetricsLogger(path)
    log.on_train_begin(_info())
    for e in range(5):
        log.on_epoch_end(_end(e, {"train_loss": 1.0 / (e + 1)}))
    with open(path, "a") as f:
        f.write('{"epoch": 6, "st')  # a line cut by a crash
    # resumed from the checkpoint of epoch 3: rows 4, 5 (and the cut line) go
    log.on_train_begin(_info(start_epoch=3))
    assert [r["epoch"] for r in _read_jsonl(path)] == [1, 2, 3]
    for e in range(3, 5):
        log.on_epoch_end(_end(e, {"train_loss": 0.0}))
    assert [r["epoch"] for r in _read_jsonl(path)] == [1, 2, 3, 4, 5]
    assert _read_jsonl(path)[3]["train_loss"] == 0.0
    # a fresh run into the same file starts it anew
    MetricsLogger(path).on_train_begin(_info())
    assert path.read_text() == ""
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left


def test_csv_rows_and_header_union(tmp_path):
    path = tmp_path / "log.csv"
    log = MetricsLogger(path)
    log.on_train_begin(_info())
    log.on_epoch_end(_end(0, {"train_loss": 0.5, "lr": 0.1}))
    log.on_epoch_end(_end(1, {"train_loss": 0.25, "lr": 0.1}))
    header, rows = _read_csv(path)
    assert header == ["epoch", "step", "train_loss", "lr"]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # validation every other epoch: a new column, then a row without it
    log.on_epoch_end(_end(2, {"train_loss": 0.125, "lr": 0.1, "val_loss": 0.3}))
    log.on_epoch_end(_end(3, {"train_loss": 0.0625, "lr": 0.1}))
    header, rows = _read_csv(path)
    assert header == ["epoch", "step", "train_loss", "lr", "val_loss"]
    assert [r["val_loss"] for r in rows] == ["", "", "0.3", ""]
    assert [float(r["train_loss"]) for r in rows] == [0.5, 0.25, 0.125, 0.0625]
    assert rows[3]["step"] == "20"
    assert path.read_text().count("epoch") == 1  # one header line


def test_csv_resume_truncates(tmp_path):
    path = tmp_path / "log.csv"
    log = MetricsLogger(path)
    log.on_train_begin(_info())
    for e in range(4):
        log.on_epoch_end(_end(e, {"train_loss": float(e)}))
    log.on_train_begin(_info(start_epoch=2))
    header, rows = _read_csv(path)
    assert header == ["epoch", "step", "train_loss"]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    log.on_epoch_end(_end(2, {"train_loss": 9.0}))
    assert [r["train_loss"] for r in _read_csv(path)[1]] == ["0.0", "1.0", "9.0"]


def test_metrics_logger_format_argument(tmp_path):
    log = MetricsLogger(tmp_path / "log.txt", format="csv")
    log.on_epoch_end(_end(0, {"a": 1.0}))
    assert (tmp_path / "log.txt").read_text().splitlines()[0] == "epoch,step,a"
    assert MetricsLogger(tmp_path / "x.CSV").format == "csv"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"path": "log.txt"}, ValueError, r"suffix '\.txt'.*format='jsonl'"),
        ({"path": "log.jsonl", "format": "json"}, ValueError, "'jsonl', 'csv' or None"),
        ({"path": 3}, TypeError, "path must be a path.*got int"),
    ],
)
def test_metrics_logger_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MetricsLogger(**kwargs)


def test_metrics_logger_refuses_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        MetricsLogger(tmp_path, format="csv")


# ---------------------------------------------------------------------------------- KeepBest


def _bumped(ts, steps: int, value: float):
    """``ts`` ``steps`` steps later, with every param filled with ``value``."""
    params = jax.tree_util.tree_map(lambda p: jnp.full_like(p, value), ts.params)
    return ts._replace(params=params, step=ts.step + steps)


def test_keep_best_saves_only_improvements_and_restores_best(tmp_path, train_state):
    best = KeepBest(tmp_path / "best", monitor="val_accuracy")
    assert best.mode == "max"
    best.on_train_begin(_info())
    ts = train_state
    saved_steps = []
    for epoch, acc in enumerate([0.5, 0.7, 0.6, 0.7, 0.9, 0.8]):
        ts = _bumped(ts, 10, float(epoch))
        before = best.best
        best.on_epoch_end(_end(epoch, {"val_accuracy": acc, "train_loss": 1.0}, ts))
        if best.best != before:
            saved_steps.append(int(ts.step))
    best.on_train_end({})
    assert saved_steps == [10, 20, 50]  # 0.6 and the tie 0.7 are not improvements
    assert (best.best, best.best_epoch) == (0.9, 5)
    assert sorted(int(p.name) for p in (tmp_path / "best").iterdir() if p.name.isdigit()) == [50]
    restored = best.restore(train_state)
    assert int(restored.step) == 50
    for leaf in jax.tree_util.tree_leaves(restored.params):
        np.testing.assert_array_equal(leaf, np.full(leaf.shape, 4.0, leaf.dtype))
    assert type(restored) is type(train_state)


def test_keep_best_min_mode_meta_and_keep(tmp_path, train_state):
    from jcnn.training.checkpoint import Checkpointer

    best = KeepBest(tmp_path / "best", monitor="val_loss", keep=2)
    assert best.mode == "min"
    ts = train_state
    for epoch, loss in enumerate([1.0, 0.5, 0.25]):
        ts = _bumped(ts, 1, loss)
        best.on_epoch_end(_end(epoch, {"val_loss": loss}, ts))
    best.on_train_end({})
    ckpt = Checkpointer(tmp_path / "best")
    assert ckpt.all_steps() == [2, 3]
    _, meta = ckpt.restore(train_state)
    ckpt.close()
    assert meta == {"epoch": 3, "val_loss": 0.25}


def test_keep_best_resume_starts_from_history(tmp_path, train_state):
    history = _history(val_accuracy=[0.5, 0.9, 0.7, 0.95])
    best = KeepBest(tmp_path / "best")
    # resumed after epoch 3: epoch 4 of the history was after the checkpoint and does not count
    best.on_train_begin(_info(start_epoch=3, history=history))
    assert (best.best, best.best_epoch) == (0.9, 2)
    ts = _bumped(train_state, 40, 1.0)
    best.on_epoch_end(_end(3, {"val_accuracy": 0.8}, ts))  # worse than epoch 2: not saved
    assert not (tmp_path / "best").exists()
    best.on_epoch_end(_end(4, {"val_accuracy": 0.92}, _bumped(ts, 10, 2.0)))
    assert (best.best, best.best_epoch) == (0.92, 5)
    best.on_train_end({})
    # a fresh run forgets the history
    best.on_train_begin(_info(start_epoch=0, history={}))
    assert best.best is None and best.best_epoch is None


def test_keep_best_resume_replaces_what_the_interrupted_run_saved_later(tmp_path, train_state):
    from jcnn.training.checkpoint import Checkpointer

    values = [0.5, 0.6, 0.7, 0.8, 0.9]
    first = KeepBest(tmp_path / "best", keep=None)
    first.on_train_begin(_info())
    ts = train_state
    for epoch, acc in enumerate(values):  # the interrupted run got to epoch 5
        ts = _bumped(ts, 10, float(epoch))
        first.on_epoch_end(_end(epoch, {"val_accuracy": acc}, ts))
    first.on_train_end({})
    # resumed from fit's checkpoint of epoch 3 (step 30); epoch 4 now scores 0.75
    again = KeepBest(tmp_path / "best", keep=None)
    again.on_train_begin(_info(start_epoch=3, history=_history(val_accuracy=values)))
    assert (again.best, again.best_epoch) == (0.7, 3)
    ts = _bumped(train_state, 40, 9.0)
    again.on_epoch_end(_end(3, {"val_accuracy": 0.75}, ts))
    again.on_train_end({})
    ckpt = Checkpointer(tmp_path / "best")
    assert ckpt.all_steps() == [10, 20, 30, 40]  # the old 40 and 50 are gone
    ckpt.close()
    restored = again.restore(train_state)
    np.testing.assert_array_equal(jax.tree_util.tree_leaves(restored.params)[0], 9.0)


def test_keep_best_fresh_run_refuses_a_used_folder(tmp_path, train_state):
    ts = _bumped(train_state, 50, 1.0)
    used = KeepBest(tmp_path / "best")
    used.on_epoch_end(_end(4, {"val_accuracy": 0.9}, ts))
    used.on_train_end({})
    fresh = KeepBest(tmp_path / "best")
    fresh.on_train_begin(_info())
    with pytest.raises(ValueError, match=r"steps \[50\] from another run; give each run its own"):
        fresh.on_epoch_end(_end(0, {"val_accuracy": 0.1}, _bumped(train_state, 10, 0.0)))
    fresh.on_train_end({})


def test_keep_best_missing_monitor_names_the_entries(tmp_path):
    best = KeepBest(tmp_path / "best")
    with pytest.raises(KeyError, match=r"no 'val_accuracy'.*\['lr', 'train_loss'\].*val="):
        best.on_epoch_end(_end(0, {"train_loss": 1.0, "lr": 0.1}))


def test_keep_best_restore_without_checkpoint(tmp_path, train_state):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        KeepBest(tmp_path / "best").restore(train_state)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"monitor": ""}, TypeError, "monitor must be the name"),
        ({"monitor": 3}, TypeError, "got int 3"),
        ({"mode": "maximum"}, ValueError, r"mode must be one of \('auto', 'min', 'max'\)"),
        ({"keep": 0}, ValueError, "keep must be an int >= 1"),
        ({"keep": 1.5}, TypeError, "keep must be an int .*float 1.5"),
    ],
)
def test_keep_best_bad_arguments(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        KeepBest(tmp_path / "best", **kwargs)


def test_keep_best_refuses_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="existing file"):
        KeepBest(tmp_path / "file" / "best")
    with pytest.raises(TypeError, match="directory must be a path"):
        KeepBest(None)


# ----------------------------------------------------------------------------- EarlyStopping


def _run(stop: EarlyStopping, values: list[float], first: int = 0) -> int | None:
    """Feeds epochs ``first, first+1, ...``; the epoch (from 1) after which it stopped."""
    for i, v in enumerate(values):
        if stop.on_epoch_end(_end(first + i, {"val_loss": v, "val_accuracy": v})):
            return first + i + 1
    return None


@pytest.mark.parametrize(
    ("patience", "expected"),
    [(0, 3), (1, 3), (2, 4), (3, 5), (4, 6), (5, None)],
)
def test_early_stopping_stops_after_patience(patience, expected):
    values = [1.0, 0.8, 0.9, 0.85, 0.8, 0.81, 0.7]  # improves at epochs 1, 2, (7)
    stop = EarlyStopping(monitor="val_loss", patience=patience)
    assert _run(stop, values) == expected
    assert stop.stopped_epoch == expected
    assert (stop.best, stop.best_epoch) == ((0.8, 2) if expected else (0.7, 7))


def test_early_stopping_min_delta_and_max_mode():
    stop = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.05)
    assert stop.mode == "max"
    # 0.52 and 0.54 are within min_delta of 0.5: no improvement
    assert _run(stop, [0.5, 0.52, 0.54]) == 2
    stop = EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.05)
    assert _run(stop, [0.5, 0.6, 0.7, 0.71]) == 4


def test_early_stopping_nan_never_improves():
    stop = EarlyStopping(patience=1)
    assert _run(stop, [1.0, float("nan")]) == 2


def test_early_stopping_resume_counts_the_history():
    history = _history(val_loss=[1.0, 0.8, 0.9, 0.85, 0.1])  # epoch 5 after the checkpoint
    stop = EarlyStopping(patience=3)
    stop.on_train_begin(_info(start_epoch=4, history=history))
    assert (stop.best, stop.best_epoch, stop.wait) == (0.8, 2, 2)
    assert _run(stop, [0.9], first=4) == 5  # the 3rd epoch in a row without improvement
    # the same as the uninterrupted run
    assert _run(EarlyStopping(patience=3), [1.0, 0.8, 0.9, 0.85, 0.9]) == 5
    # a fresh run starts over
    stop.on_train_begin(_info(start_epoch=0, history=history))
    assert (stop.best, stop.wait, stop.stopped_epoch) == (None, 0, None)


def test_early_stopping_missing_monitor():
    with pytest.raises(KeyError, match=r"EarlyStopping.*no 'val_loss'.*\['train_loss'\]"):
        EarlyStopping().on_epoch_end(_end(0, {"train_loss": 1.0}))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"patience": -1}, ValueError, "patience must be an int >= 0.*got -1"),
        ({"patience": 2.0}, TypeError, "patience must be an int.*float"),
        ({"patience": True}, TypeError, "patience must be an int"),
        ({"min_delta": -0.1}, ValueError, "min_delta must be a finite number >= 0"),
        ({"min_delta": float("inf")}, ValueError, "min_delta"),
        ({"min_delta": "0.1"}, TypeError, "min_delta must be a real number"),
        ({"mode": "MIN"}, ValueError, "mode must be one of"),
        ({"monitor": None}, TypeError, "monitor must be the name"),
    ],
)
def test_early_stopping_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)


# ----------------------------------------------------------------------------- learning rate


def test_learning_rate_of_the_last_step():
    schedule = optax.linear_schedule(1.0, 0.0, transition_steps=8)
    lr = LearningRate(schedule)
    assert lr.extend_record(_end(0, {}, _State(jnp.asarray(5)))) == {"lr": 0.5}  # step 4
    assert lr.extend_record(_end(0, {}, _State(jnp.asarray(0)))) == {"lr": 1.0}
    assert lr.extend_record(_end(0, {}, _State(jnp.asarray(100)))) == {"lr": 0.0}
    assert lr.on_epoch_end(_end(0, {})) is None


def test_learning_rate_matches_the_optimizer():
    """What the schedule gives for step - 1 is the rate inject_hyperparams used last."""
    schedule = optax.linear_schedule(1.0, 0.0, transition_steps=8)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    for _ in range(3):
        _, state = opt.update({"w": jnp.ones(2)}, state, params)
    from_state = learning_rate_of(state)
    from_schedule = LearningRate(schedule).extend_record(_end(0, {}, _State(jnp.asarray(3))))
    assert from_state == pytest.approx(from_schedule["lr"]) == pytest.approx(0.75)


def test_learning_rate_bad_schedule():
    with pytest.raises(TypeError, match="schedule must be a callable.*got float"):
        LearningRate(0.1)


def test_learning_rate_of_injected_chained_nested_and_plain():
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=0.5)
    assert learning_rate_of(injected.init(params)) == 0.5
    chained = optax.chain(optax.clip_by_global_norm(1.0), injected)
    assert learning_rate_of(chained.init(params)) == 0.5
    # a schedule's state also has a "learning_rate" entry (hyperparams_states): not a rate
    scheduled = optax.inject_hyperparams(optax.sgd)(
        learning_rate=optax.linear_schedule(0.25, 0.0, 10)
    )
    assert learning_rate_of(scheduled.init(params)) == 0.25
    multi = optax.multi_transform(
        {"x": optax.chain(optax.clip(1.0), scheduled), "y": optax.set_to_zero()},
        {"a": "x", "b": "y"},
    )
    assert learning_rate_of(multi.init(params)) == 0.25
    # a TrainState: the search reaches its opt_state
    ts = create_train_state(serial(Dense(2)), (3,), chained)
    assert learning_rate_of(ts.opt_state) == 0.5
    assert learning_rate_of(optax.adam(0.1).init(params)) is None
    assert learning_rate_of(optax.adam(optax.linear_schedule(1.0, 0.0, 5)).init(params)) is None
    assert learning_rate_of(()) is None


# ------------------------------------------------------------------------------- TensorBoard


def test_tensorboard_tags():
    assert TensorBoard.tag("train_loss") == "train/loss"
    assert TensorBoard.tag("val_accuracy") == "val/accuracy"
    assert TensorBoard.tag("ema_val_loss") == "ema_val/loss"
    assert TensorBoard.tag("lr") == "lr"
    assert TensorBoard.tag("train_") == "train_"


def test_tensorboard_writes_an_event_file(tmp_path):
    pytest.importorskip("tensorboardX")
    tb = TensorBoard(tmp_path / "tb")
    tb.on_train_begin(_info())
    for e in range(2):
        tb.on_epoch_end(_end(e, {"train_loss": 1.0 / (e + 1), "val_accuracy": 0.5, "lr": 0.1}))
    tb.on_train_end({})
    assert tb._writer is None
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    data = events[0].read_bytes()
    for tag in (b"train/loss", b"val/accuracy", b"lr"):
        assert tag in data
    # a resumed run opens another writer, purging the epochs it redoes
    tb.on_train_begin(_info(start_epoch=1))
    tb.on_epoch_end(_end(1, {"train_loss": 0.4}))
    tb.on_train_end({})
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) >= 1


def test_tensorboard_without_tensorboardx(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name == "tensorboardX" or name.startswith("tensorboardX."):
            raise ImportError("No module named 'tensorboardX'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    with pytest.raises(ImportError, match=r"pip install tensorboardX.*jcnn\[tensorboard\]"):
        TensorBoard(tmp_path)


def test_tensorboard_bad_logdir():
    with pytest.raises(TypeError, match="logdir must be a path"):
        TensorBoard(1)
