"""The GPU/TPU check, ``python -m bench --device``: a quick run on the CPU and its arithmetic."""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import jcnn
from bench import device
from bench.workloads import common, jcnn_wl
from jcnn import models

REPO = Path(__file__).resolve().parents[1]
ROWS = {(w, f) for w in ("W2", "W3") for f in ("jcnn", "linen", "torch")} | {
    ("W4", f) for f in device.FRAMEWORKS
}


def _macs(net, size: int) -> int:
    return jcnn.count_macs(net, (size, size, 3))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[str, dict, str]:
    """``python -m bench --device --quick``: its markdown, its JSON and its stdout."""
    out = tmp_path_factory.mktemp("device") / "device.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--device", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out.read_text(), json.loads(out.with_suffix(".json").read_text()), proc.stdout


def test_quick_device_check_on_cpu_reports_every_row(quick_run):
    md, report, stdout = quick_run
    assert md in stdout  # the table is printed too
    if report["platform"] == "cpu":
        assert device.CPU_LINE in md
    assert "| TFLOP/s | MFU | x jcnn | XLA MB | peak MB |" in md  # the columns
    assert "jcnn.count_macs" in md and "3 x 2 x " in md  # where the FLOPs come from
    assert report["specs"]["W2"]["batch"] > 0 and report["versions"]["jax"]
    assert report["specs"]["W4"]["name"] == "R50" and "W4 the ResNet-50" in md
    rows = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]): ln for ln in md.splitlines()
            if ln.startswith("| W")}  # fmt: skip
    assert set(rows) == ROWS
    for wl in ("W2", "W3", "W4"):
        fws = report["workloads"][wl]["frameworks"]
        assert report["workloads"][wl]["flops"] > 0
        for fw in ("jcnn", "linen"):
            r = fws[fw]
            assert len(r["times"]) == 2 and all(t > 0 for t in r["times"]), r
            assert r["median_s"] > 0 and r["tflops_per_s"] > 0 and r["compile_s"] > 0
            assert r["xla_mb"] > 0 and r["xla_memory"]["total"] > 0  # XLA's analysis, even on CPU
            assert "peak_mb" in r and (r["peak_mb"] is None) == (report["platform"] == "cpu")
        assert fws["jcnn"]["ratio_to_jcnn"] == 1.0
        for fw in device.TORCH_FRAMEWORKS:
            if (wl, fw) not in ROWS:
                continue
            torch = fws[fw]
            assert "skip" in torch or torch["median_s"] > 0
            if "skip" in torch:
                assert "skipped: " in rows[(wl, fw)]


def test_quick_run_tflops_are_the_analytic_count_over_the_median(quick_run):
    md, report, _ = quick_run
    rate = report["matmul"]["tflops_per_s"]
    assert rate > 0 and report["matmul"]["n"] == 512
    assert "bfloat16 matmul rate: **" in md
    for name, wl in report["workloads"].items():
        bf16 = report["specs"][name].get("precision") == "mixed_bfloat16"
        for fw in ("jcnn", "linen"):
            r = wl["frameworks"][fw]
            assert r["median_s"] == statistics.median(r["times"])
            assert r["tflops_per_s"] == pytest.approx(wl["flops"] / r["median_s"] / 1e12)
            assert r["flops_reported"] != wl["flops"]  # XLA's own count is not the one used
            if bf16:
                assert r["mfu"] == pytest.approx(r["tflops_per_s"] / rate)
            else:
                assert r["mfu"] is None


def test_quick_run_flop_counts_follow_count_macs(quick_run):
    _, report, _ = quick_run
    specs, wls = report["specs"], report["workloads"]
    w2, w3, w4 = specs["W2"], specs["W3"], specs["W4"]
    macs2 = _macs(models.cifar_resnet18(num_classes=10), w2["size"])
    macs3 = _macs(models.resnet18(num_classes=1000), w3["size"])
    macs4 = _macs(jcnn_wl.model(w4), w4["size"])  # --quick: one bottleneck per stage
    assert wls["W2"]["flops"] == 3 * 2 * macs2 * w2["batch"]  # training step
    assert wls["W3"]["flops"] == 2 * macs3 * w3["batch"]  # inference
    assert wls["W4"]["flops"] == 3 * 2 * macs4 * w4["batch"]
    assert wls["W4"]["macs_per_example"] == macs4


def test_full_size_flop_counts():
    specs = device.device_specs(quick=False, w3_size=112)
    w2, macs2 = device.analytic_flops(specs["W2"])
    assert macs2 == _macs(models.cifar_resnet18(num_classes=10), 32) == 555_422_720
    assert w2 == 3 * 2 * macs2 * 128 == pytest.approx(426.6e9, rel=1e-3)  # the issue's ~426
    w3, macs3 = device.analytic_flops(specs["W3"])
    assert w3 == 2 * macs3 * 256 and macs3 == _macs(models.resnet18(num_classes=1000), 112)
    w4, macs4 = device.analytic_flops(specs["W4"])
    assert macs4 == _macs(models.resnet50(num_classes=1000), 224) == 4_089_184_256
    assert w4 == 3 * 2 * macs4 * 256


