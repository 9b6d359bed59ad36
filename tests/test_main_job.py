"""The main job, experiments/train_mnist.py: a quick run on the real MNIST folder, the offline
fallback to scikit-learn's digits when no MNIST files can be found, a ``--data-dir`` without
MNIST (an error, never a fallback), and reruns with ``--checkpoint-every`` (resume, finished)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from experiments import train_mnist

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]

# Each run initialises and compiles the course CNN (~20 s of CPU on the 2-core machine).


def _check_outputs(out: Path, printed: str, epochs: int = 1) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("learning_curves.png", "filters.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert min(mpimg.imread(out / name).shape[:2]) > 50, name
    assert f"data: {metrics['data']}" in printed
    assert metrics["model"] == "course cnn" and metrics["params"] == 5386
    assert metrics["epochs"] == epochs
    assert metrics["history"]["epoch"] == list(range(1, epochs + 1))
    assert 0.0 <= metrics["final_val_accuracy"] <= 1.0
    assert metrics["best_val_accuracy"] == max(metrics["history"]["val_accuracy"])
    after = f"after {epochs} epoch{'' if epochs == 1 else 's'};"
    assert after in printed.strip().splitlines()[-1]
    return metrics


def _main_job(*argv: str) -> subprocess.CompletedProcess:
    """``python -m experiments.train_mnist ARGV`` in a subprocess, from the repository root."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "experiments.train_mnist", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_quick_run_on_the_mnist_folder(tmp_path, capsys, mnist_path):
    out = tmp_path / "run"
    summary = train_mnist.main(
        [
            "--data-dir",
            str(mnist_path),
            "--quick",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    metrics = _check_outputs(out, printed)
    # The course folder has t10k only; --quick trains on 2,000 of its first 5,000 images.
    assert metrics["data"] == (
        "mnist:t10k-only (train = 2000 random of t10k[0:5000] (seed 0), "
        f"val = test = t10k[5000:10000] (5000)) from {mnist_path}"
    )
    assert metrics["batch_size"] == 1000 and metrics["loop"] == "on-device"
    assert metrics["resumed_from_step"] is None and "resumed" not in printed
    assert summary["final_val_accuracy"] == metrics["final_val_accuracy"]
    # Two Adam steps of batch 1000 already beat chance (0.1) on real digits.
    assert metrics["final_val_accuracy"] > 0.15


def test_offline_without_data_falls_back_to_sklearn_digits(tmp_path, capsys, monkeypatch):
    # Nothing to find: no data dir, no $JCNN_DATA_DIR, an empty cache; --offline: no download.
    monkeypatch.delenv("JCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))
    out = tmp_path / "run"
    train_mnist.main(["--offline", "--quick", "--epochs", "1", "--host-loop", "--out", str(out)])
    captured = capsys.readouterr()
    metrics = _check_outputs(out, captured.out)
    assert metrics["data"] == (
        "sklearn-digits fallback (1797 8x8 digits resized to 28x28, permuted with seed 0: "
        "train = digits[0:1078] (1078), val = test = digits[1078:1797] (719))"
    )
    # The whole explanation, not its first line: where it looked, why no download, the fix.
    assert "MNIST is not available" in captured.err
    assert "could not find t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in any of" in (
        captured.err
    )
    assert f"{tmp_path / 'empty_cache' / 'jcnn' / 'mnist'}  (user cache)" in captured.err
    assert "Download was not attempted (download=False)." in captured.err
    assert "--data-dir <folder>" in captured.err
    assert metrics["loop"] == "host" and metrics["batch_size"] == 100
    # The progress bar's per-epoch line (progress is on by default).
    assert "epoch 1/1" in captured.out + captured.err


def test_a_data_dir_without_mnist_is_an_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    with pytest.raises(SystemExit) as info:
        train_mnist.main(["--data-dir", str(missing), "--out", str(tmp_path / "run")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: data_dir {missing} does not exist") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing written, nothing trained
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as info:
        train_mnist.main(["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert info.value.code == 2
    assert f"data_dir {tmp_path / 'empty'} holds no MNIST files" in capsys.readouterr().err
    # From the shell: status 2 and one line naming the folder, no traceback.
    done = _main_job("--data-dir", str(missing), "--out", str(tmp_path / "run"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: data_dir {missing} does not exist; " + (
        err.split("does not exist; ", 1)[1].strip()
    )
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_reruns_resume_with_the_whole_history_and_a_finished_run_exits_0(
    tmp_path, capsys, mnist_path
):
    out = tmp_path / "run"
    flags = ["--data-dir", str(mnist_path), "--quick", "--checkpoint-every", "5"]
    flags += ["--no-progress", "--out", str(out)]
    train_mnist.main([*flags, "--epochs", "1"])  # 2 steps per epoch: saved at each epoch's end
    first = _check_outputs(out, capsys.readouterr().out, epochs=1)
    # More epochs: resumes after epoch 1, says so, and reports (and plots) both epochs.
    train_mnist.main([*flags, "--epochs", "2"])
    printed = capsys.readouterr().out
    second = _check_outputs(out, printed, epochs=2)
    assert (
        f"fit: resumed from step 2 (epoch 1 of 2 done; continuing with epoch 2) in "
        f"{(out / 'checkpoints').absolute()}" in printed
    )
    assert second["resumed_from_step"] == 2
    assert second["history"]["val_accuracy"][0] == first["history"]["val_accuracy"][0]
    # The same command again, from the shell: nothing left to train, the result, status 0.
    done = _main_job(*flags, "--epochs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fit: resumed from step 4 (epoch 2 of 2 done, epochs=2): nothing left to train" in (
        done.stdout
    )
    third = _check_outputs(out, done.stdout, epochs=2)
    assert third["history"] == second["history"] and third["resumed_from_step"] == 4
    assert third["final_val_accuracy"] == second["final_val_accuracy"]
