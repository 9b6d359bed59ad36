"""Runs of experiments/receptive_fields.py (analytic: no quick mode) and a quick-mode run of
experiments/localization.py.

Each runs in-process through ``main(argv)`` with ``--out`` in a temporary folder and must write
its ``results.json`` (equal to what ``main`` returned) and its PNG. The localization run uses the
MNIST test files when present, else scikit-learn's digits (``--offline`` fallback).
"""

from __future__ import annotations

import json

import pytest

from conftest import mnist_dir
from experiments import common, localization, receptive_fields

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _written(out, summary):
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(summary, default=common._plain))
    return written


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        localization.main(["--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_receptive_fields_takes_only_out(capsys):
    with pytest.raises(SystemExit) as exit_info:
        receptive_fields.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text
    for flag in ("--data-dir", "--seed", "--offline", "--quick", "--no-progress"):
        assert flag not in text
    for argv in (["--data-dir", "x"], ["--seed", "1"], ["--offline"], ["--quick"]):
        with pytest.raises(SystemExit) as exit_info:
            receptive_fields.main(argv)
        assert exit_info.value.code == 2


def test_receptive_fields(tmp_path, capsys):
    summary = receptive_fields.main(["--out", str(tmp_path)])
    written = _written(tmp_path, summary)
    assert (tmp_path / "receptive_fields.png").read_bytes()[:8] == PNG_MAGIC
    nets = written["networks"]
    # Hand-derived: course CNN 5, 6, 10, 12; AlexNet pool5 195 (jump 32); VGG-19 pool5 268.
    assert [r["rf"][0] for r in nets["course CNN"]["layers"]] == [5, 6, 10, 12]
    assert nets["AlexNet"]["final_rf"] == [195, 195] and nets["AlexNet"]["final_jump"] == [32, 32]
    assert nets["VGG-19"]["final_rf"] == [268, 268] and nets["VGG-19"]["conv_layers"] == 16
    out = capsys.readouterr().out
    assert "AlexNet, input (224, 224, 3):" in out
    assert out.strip().splitlines()[-1].startswith("final receptive field: course CNN 12 px")


def test_localization_quick(tmp_path, capsys):
    folder = mnist_dir()
    data = ["--data-dir", str(folder)] if folder.is_dir() else []
    summary = localization.main(
        [*data, "--quick", "--offline", "--no-progress", "--out", str(tmp_path)]
    )
    written = _written(tmp_path, summary)
    assert (tmp_path / "localization.png").read_bytes()[:8] == PNG_MAGIC
    assert written["train_canvases"] == 600 and written["val_canvases"] == 200
    assert written["params"] == 320_271  # 160 + 4,640 + 18,496 + 295,040 + 1,935
    assert written["history"]["epoch"] == [1]
    for key in ("accuracy", "presence_accuracy", "class_accuracy", "mean_iou"):
        assert 0.0 <= written["val"][key] <= 1.0
    assert 0.1 < written["val_empty_fraction"] < 0.3
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("localization: val accuracy")
