"""Smoke test of the benchmark: ``python -m bench --quick --frameworks jcnn,stax`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_runs_and_reports(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--frameworks", "jcnn,stax", "--reps", "3",
         "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "x jcnn" in proc.stdout  # the table header
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    assert (tmp_path / "benchmarks.png").stat().st_size > 0
    assert set(report["workloads"]) == {"W1-128", "W4"}
    for wl in report["workloads"].values():
        for fw in ("jcnn", "stax"):
            r = wl["frameworks"][fw]
            assert len(r["times"]) == 3 and r["median_s"] > 0 and r["compile_s"] > 0
        assert wl["frameworks"]["jcnn"]["ratio_to_jcnn"] == 1.0
    assert report["workloads"]["W1-128"]["flops"] > 0
    assert report["ceiling_gflops"]["jax"] > 0


def test_unknown_names_are_usage_errors():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--frameworks", "tensorflow"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "unknown framework" in proc.stderr


def test_zoo_compile_reports_each_phase(capsys) -> None:
    from bench import zoo_compile

    zoo_compile.main(["mobilenet_v2", "--size", "32", "--batch", "2"])
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("mobilenet_v2")]
    assert len(row) == 1 and all(float(v) > 0 for v in row[0].split()[1:])
    with pytest.raises(SystemExit):
        zoo_compile.main(["not_a_model"])
