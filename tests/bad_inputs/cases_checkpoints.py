"""Catalogue cases for checkpoints (``jcnn.checkpoint.Checkpointer``).

Arguments (``keep``, ``step``, the folder), meta values, train states that cannot be stored,
failed writes, damaged and planted files, and runs killed mid-save and mid-run. The tiny train
states and the damage helpers are those of ``tests/test_checkpoint.py`` (imported, not copied);
the kill-mid-run case runs that file's SIGKILL test in its fast (on-device) form (about 11 s).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optax
import tensorstore

from jcnn import layers as L
from jcnn import train as T
from jcnn.training.checkpoint import Checkpointer, CheckpointError
from tests.bad_inputs.catalogue import Case
from tests.test_checkpoint import (
    _data_files,
    _flip_one_bit_in_the_array_data,
    _identical,
    _state,
    _trained_like,
    _truncate_half,
    test_sigkilled_run_resumes_bit_identically,
)

REPO = Path(__file__).resolve().parents[2]


def _entries(folder: Path) -> list[str]:
    """What a checkpoint folder holds (nothing when it does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _saved(tmp: Path, step: int = 7) -> tuple[Path, T.TrainState]:
    """A folder holding one complete checkpoint ``step`` of a trained-looking state."""
    state = _trained_like(_state(), step)
    ckpt = Checkpointer(tmp / "ck")
    ckpt.save(step, state, meta={"epoch": 1, "index": 0})
    ckpt.close()
    return tmp / "ck", state


# --------------------------------------------------------------------------- arguments


def _valid_keep(tmp: Path) -> None:
    ckpt = Checkpointer(tmp / "two", keep=np.int64(2))
    every = Checkpointer(tmp / "all", keep=None)
    for step in (1, 2, 3):
        ckpt.save(step, _state())
        every.save(step, _state())
    assert ckpt.all_steps() == [2, 3] and every.all_steps() == [1, 2, 3]


def _valid_missing_folder(tmp: Path) -> None:
    folder = tmp / "new" / "ck"
    ckpt = Checkpointer(folder)
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
    assert not (tmp / "new").exists()  # reading never creates the folder
    ckpt.save(0, _state())
    assert _entries(folder) == ["0"]  # the first save does


def _restore_missing_folder(tmp: Path) -> None:
    folder = tmp / "no" / "such" / "ck"
    try:
        Checkpointer(folder).restore(_state())
    finally:
        assert not (tmp / "no").exists(), "restore created the folder"


def _directory_is_a_file(tmp: Path) -> None:
    (tmp / "ck").write_text("not a folder")
    Checkpointer(tmp / "ck")


def _step_not_after_latest(tmp: Path) -> None:
    ckpt = Checkpointer(tmp / "ck")
    ckpt.save(5, _state())
    try:
        ckpt.save(3, _state())
    finally:
        assert ckpt.all_steps() == [5]


# --------------------------------------------------------------------------- what is saved


def _valid_json_meta(tmp: Path) -> None:
    meta = {
        "epoch": 2,
        "note": "warm-up done",
        "lr": 1e-3,
        "flags": [True, None, 3],
        "config": {"depth": 3, "widths": [8, 16]},
        "seen": np.arange(4),
    }
    ckpt = Checkpointer(tmp / "ck")
    ckpt.save(1, _state(), meta=meta)
    assert _entries(tmp / "ck") == ["1"]  # only the complete checkpoint
    _, got = Checkpointer(tmp / "ck").restore(_state())
    assert got.keys() == meta.keys() and type(got["epoch"]) is int
    assert {k: v for k, v in got.items() if k != "seen"} == {
        k: v for k, v in meta.items() if k != "seen"
    }
    np.testing.assert_array_equal(got["seen"], meta["seen"])


def _meta_object(tmp: Path) -> None:
    try:
        Checkpointer(tmp / "ck").save(1, _state(), meta={"callback": print})
    finally:
        assert _entries(tmp / "ck") == [], "a refused save left files behind"


def _meta_int_key(tmp: Path) -> None:
    Checkpointer(tmp / "ck").save(1, _state(), meta={"config": {3: "three"}})


def _string_leaf(tmp: Path) -> None:
    try:
        Checkpointer(tmp / "ck").save(1, {"weights": np.ones(3), "name": np.array(["cnn"])})
    finally:
        assert _entries(tmp / "ck") == []


def _failed_write(tmp: Path) -> None:
    """A write that fails inside orbax (a full disk, simulated) after its folder was made."""
    ckpt = Checkpointer(tmp / "ck")
    ckpt.save(1, _state())

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device (simulated)")

    original = tensorstore.open
    tensorstore.open = disk_full
    try:
        ckpt.save(2, _trained_like(_state(), 2))
    finally:
        tensorstore.open = original
        assert _entries(tmp / "ck") == ["1"], _entries(tmp / "ck")  # no partial folder


# --------------------------------------------------------------------------- damaged, planted


def _restore_damaged(damage):
    def call(tmp: Path) -> None:
        folder, _ = _saved(tmp)
        damage(folder / "7")
        Checkpointer(folder).restore(_state(seed=1))

    return call


def _restore_unkept_step(tmp: Path) -> None:
    folder, _ = _saved(tmp)
    Checkpointer(folder).restore(_state(), step=3)


def _restore_other_architecture(tmp: Path) -> None:
    folder, _ = _saved(tmp)
    other = T.create_train_state(L.serial(L.Flatten(), L.Dense(3)), (4, 4, 1), optax.adam(1e-3))
    Checkpointer(folder).restore(other)


class _Planted:
    """Unpickling this creates the file ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _planted_pickles(tmp: Path) -> None:
    """Pickles in place of the index, of the array data, and as a whole step: never run."""
    folder, _ = _saved(tmp, step=3)
    marker = tmp / "EXECUTED"
    payload = pickle.dumps(_Planted(marker))

    def index(d: Path) -> None:
        (d / "3" / "default" / "_METADATA").write_bytes(payload)

    def array_data(d: Path) -> None:
        for f in _data_files(d / "3"):
            f.write_bytes(payload)

    def whole_step(d: Path) -> None:
        shutil.rmtree(d / "3")
        (d / "4").mkdir()
        for name in ("checkpoint", "checkpoint.pkl", "_METADATA"):
            (d / "4" / name).write_bytes(payload)

    last: CheckpointError | None = None
    for plant in (index, array_data, whole_step):
        planted = tmp / plant.__name__
        shutil.copytree(folder, planted)
        plant(planted)
        try:
            Checkpointer(planted).restore(_state())
        except CheckpointError as err:
            last = err
        else:
            raise AssertionError(f"{plant.__name__}: a planted pickle restored without error")
        assert not marker.exists(), f"{plant.__name__}: the planted pickle was executed"
    assert last is not None
    raise last


# --------------------------------------------------------------------------- killed runs

_STALLED_SAVE = r"""
import sys, time
import tensorstore
from jcnn.training.checkpoint import Checkpointer
from tests.test_checkpoint import _state, _trained_like
ckpt = Checkpointer(sys.argv[1], keep=2)
ckpt.save(1, _trained_like(_state(), 1), meta={"epoch": 1, "index": 0})
tensorstore.open = lambda *args, **kwargs: time.sleep(3600)   # the next save stalls mid-write
ckpt.save(2, _trained_like(_state(), 2), meta={"epoch": 2, "index": 0})
"""


def _valid_killed_mid_save(tmp: Path) -> None:
    folder = tmp / "ck"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    env.pop("XLA_FLAGS", None)
    log = tmp / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _STALLED_SAVE, str(folder)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not any(name.startswith("2.") for name in _entries(folder)):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the second save never started"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        proc.kill()  # SIGKILL mid-save: no cleanup, no flushing
        proc.wait()
    assert _entries(folder) == ["1", "2.orbax-checkpoint-tmp"], _entries(folder)
    ckpt = Checkpointer(folder)
    assert ckpt.latest_step() == 1
    state, meta = ckpt.restore(_state(seed=5))
    assert _identical(state, _trained_like(_state(), 1)) and meta == {"epoch": 1, "index": 0}
    ckpt.close()
    assert _entries(folder) == ["1"]  # the killed save's temporary folder is gone


def _valid_killed_mid_run(tmp: Path) -> None:
    test_sigkilled_run_resumes_bit_identically(tmp, host_loop=False)


CASES = [
    Case(
        "checkpoints",
        "keep_zero",
        "Checkpointer(dir, keep=0): keep nothing",
        lambda tmp: Checkpointer(tmp / "ck", keep=0),
        ValueError,
        ["keep must be an int >= 1", "got 0", "None to keep every one"],
    ),
    Case(
        "checkpoints",
        "keep_float",
        "Checkpointer(dir, keep=2.5)",
        lambda tmp: Checkpointer(tmp / "ck", keep=2.5),
        TypeError,
        ["keep must be an int", "got float 2.5"],
    ),
    Case(
        "checkpoints",
        "keep_bool",
        "Checkpointer(dir, keep=True)",
        lambda tmp: Checkpointer(tmp / "ck", keep=True),
        TypeError,
        ["keep must be an int", "got bool True"],
    ),
    Case(
        "checkpoints",
        "keep_numpy_int_or_none",
        "Checkpointer(dir, keep=np.int64(2)) and keep=None",
        _valid_keep,
        valid="a NumPy int keeps that many checkpoints; None keeps every one",
    ),
    Case(
        "checkpoints",
        "directory_is_a_file",
        "Checkpointer(path) where path is an existing file",
        _directory_is_a_file,
        NotADirectoryError,
        ["is an existing file, not a folder", "pass the path of a folder"],
    ),
    Case(
        "checkpoints",
        "missing_folder_read",
        "latest_step()/all_steps() on a folder that does not exist",
        _valid_missing_folder,
        valid="None and [] without creating anything; the first save creates the folder",
    ),
    Case(
        "checkpoints",
        "missing_folder_restore",
        "restore() from a folder that does not exist (a typo)",
        _restore_missing_folder,
        CheckpointError,
        ["no checkpoint in", "the folder does not exist", "check the path"],
    ),
    Case(
        "checkpoints",
        "step_negative",
        "save(-1, ts)",
        lambda tmp: Checkpointer(tmp / "ck").save(-1, _state()),
        ValueError,
        ["step must be an int >= 0", "got -1"],
    ),
    Case(
        "checkpoints",
        "step_float",
        "save(2.0, ts)",
        lambda tmp: Checkpointer(tmp / "ck").save(2.0, _state()),
        TypeError,
        ["step must be an int", "got float 2.0"],
    ),
    Case(
        "checkpoints",
        "step_not_after_latest",
        "save(3, ts) after checkpoint 5 (or the same step twice)",
        _step_not_after_latest,
        ValueError,
        ["step 3 is not after the latest checkpoint 5", "kept steps [5]", "save under a step > 5"],
    ),
    Case(
        "checkpoints",
        "meta_json_values",
        'save(meta={"note": "x", "config": {...}, "lr": 1e-3, "seen": array})',
        _valid_json_meta,
        valid="JSON-able values and arrays round-trip; ints stay ints; only the checkpoint is left",
    ),
    Case(
        "checkpoints",
        "meta_object",
        'save(meta={"callback": print}): a value that is not data',
        _meta_object,
        TypeError,
        ["meta['callback']", "builtin_function_or_method", "JSON-able"],
    ),
    Case(
        "checkpoints",
        "meta_non_string_key",
        'save(meta={"config": {3: "three"}})',
        _meta_int_key,
        TypeError,
        ["meta['config'] has the key 3", "keys must be strings"],
    ),
    Case(
        "checkpoints",
        "string_array_leaf",
        "save() of a train state with a string array leaf",
        _string_leaf,
        TypeError,
        ["train-state leaf name", "dtype <U3", "only numeric and bool arrays"],
    ),
    Case(
        "checkpoints",
        "failed_write",
        "a save that fails mid-write (disk full)",
        _failed_write,
        CheckpointError,
        ["saving checkpoint 2", "No space left on device", "partial folder was deleted", "[1]"],
    ),
    Case(
        "checkpoints",
        "truncated_file",
        "restore() after the array files were truncated to half",
        _restore_damaged(_truncate_half),
        CheckpointError,
        ["checkpoint 7 in", "ck"],
    ),
    Case(
        "checkpoints",
        "byte_flipped_file",
        "restore() after one bit of the array data flipped",
        _restore_damaged(_flip_one_bit_in_the_array_data),
        CheckpointError,
        ["checkpoint 7 in", "is corrupted", "do not match the checksums"],
    ),
    Case(
        "checkpoints",
        "unkept_step",
        "restore(ts, step=3) where only step 7 is kept",
        _restore_unkept_step,
        CheckpointError,
        ["no checkpoint 3 in", "the kept steps are [7]"],
    ),
    Case(
        "checkpoints",
        "other_architecture",
        "restore() into a train state of another network",
        _restore_other_architecture,
        CheckpointError,
        ["does not match the target (another architecture?)", "missing", "BatchNorm_0"],
    ),
    Case(
        "checkpoints",
        "planted_pickle",
        "a pickle planted as the index, the array data or a whole step",
        _planted_pickles,
        CheckpointError,
        ["checkpoint 4 in", "unreadable"],
    ),
    Case(
        "checkpoints",
        "killed_mid_save",
        "the process is SIGKILLed while writing checkpoint 2",
        _valid_killed_mid_save,
        valid="checkpoint 1 restores bit-identically; the killed save's temporary folder is "
        "removed",
    ),
    Case(
        "checkpoints",
        "killed_mid_run",
        "a fit with checkpoints is SIGKILLed mid-run, then started again",
        _valid_killed_mid_run,
        valid="it resumes from the last checkpoint and ends bit-identical to an uninterrupted run "
        "(tests/test_checkpoint.py::test_sigkilled_run_resumes_bit_identically, on-device form)",
    ),
]
