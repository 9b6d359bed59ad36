"""The GPU/TPU check, ``python -m bench --device``: a quick run on the CPU and its arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bench import device

REPO = Path(__file__).resolve().parents[1]


def test_quick_device_check_on_cpu_reports_every_row(tmp_path):
    out = tmp_path / "device.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--device", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = out.read_text()
    report = json.loads(out.with_suffix(".json").read_text())
    assert md in proc.stdout  # the table is printed too
    if report["platform"] == "cpu":
        assert device.CPU_LINE in md
    assert "| TFLOP/s |" in md  # the column
    assert "XLA cost analysis of the compiled jcnn program" in md
    assert report["specs"]["W2"]["batch"] > 0 and report["versions"]["jax"]
    rows = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]): ln for ln in md.splitlines()
            if ln.startswith("| W")}  # fmt: skip
    assert set(rows) == {(w, f) for w in ("W2", "W3") for f in ("jcnn", "linen", "torch")}
    for wl in ("W2", "W3"):
        fws = report["workloads"][wl]["frameworks"]
        assert report["workloads"][wl]["flops"] > 0
        for fw in ("jcnn", "linen"):
            r = fws[fw]
            assert len(r["times"]) == 2 and all(t > 0 for t in r["times"]), r
            assert r["median_s"] > 0 and r["tflops_per_s"] > 0 and r["compile_s"] > 0
        assert fws["jcnn"]["ratio_to_jcnn"] == 1.0
        torch = fws["torch"]
        assert "skip" in torch or torch["median_s"] > 0
        if "skip" in torch:
            assert "skipped: " in rows[(wl, "torch")]


def test_tflops_arithmetic():
    assert device.tflops(2e12, 0.5) == pytest.approx(4.0)
    assert device.tflops(3.3e9, 1e-3) == pytest.approx(3.3)
    assert device.tflops(None, 1.0) is None and device.tflops(1e9, 0.0) is None


def _report(platform="gpu"):
    def fw(times, flops, items=128, **kw):
        return {"times": times, "flops": flops, "items": items, "compile_s": 1.0,
                "platform": platform, "device_kind": "H", **kw}  # fmt: skip

    return {
        "command": "python -m bench --device",
        "warmup": 1,
        "steps": 3,
        "specs": {"W2": {"name": "W2", "batch": 128, "size": 32}},
        "platform": platform,
        "device_kind": "H",
        "versions": {"jax": "0"},
        "wall_s": 1.0,
        "workloads": {"W2": {"frameworks": {
            "jcnn": fw([0.010, 0.012, 0.011], 1.1e12),  # median 11 ms
            "linen": fw([0.022, 0.020, 0.030], 1.3e12),  # median 22 ms, its own count ignored
            "torch": {"skip": "torch not importable"},
        }}},
    }  # fmt: skip


def test_one_flop_count_per_workload_and_ratios():
    report = _report()
    device.summarise(report)
    wl = report["workloads"]["W2"]
    jc, ln = wl["frameworks"]["jcnn"], wl["frameworks"]["linen"]
    assert wl["flops"] == 1.1e12 and "jcnn" in wl["flops_source"]
    assert jc["median_s"] == 0.011 and ln["median_s"] == 0.022
    assert jc["tflops_per_s"] == pytest.approx(100.0)  # 1.1e12 / 11 ms
    assert ln["tflops_per_s"] == pytest.approx(50.0)  # jcnn's count, not linen's 1.3e12
    assert ln["ratio_to_jcnn"] == pytest.approx(2.0) and jc["ratio_to_jcnn"] == 1.0
    assert (ln["min_s"], ln["max_s"]) == (0.020, 0.030)
    assert jc["images_per_s"] == pytest.approx(128 / 0.011)
    md = device.markdown(report)
    assert device.CPU_LINE not in md
    assert "| W2 | linen | 128 | 1.0 | 22 | 20-30 | 5818 | 50 | 2.00 | - |" in md
    assert "| W2 | torch | 128 | skipped: torch not importable |" in md


def test_flop_source_falls_back_and_cpu_is_flagged():
    report = _report(platform="cpu")
    del report["workloads"]["W2"]["frameworks"]["jcnn"]["flops"]
    device.summarise(report)
    assert report["workloads"]["W2"]["flops"] == 1.3e12
    assert "linen" in report["workloads"]["W2"]["flops_source"]
    assert device.CPU_LINE in device.markdown(report)
    assert device.shared_flops({"torch": {"flops": 5.0}}) == (5.0, device.FLOP_SOURCES[2][1])
    assert device.shared_flops({"torch": {"skip": "x"}}) == (None, None)


def test_torch_is_skipped_without_cuda_or_without_a_jax_accelerator(monkeypatch):
    fake = types.ModuleType("torch")
    fake.__version__ = "0.fake"
    fake.cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "torch", fake)
    runner, why = device._torch_runner({"name": "W2"}, "gpu")
    assert runner is None and "torch.cuda.is_available() is False" in why
    fake.cuda = types.SimpleNamespace(is_available=lambda: True)
    runner, why = device._torch_runner({"name": "W2"}, "cpu")
    assert runner is None and "JAX sees no GPU" in why


def test_usage_errors_and_defaults():
    with pytest.raises(SystemExit):
        device.parse(["--frameworks", "tensorflow"])
    with pytest.raises(SystemExit):
        device.parse(["--workloads", "W1"])
    args = device.parse(["--frameworks", "torch,jcnn", "--workloads", "w3"])
    assert args.frameworks == ["jcnn", "torch"] and args.workloads == ["W3"]
    assert (args.steps, args.warmup) == (20, 5)
    quick = device.parse(["--quick"])
    assert (quick.steps, quick.warmup, quick.workloads) == (2, 1, ["W2", "W3"])


def test_the_benchmarks_page_carries_the_section_its_generator_writes():
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert "\n".join(device.docs_section()) in page
