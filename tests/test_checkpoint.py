"""jcnn.checkpoint: round trips, last-N, clear errors for other architectures and damaged files,
no pickles, and exact resumption of a run killed with SIGKILL (host loop and on-device loop).

The misuse cases (arguments, meta values, planted pickles, a save killed mid-write...) are in
the catalogue, tests/bad_inputs/cases_checkpoints.py, which reuses the helpers defined here."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from jcnn import layers as L
from jcnn import train as T
from jcnn.training.checkpoint import Checkpointer, CheckpointError

WORKER = Path(__file__).resolve().parent / "helpers" / "resume_worker.py"


def _net(width: int = 64) -> L.Layer:
    # Dense(64) on 16 inputs: a 4 KiB kernel, big enough for orbax to store it outside the
    # b-tree nodes (in its own data file).
    return L.serial(L.BatchNorm(), L.Flatten(), L.Dense(width), L.Relu(), L.Dense(3))


def _state(seed: int = 0, width: int = 64, opt=None) -> T.TrainState:
    return T.create_train_state(_net(width), (4, 4, 1), opt or optax.adam(1e-3), seed=seed)


def _trained_like(ts: T.TrainState, k: float) -> T.TrainState:
    """A state whose every leaf differs from a fresh one (as after ``k`` steps)."""
    bump = lambda a: a + k if a.dtype.kind == "f" else a  # noqa: E731
    return ts._replace(
        params=jax.tree.map(bump, ts.params),
        state=jax.tree.map(bump, ts.state),
        opt_state=jax.tree.map(bump, ts.opt_state),
        step=ts.step + int(k),
    )


def _identical(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)
    )


META = {"epoch": 0, "index": 0}


# --------------------------------------------------------------------------- round trip


def test_round_trip_is_bit_identical_with_meta(tmp_path):
    saved = _trained_like(_state(seed=0), 3)
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(3, saved, meta={"epoch": 2, "index": 5})
    fresh = _state(seed=1)
    assert not _identical(fresh, saved)
    restored, meta = Checkpointer(tmp_path / "ck").restore(fresh)
    assert isinstance(restored, T.TrainState)
    assert jax.tree.structure(restored) == jax.tree.structure(saved)  # optax NamedTuples too
    assert _identical(restored, saved)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(restored))
    assert meta == {"epoch": 2, "index": 5}
    assert all(type(v) is int for v in meta.values())
    assert ckpt.latest_step() == 3 and ckpt.all_steps() == [3]
    ckpt.close()


def test_restore_without_meta_argument_as_in_the_docstring_example(tmp_path):
    """The class docstring restores with ``ckpt.restore(ts_template)`` after saving a meta dict."""
    saved = _trained_like(_state(), 1)
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(1, saved, meta={"epoch": 1, "index": 0})
    restored, meta = ckpt.restore(_state(seed=1))
    assert _identical(restored, saved)
    assert meta == {"epoch": 1, "index": 0}


def test_keeps_the_last_n_and_restores_any_kept_step(tmp_path):
    ckpt = Checkpointer(tmp_path / "ck", keep=2)
    base = _state()
    for step in range(1, 6):
        ckpt.save(step, _trained_like(base, step), meta={"epoch": step, "index": 0})
    assert ckpt.all_steps() == [4, 5] and ckpt.latest_step() == 5
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == ["4", "5"]
    latest, meta = ckpt.restore(base)
    assert _identical(latest, _trained_like(base, 5)) and meta["epoch"] == 5
    older, meta = ckpt.restore(base, step=4)
    assert _identical(older, _trained_like(base, 4)) and meta["epoch"] == 4
    with pytest.raises(CheckpointError):
        ckpt.restore(base, step=1)  # deleted


# --------------------------------------------------------------------------- errors


def test_no_checkpoint_is_a_checkpoint_error(tmp_path):
    ckpt = Checkpointer(tmp_path / "empty")
    assert ckpt.latest_step() is None and ckpt.all_steps() == []
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpt.restore(_state())


@pytest.mark.parametrize(
    "other, expected",
    [
        # Same layers, other width: the message names the array and both shapes.
        (lambda: _state(width=32), [r"another architecture", r"Dense_0/kernel", r"\(16, 64\)"]),
        # Other layers: the message names what is missing.
        (
            lambda: T.create_train_state(
                L.serial(L.Flatten(), L.Dense(3)), (4, 4, 1), optax.adam(1e-3)
            ),
            [r"another architecture", r"BatchNorm_0"],
        ),
    ],
)
def test_restore_into_another_architecture_says_what_differs(tmp_path, other, expected):
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(1, _state(), meta={"epoch": 0, "index": 0})
    with pytest.raises(CheckpointError) as info:
        ckpt.restore(other())
    for pattern in expected:
        assert re.search(pattern, str(info.value)), str(info.value)


def _data_files(step_dir: Path) -> list[Path]:
    """The files orbax/tensorstore writes array data and b-tree nodes to: ``.../d/<hash>``."""
    found = []
    for root, _, files in os.walk(step_dir):
        if os.path.basename(root) == "d":
            found += [Path(root) / f for f in files]
    return found


def _truncate_half(step_dir: Path) -> None:
    for f in _data_files(step_dir):
        os.truncate(f, f.stat().st_size // 2)


def _garble_all(step_dir: Path) -> None:
    for f in _data_files(step_dir):
        data = bytearray(f.read_bytes())
        for i in range(len(data) // 4, 3 * len(data) // 4):
            data[i] ^= 0xFF
        f.write_bytes(bytes(data))


def _flip_one_bit_in_the_array_data(step_dir: Path) -> None:
    # The largest data file holds the 16x64 float32 kernel's bytes (the b-tree nodes are small).
    biggest = max(_data_files(step_dir), key=lambda f: f.stat().st_size)
    assert biggest.stat().st_size > 2000
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0x01
    biggest.write_bytes(bytes(data))


def _delete_metadata(step_dir: Path) -> None:
    for root, _, files in os.walk(step_dir):
        for name in files:
            if name == "_METADATA":
                os.remove(Path(root) / name)


def _empty_data_files(step_dir: Path) -> None:
    for f in _data_files(step_dir):
        os.truncate(f, 0)


@pytest.mark.parametrize(
    "damage",
    [
        _truncate_half,
        _empty_data_files,
        _garble_all,
        _delete_metadata,
        _flip_one_bit_in_the_array_data,
    ],
)
def test_damaged_checkpoint_is_a_checkpoint_error(tmp_path, damage):
    saved = _trained_like(_state(), 7)
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(7, saved, meta={"epoch": 1, "index": 0})
    ckpt.close()
    step_dir = tmp_path / "ck" / "7"
    assert _data_files(step_dir)
    damage(step_dir)
    try:
        restored, _ = Checkpointer(tmp_path / "ck").restore(_state(seed=1))
    except CheckpointError as err:
        assert "checkpoint 7" in str(err)
        return
    # No error: the restore must then at least be exact, never silent garbage.
    assert _identical(restored, saved), f"{damage.__name__}: restored different values, no error"


def test_restores_checkpoints_written_before_json_meta(tmp_path):
    """Checkpoints of the earlier layout (meta as arrays only, no meta_json) still restore."""
    import orbax.checkpoint as ocp

    saved = _trained_like(_state(), 4)
    item = {
        "train_state": saved,
        "meta": {"epoch": np.asarray(3), "index": np.asarray(2)},
        "checksums": np.asarray(
            [zlib.crc32(np.asarray(leaf).tobytes()) for leaf in jax.tree.leaves(saved)],
            dtype=np.uint32,
        ),
    }
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
    with ocp.CheckpointManager(
        tmp_path / "old", options=options, item_handlers=ocp.StandardCheckpointHandler()
    ) as manager:
        manager.save(4, args=ocp.args.StandardSave(item))
    restored, meta = Checkpointer(tmp_path / "old").restore(_state(seed=1))
    assert _identical(restored, saved)
    assert meta == {"epoch": 3, "index": 2} and all(type(v) is int for v in meta.values())


def test_a_failed_save_leaves_a_usable_checkpointer(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(1, _state())
    real_save = ckpt.manager.save

    def disk_full(step, *args, **kwargs):  # what orbax leaves when a write fails midway
        partial = ckpt.directory / f"{step}.orbax-checkpoint-tmp-1234"
        (partial / "state").mkdir(parents=True)
        (partial / "state" / "chunk").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.manager, "save", disk_full)
    with pytest.raises(CheckpointError, match="saving checkpoint 2.*No space left.*intact"):
        ckpt.save(2, _state())
    monkeypatch.setattr(ckpt.manager, "save", real_save)
    assert ckpt.all_steps() == [1] and sorted(os.listdir(tmp_path / "ck")) == ["1"]
    ckpt.save(2, _trained_like(_state(), 2), meta={"note": "retried"})  # the same step again
    restored, meta = Checkpointer(tmp_path / "ck").restore(_state())
    assert _identical(restored, _trained_like(_state(), 2)) and meta == {"note": "retried"}


def test_nothing_is_pickled(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path / "ck")
    saved = _trained_like(_state(), 2)
    ckpt.save(2, saved, meta={"epoch": 1, "index": 0})
    names = [f for _, _, files in os.walk(tmp_path / "ck") for f in files]
    assert names and not [n for n in names if n.endswith((".pkl", ".pickle"))]

    def no_unpickling(*args, **kwargs):
        raise AssertionError("restore unpickled something")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    restored, _ = Checkpointer(tmp_path / "ck").restore(_state(seed=3))
    assert _identical(restored, saved)


# --------------------------------------------------------------------------- kill and resume


def _committed_steps(directory: Path) -> list[int]:
    """Steps orbax has committed (a step folder gets its final name only when complete)."""
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _worker(ckpt: Path, out: Path, log: Path, host_loop: bool) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, str(WORKER), "--ckpt", str(ckpt), "--out", str(out)]
    if host_loop:
        cmd.append("--host-loop")
    with open(log, "w") as f:
        return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert rc == 0, log.read_text()[-3000:]


# 3 worker processes of ~12 s CPU each (import, init, compile, 9 saves): the on-device variant
# runs by default, the host-loop one with `-m slow`.
@pytest.mark.parametrize(
    "host_loop",
    [pytest.param(True, marks=pytest.mark.slow), False],
    ids=["host-loop", "on-device"],
)
def test_sigkilled_run_resumes_bit_identically(tmp_path, host_loop):
    # An uninterrupted reference run and the run to be killed start together.
    ref = _worker(tmp_path / "ref_ckpt", tmp_path / "ref.npz", tmp_path / "ref.log", host_loop)
    ckpt = tmp_path / "ckpt"
    victim = _worker(ckpt, tmp_path / "final.npz", tmp_path / "victim.log", host_loop)
    deadline = time.monotonic() + 300
    # Kill once a checkpoint beyond the first (step 2) is committed: steps 4.. of 18.
    while not any(step >= 4 for step in _committed_steps(ckpt)):
        if victim.poll() is not None:
            _wait(ref, tmp_path / "ref.log")
            pytest.fail(
                "worker exited before it could be killed:\n"
                + (tmp_path / "victim.log").read_text()[-3000:]
            )
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.02)
    victim.kill()  # SIGKILL on POSIX: no cleanup, no flushing
    victim.wait()
    assert not (tmp_path / "final.npz").exists(), "the worker finished before the kill"
    killed_at = _committed_steps(ckpt)
    assert killed_at and max(killed_at) < 18

    resumed = _worker(ckpt, tmp_path / "final.npz", tmp_path / "resumed.log", host_loop)
    _wait(resumed, tmp_path / "resumed.log")
    _wait(ref, tmp_path / "ref.log")
    text = (tmp_path / "resumed.log").read_text()
    start = int(text.split("resuming from step ")[1].split()[0])
    assert 4 <= start < 18, text[-2000:]

    got, want = np.load(tmp_path / "final.npz"), np.load(tmp_path / "ref.npz")
    assert sorted(got.files) == sorted(want.files)
    assert int(want["step"]) == 18
    different = [k for k in want.files if not np.array_equal(got[k], want[k])]
    assert not different, f"resumed from step {start}: {different} differ from the reference"