def test_device_w4_is_its_own_workload_and_the_cpu_bench_keeps_its_w4():
    full, quick = device.device_specs(False), device.device_specs(True)
    assert full["W4"] == {"name": "R50", "batch": 256, "size": 224, "blocks": [3, 4, 6, 3],
                          "precision": "mixed_bfloat16", "steps": 1}  # fmt: skip
    assert quick["W4"]["name"] == "R50" and quick["W4"]["batch"] <= 4
    assert common.specs(False)["W4"]["name"] == "W4"  # the CPU bench's epoch of W1
    assert (full["W2"], full["W3"]) == (common.specs(False)["W2"], common.specs(False)["W3"])
    assert device.runs_on("torch_compile", "W4") and not device.runs_on("torch_compile", "W2")
    assert all(device.runs_on(f, w) for f in ("jcnn", "linen", "torch") for w in device.WORKLOADS)


def test_resnet50_peers_have_resnet50s_parameters():
    from bench.workloads import linen_wl

    spec = device.device_specs(False)["W4"]
    net = jcnn_wl.model(spec)
    assert jcnn.count_params(net, (224, 224, 3)) == 25_557_032
    model = linen_wl.ResNet50(1000, tuple(spec["blocks"]), jnp.bfloat16)
    init = functools.partial(model.init, train=False)
    shapes = jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    params = shapes["params"]
    assert sum(x.size for x in jax.tree.leaves(params)) == 25_557_032
    assert {x.dtype for x in jax.tree.leaves(shapes)} == {jnp.dtype("float32")}  # param_dtype


def test_torch_peers_on_the_cpu_when_torch_is_installed():
    torch = pytest.importorskip("torch")
    from bench.workloads import torch_wl

    assert sum(p.numel() for p in torch_wl.ResNet50(1000).parameters()) == 25_557_032
    spec = device.device_specs(quick=True)["W4"]
    runner = device.TorchCudaRunner(spec, device="cpu")  # the device check's runner, on the CPU
    counted = runner.compile()  # one step under FlopCounterMode
    runner.run(1)
    inner = runner._inner
    assert inner.x.is_contiguous(memory_format=torch.channels_last) and inner.bf16
    assert {p.dtype for p in inner.model.parameters()} == {torch.float32}
    # FlopCounterMode leaves out the first convolution's input gradient: a little under 3x
    assert counted == pytest.approx(device.analytic_flops(spec)[0], rel=0.05)


def test_xla_memory_reads_the_compiled_analysis():
    f = jax.jit(lambda a, b: (jnp.tanh(a @ b) @ b, b), donate_argnums=(1,))
    x = jnp.ones((64, 64))
    mem = device.xla_memory(f.lower(x, x).compile())
    assert mem is not None and mem["argument"] == 2 * 64 * 64 * 4
    assert mem["total"] == mem["argument"] + mem["output"] - mem["alias"] + mem["temp"]
    assert device.xla_memory(None) is None and device.xla_memory(object()) is None


def test_tflops_arithmetic():
    assert device.tflops(2e12, 0.5) == pytest.approx(4.0)
    assert device.tflops(3.3e9, 1e-3) == pytest.approx(3.3)
    assert device.tflops(None, 1.0) is None and device.tflops(1e9, 0.0) is None


def _report(platform="gpu"):
    def fw(times, flops, items=128, **kw):
        return {"times": times, "flops_reported": flops, "items": items, "compile_s": 1.0,
                "platform": platform, "device_kind": "H", "peak_mb": 900.0,
                "xla_memory": {"total": 300 * device.MB}, **kw}  # fmt: skip

    return {
        "command": "python -m bench --device",
        "warmup": 1,
        "steps": 3,
        "specs": {"W2": {"name": "W2", "batch": 128, "size": 32},
                  "W4": {"name": "R50", "batch": 256, "size": 224, "blocks": [3, 4, 6, 3],
                         "precision": "mixed_bfloat16"}},
        "matmul": {"n": 8192, "times": [1e-3] * 5, "tflops_per_s": 500.0, "platform": platform,
                   "device_kind": "H"},
        "platform": platform,
        "device_kind": "H",
        "versions": {"jax": "0"},
        "wall_s": 1.0,
        "workloads": {
            "W2": {"flops": 1.1e12, "macs_per_example": 1, "frameworks": {
                "jcnn": fw([0.010, 0.012, 0.011], 2.1e9),  # median 11 ms
                "linen": fw([0.022, 0.020, 0.030], 1.3e12),  # median 22 ms, its count ignored
                "torch": {"skip": "torch not importable"},
            }},
            "W4": {"flops": 5e12, "macs_per_example": 1, "frameworks": {
                "jcnn": fw([0.05] * 3, None, items=256),  # 100 TFLOP/s: 20% of 500
                "torch_compile": fw([0.04] * 3, None, 256, xla_memory=None),  # 125 TFLOP/s: 25%
            }},
        },
    }  # fmt: skip


