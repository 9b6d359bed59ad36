"""Smoke test of the data benchmark: ``python -m bench.data --quick`` on tiny JPEGs, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import data

REPO = Path(__file__).resolve().parents[1]


def test_quick_data_benchmark_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.data", "--quick", "--size", "64x48", "--images", "16",
         "--batch", "4", "--workers", "0", "--crop", "32", "--torch-python", "none",
         "--cache", str(tmp_path / "cache"), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| pipeline | workers |" in proc.stdout
    report = json.loads(out.read_text())
    assert report["images"] == 16 and report["size"] == [64, 48] and report["batch"] == 4
    jc, tv = report["rows"]
    assert (jc["pipeline"], jc["workers"], len(jc["runs"])) == ("jcnn", 0, 1)
    run = jc["runs"][0]
    assert run["images"] == 16 and len(run["epochs_s"]) == 3  # --timed 3 (default)
    assert jc["images_per_s"] > 0 and jc["first_batch_s"] > 0 and jc["startup_s"] >= 0
    assert tv["pipeline"] == "torchvision" and "skip" in tv
    # the generated folder is cached: a second call finds it as it is
    folder = Path(report["folder"])
    assert data.make_folder(tmp_path / "cache", 16, (64, 48)) == folder
    assert len(list(folder.rglob("*.jpg"))) == 16


def test_block_figures_separate_startup_from_throughput() -> None:
    # 2 s of start-up, then 100 images/s: a first epoch of 512 images in 7.12 s
    run = {"images": 512, "first_epoch_s": 7.12, "epochs_s": [5.0, 5.24], "first_batch_s": 2.5}
    got = data.block_figures(run)
    assert got["images_per_s"] == pytest.approx(100.0)
    assert got["startup_s"] == pytest.approx(2.0)
    assert got["first_batch_s"] == 2.5


def test_docs_section_is_kept_by_a_page_rewrite() -> None:
    report = {
        "images": 16, "size": [64, 48], "mean_jpeg_kb": 3.0, "batch": 4, "crop": 32, "reps": 1,
        "nproc": 2, "load": ["0 0 0", "0 0 0"],
        "rows": [{"pipeline": "torchvision", "workers": 0, "batch": 4, "skip": "not installed"}],
    }  # fmt: skip
    section = data.docs_section(report)
    text = "\n".join(section)
    page = "\n".join(["# Benchmarks", "", text, "## The GPU / TPU check", "", "text"])
    assert "\n".join(data.kept_section(page)) == text
    assert data.kept_section("# Benchmarks\n") == []
