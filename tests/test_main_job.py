"""The main job, experiments/train_mnist.py: a quick run on the real MNIST folder, and the
offline fallback to scikit-learn's digits when no MNIST files can be found."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg

from experiments import train_mnist

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Each run initialises and compiles the course CNN (~20 s of CPU on the 2-core machine).


def _check_outputs(out: Path, printed: str) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("learning_curves.png", "filters.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert min(mpimg.imread(out / name).shape[:2]) > 50, name
    assert f"data: {metrics['data']}" in printed
    assert metrics["model"] == "course cnn" and metrics["params"] == 5386
    assert metrics["epochs"] == 1 and metrics["history"]["epoch"] == [1]
    assert 0.0 <= metrics["final_val_accuracy"] <= 1.0
    assert metrics["best_val_accuracy"] == max(metrics["history"]["val_accuracy"])
    assert "final validation accuracy" in printed
    return metrics


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
    assert metrics["data"].startswith("mnist:t10k-only")  # the course folder has t10k only
    assert "subsampled to 2000" in metrics["data"]
    assert metrics["batch_size"] == 1000 and metrics["loop"] == "on-device"
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
    assert metrics["data"].startswith("sklearn-digits fallback")
    assert "MNIST is not available" in captured.err
    assert metrics["loop"] == "host" and metrics["batch_size"] == 100
    # The progress bar's per-epoch line (progress is on by default).
    assert "epoch 1/1" in captured.out + captured.err