def test_one_flop_count_per_workload_ratios_mfu_and_memory():
    report = _report()
    device.summarise(report)
    wl = report["workloads"]["W2"]
    jc, ln = wl["frameworks"]["jcnn"], wl["frameworks"]["linen"]
    assert jc["median_s"] == 0.011 and ln["median_s"] == 0.022
    assert jc["tflops_per_s"] == pytest.approx(100.0)  # 1.1e12 / 11 ms
    assert ln["tflops_per_s"] == pytest.approx(50.0)  # the workload's count, not linen's 1.3e12
    assert ln["ratio_to_jcnn"] == pytest.approx(2.0) and jc["ratio_to_jcnn"] == 1.0
    assert (ln["min_s"], ln["max_s"]) == (0.020, 0.030)
    assert jc["images_per_s"] == pytest.approx(128 / 0.011)
    assert jc["mfu"] is None and jc["xla_mb"] == 300.0  # float32: no MFU
    w4 = report["workloads"]["W4"]["frameworks"]
    assert w4["jcnn"]["mfu"] == pytest.approx(0.2) and w4["torch_compile"]["mfu"] == 0.25
    assert w4["torch_compile"]["ratio_to_jcnn"] == pytest.approx(0.8)
    md = device.markdown(report)
    assert device.CPU_LINE not in md
    assert "| W2 | linen | 128 | 1.0 | 22 | 20-30 | 5818 | 50 | - | 2.00 | 300 | 900 |" in md
    assert "| W2 | torch | 128 | skipped: torch not importable |" in md
    assert "| W4 | jcnn | 256 | 1.0 | 50 | 50-50 | 5120 | 100 | 20.0% | 1.00 | 300 | 900 |" in md
    assert "| W4 | torch_compile | 256 | 1.0 | 40 | 40-40 | 6400 | 125 | 25.0% | 0.80 | - |" in md
    assert "bfloat16 matmul rate: **500 TFLOP/s**" in md
    assert "- W2: 1100 GFLOP per step = 3 x 2 x 1 MACs x 128" in md
    assert "jcnn 2.1, linen 1300" in md  # the frameworks' own counts, as notes
    assert "W4 the ResNet-50 v1.5 training step (bottlenecks 3-4-6-3" in md


def test_cpu_is_flagged_and_a_missing_rate_gives_no_mfu():
    report = _report(platform="cpu")
    report["matmul"] = {"skip": "matmul rate failed: boom"}
    device.summarise(report)
    assert report["workloads"]["W4"]["frameworks"]["jcnn"]["mfu"] is None
    md = device.markdown(report)
    assert device.CPU_LINE in md and "not measured (matmul rate failed: boom)" in md


def test_torch_is_skipped_without_cuda_or_without_a_jax_accelerator(monkeypatch):
    fake = types.ModuleType("torch")
    fake.__version__ = "0.fake"
    fake.cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "torch", fake)
    runner, why = device._torch_runner({"name": "W2"}, "gpu")
    assert runner is None and "torch.cuda.is_available() is False" in why
    fake.cuda = types.SimpleNamespace(is_available=lambda: True)
    runner, why = device._torch_runner({"name": "R50"}, "cpu", compiled=True)
    assert runner is None and "JAX sees no GPU" in why


def test_usage_errors_and_defaults():
    with pytest.raises(SystemExit):
        device.parse(["--frameworks", "tensorflow"])
    with pytest.raises(SystemExit):
        device.parse(["--workloads", "W1"])
    args = device.parse(["--frameworks", "torch,torch_compile,jcnn", "--workloads", "w4"])
    assert args.frameworks == ["jcnn", "torch", "torch_compile"] and args.workloads == ["W4"]
    assert (args.steps, args.warmup, args.matmul_n) == (20, 5, 8192)
    quick = device.parse(["--quick"])
    assert (quick.steps, quick.warmup, quick.matmul_n) == (2, 1, 512)
    assert quick.workloads == ["W2", "W3", "W4"] and quick.frameworks == list(device.FRAMEWORKS)


def test_the_benchmarks_page_carries_the_section_its_generator_writes():
    page = (REPO / "docs" / "benchmarks.md").read_text()
    assert "\n".join(device.docs_section()) in page
