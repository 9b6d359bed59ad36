"""SIGTERM in the middle of an epoch: a clean exit with a checkpoint, and an exact resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "helpers" / "preempt_worker.py"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _run(checkpoint_dir: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WORKER), str(checkpoint_dir), str(out)],
        env=_env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_sigterm_mid_epoch_saves_and_the_rerun_resumes_bit_for_bit(tmp_path):
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(stopped), str(tmp_path / "never.npz")],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()  # the first chunk is done: the run is mid-epoch 1
        assert first.startswith("chunk "), first + proc.stderr.read()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - sent < 30  # a TPU VM's grace period
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert "stopped by SIGTERM; saved a checkpoint at step" in err, err
    saved = sorted(int(p.name) for p in stopped.iterdir() if p.name.isdigit())
    assert saved and 0 < saved[-1] < 96, saved  # mid-run: not the end of the last epoch
    assert not (tmp_path / "never.npz").exists()

    resumed = _run(stopped, tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = _run(tmp_path / "straight", tmp_path / "straight.npz")
    assert straight.returncode == 0, straight.stderr[-3000:]
    a, b = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "straight.npz")
    assert int(a["step"]) == int(b["step"]) == 96
    for name in b.files:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)  # bit for bit


def test_sigterm_without_checkpoint_dir_says_what_is_lost(tmp_path):
    code = (
        "import numpy as np, jcnn; from jcnn import layers as L\n"
        "from jcnn.training import Callback\n"
        "class A(Callback):\n"
        "    def on_chunk_end(self, c): print('chunk', flush=True)\n"
        "x = np.zeros((4096, 4), np.float32); y = np.zeros(4096, np.int32)\n"
        "jcnn.fit(L.serial(L.Dense(2)), (x, y), epochs=50, batch_size=8, callbacks=[A()],"
        " progress=False)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().startswith("chunk")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "NOTHING was saved" in err and "checkpoint_dir" in err, err
