"""``python -m bench --device``: W2, W3 and W4 on the accelerator JAX sees, jcnn vs Flax linen vs PyTorch.

    python -m bench --device                  # W2 + W3 + W4, every framework: minutes on a GPU
    bench/gpu.sh                              # the same with the environment set (see the script)
    python -m bench --device --quick          # tiny sizes, 1 warm-up + 2 timed steps (any machine)
    python -m bench --device --steps 50 --out device-quick.md --workloads W4

Workloads:
    W2  the CIFAR ResNet-18 training step: batch 128 of 32x32x3, SGD with momentum, BatchNorm
        running statistics; float32
    W3  ResNet-18 (ImageNet stem, 1,000 classes) inference: batch 256 of ``--w3-size`` squared
        images; float32
    W4  the ResNet-50 v1.5 training step: batch 256 of 224x224x3, SGD 0.1 momentum 0.9,
        BatchNorm running statistics, 1,000 classes, in bfloat16 mixed precision: float32
        params, bfloat16 convolutions and matmuls, float32 logits and loss (jcnn:
        ``with_policy(resnet50(), Policy.mixed_bfloat16())``; linen: ``dtype=bfloat16``;
        PyTorch: channels-last under ``torch.autocast(dtype=torch.bfloat16)``)

W2 and W3 are the CPU bench's workloads (:mod:`bench.workloads`), models and all. W4 is this
check's own (spec name ``"R50"`` in :mod:`bench.workloads`; the CPU bench's "W4", an epoch of W1,
is another thing). Frameworks: jcnn and Flax linen on JAX's default device; PyTorch eager
(``torch``) on ``cuda`` when it is importable and ``torch.cuda.is_available()``, and on W4 also
``torch.compile`` of the same model (``torch_compile``: default mode, the optimiser step eager);
otherwise their rows say ``skipped: ...`` (TPUs have no PyTorch peer). Each (workload,
framework) pair runs in its own process, one after another: it builds and compiles the program
(the first call), runs ``--warmup`` steps, then times ``--steps`` steps one by one, each waited
for (``jax.block_until_ready`` / ``torch.cuda.synchronize``); the table reports the median and
the min-max. ``x jcnn`` is a framework's median over jcnn's (> 1: jcnn is faster).

FLOPs: one analytic count per workload, the same for every framework, from
``jcnn.count_macs`` of jcnn's model of the workload (the multiply-adds of its convolutions and
dense layers per example; PyTorch's ``FlopCounterMode`` / 2 on the torchvision models). An
inference step is ``2 * MACs * batch`` FLOPs; a training step ``3 * 2 * MACs * batch`` (forward
plus a backward pass of twice the forward's work, the usual convention; BatchNorm, pooling,
activations and the optimiser are not counted). TFLOP/s is that count over the median step
time, so its ratios are the time ratios. XLA's cost analysis (which on a GPU leaves out the
convolutions XLA hands to cuDNN) and PyTorch's ``FlopCounterMode`` count are kept in the JSON as
each row's ``flops_reported``, for information only.

MFU: the chip's bfloat16 matmul rate is measured once per run in a worker of its own (median
time of a jitted ``n x n @ n x n`` bfloat16 product, n = ``--matmul-n``: 8192, ``--quick``
512) and shown in the header; a bfloat16 workload's (W4's) rows get MFU = TFLOP/s / that rate.
The float32 workloads get none: TF32 has another peak.

Memory, measured the same way in every fresh worker process: ``XLA MB`` is XLA's compiled
memory analysis of the step (argument + output - aliased (donated) + temporary bytes: what the
program needs on the device, params, optimiser state and batch included; JAX only, ``-`` for
PyTorch) and ``peak MB`` the device allocator's peak over the worker's life (build, compile,
warm-up and timed steps, so autotuning scratch counts too): JAX's ``memory_stats()
["peak_bytes_in_use"]`` (none on the CPU), PyTorch's ``torch.cuda.max_memory_allocated()``.

Precision of W2 and W3: float32, with TF32 tensor cores allowed on both sides, as each
framework does by default for convolutions: JAX's default precision, PyTorch's
``cudnn.allow_tf32`` (its default), plus ``set_float32_matmul_precision("high")`` so PyTorch's
dense layers may use them as XLA's may. ``cudnn.benchmark`` is on (XLA autotunes its
convolutions too).

When JAX sees no GPU or TPU, everything still runs on the CPU (that is how it is tested) and the
header says so: those numbers are not accelerator numbers.

Outputs: the markdown table (printed, and written to ``--out``, default
``runs/bench/device.md``) and a JSON next to it (``device.json``). ``--docs`` also writes
``docs/device.md`` and ``docs/device.json``, but only from a full run on an accelerator.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.workloads import MODULES, common

ROOT = Path(__file__).resolve().parents[1]
TAG = "@@DEVICE "
WORKLOADS = ("W2", "W3", "W4")
FRAMEWORKS = ("jcnn", "linen", "torch", "torch_compile")
JAX_FRAMEWORKS = ("jcnn", "linen")
TORCH_FRAMEWORKS = ("torch", "torch_compile")
ONLY_ON = {"torch_compile": ("W4",)}  # frameworks run on some workloads only
MATMUL = "matmul"  # the worker that measures the bfloat16 matmul rate: --worker jax matmul
DEFAULT_OUT = Path("runs") / "bench" / "device.md"
DOCS_OUT = ROOT / "docs" / "device.md"
CPU_LINE = "no GPU/TPU found: running on cpu, the numbers are not accelerator numbers"
ENV_DEFAULTS = {  # for the workers; bench/gpu.sh sets the same
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # grow on demand: PyTorch runs after JAX
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
MB = 2**20


def device_specs(quick: bool, w3_size: int = 112) -> dict[str, dict]:
    """This check's workload table: the CPU bench's W2 and W3, and W4 (spec name ``"R50"``).

    ``quick`` shrinks everything for a smoke test; W4 then has one bottleneck per stage (stem,
    widths and head as ResNet-50's) at batch 2 of 32x32, so that it compiles in seconds on a CPU.
    """
    base = common.specs(quick, w3_size)
    if quick:
        w4 = {"name": "R50", "batch": 2, "size": 32, "blocks": [1, 1, 1, 1]}
    else:
        w4 = {"name": "R50", "batch": 256, "size": 224, "blocks": list(common.R50_BLOCKS)}
    w4.update(precision="mixed_bfloat16", steps=1)
    return {"W2": base["W2"], "W3": base["W3"], "W4": w4}


def is_training(spec: dict) -> bool:
    """Whether a workload is a training step (W2, W4) rather than inference (W3)."""
    return spec["name"] != "W3"


def analytic_flops(spec: dict) -> tuple[float, int]:
    """``(FLOPs of one step, MACs per example)`` from ``jcnn.count_macs`` of jcnn's model.

    Inference: ``2 * MACs * batch``; a training step: ``3 * 2 * MACs * batch`` (forward, then a
    backward pass of twice the forward's multiply-adds: the gradients with respect to the
    activations and to the weights). Nothing is compiled or run.
    """
    import jcnn
    from bench.workloads import jcnn_wl

    macs = int(jcnn.count_macs(jcnn_wl.model(spec), (spec["size"], spec["size"], 3)))
    forward = 2 * macs * spec["batch"]
    return float(3 * forward if is_training(spec) else forward), macs


def runs_on(framework: str, workload: str) -> bool:
    """Whether ``framework`` has a row for ``workload`` (``torch_compile``: W4 only)."""
    return workload in ONLY_ON.get(framework, (workload,))


# ---------------------------------------------------------------------------------------------
# Worker side (one process per framework and workload)
# ---------------------------------------------------------------------------------------------


def _say(obj: dict) -> None:
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


class TorchCudaRunner:
    """The CPU bench's PyTorch runner (:mod:`bench.workloads.torch_wl`) moved onto ``device``.

    Channels-last workloads (W4) stay channels-last there; ``compiled`` wraps the model in
    ``torch.compile`` (the first call, :meth:`compile`, then traces and compiles it).
    """

    def __init__(self, spec: dict, compiled: bool = False, device: str = "cuda"):
        import torch

        from bench.workloads import torch_wl

        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")  # TF32 dense layers, as XLA's default
        self._torch, self._cuda, self._compiled = torch, device == "cuda", compiled
        self._inner = inner = torch_wl.Runner(spec)
        inner.model.to(device)
        inner.x, inner.y = inner.x.to(device), inner.y.to(device)
        if inner.channels_last:
            inner.model.to(memory_format=torch.channels_last)
            inner.x = inner.x.contiguous(memory_format=torch.channels_last)
        if hasattr(inner, "opt"):  # rebuild the optimiser on the moved parameters
            inner.opt = type(inner.opt)(inner.model.parameters(), **inner.opt.defaults)
        if compiled:
            inner.model = torch.compile(inner.model)
        self.items = inner.items

    def _sync(self) -> None:
        if self._cuda:
            self._torch.cuda.synchronize()

    def compile(self) -> float | None:
        """The first step; eager: under ``FlopCounterMode`` (its count), compiled: no count."""
        if self._compiled:
            self._inner.run(1)
            flops = None
        else:
            flops = self._inner.compile()
        self._sync()
        return flops

    def run(self, n: int) -> None:
        self._inner.run(n)
        self._sync()


def _torch_runner(spec: dict, jax_platform: str | None, compiled: bool = False):
    """``(runner, info)``, or ``(None, reason)`` when PyTorch CUDA is not there to compare."""
    try:
        import torch
    except Exception as err:  # noqa: BLE001 - any import failure means "skip this peer"
        return None, f"torch not importable: {type(err).__name__}: {err}"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__}: torch.cuda.is_available() is False"
    if jax_platform == "cpu":
        return None, "JAX sees no GPU (runs on cpu): PyTorch CUDA would not compare like with like"
    info = {
        "platform": "cuda",
        "device_kind": torch.cuda.get_device_name(0),
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda,
                     "cudnn": torch.backends.cudnn.version()},
    }  # fmt: skip
    return TorchCudaRunner(spec, compiled=compiled), info


def _jax_runner(framework: str, spec: dict):
    import jax
    import jaxlib

    importlib.import_module("jcnn.compile_cache").enable()
    module = importlib.import_module(MODULES[framework])
    dev = jax.devices()[0]
    versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
    if framework == "linen":
        import flax

        versions["flax"] = flax.__version__
    info = {"platform": dev.platform, "device_kind": dev.device_kind, "versions": versions}
    return module.make(spec), info


def xla_memory(compiled: Any) -> dict | None:
    """XLA's compiled memory analysis of a JAX program, in bytes, or None when it has none.

    ``total`` is what the program needs on the device: arguments + outputs - the outputs that
    alias (donated) arguments + temporaries.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - optional figure (None, or not a JAX program)
        return None
    if stats is None:
        return None
    fields = ("argument", "output", "alias", "temp", "generated_code")
    out = {k: int(getattr(stats, f"{k}_size_in_bytes", 0) or 0) for k in fields}
    out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


def peak_mb(framework: str) -> float | None:
    """The device allocator's peak so far in this process, MB (None where there is none)."""
    try:
        if framework in TORCH_FRAMEWORKS:
            import torch

            return torch.cuda.max_memory_allocated() / MB
        import jax

        stats = jax.devices()[0].memory_stats()
        return stats["peak_bytes_in_use"] / MB if stats else None
    except Exception:  # noqa: BLE001 - optional figure
        return None


def matmul_rate(n: int, reps: int = 5, calls: int = 5) -> dict:
    """The bfloat16 matmul rate of JAX's default device: ``reps`` timings of ``calls`` jitted
    ``n x n @ n x n`` products (after one compiling call); TFLOP/s from the median."""
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.bfloat16)
    b = jax.random.normal(kb, (n, n), jnp.bfloat16)
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            out = product(a, b)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / calls)
    median = statistics.median(times)
    dev = jax.devices()[0]
    return {"n": n, "dtype": "bfloat16", "times": times, "median_s": median,
            "tflops_per_s": 2 * n**3 / median / 1e12, "platform": dev.platform,
            "device_kind": dev.device_kind}  # fmt: skip


def worker(framework: str, workload: str, args: argparse.Namespace) -> None:
    """Compiles, warms up and times one (framework, workload) pair; says one tagged JSON line."""
    if workload == MATMUL:
        try:
            _say(matmul_rate(args.matmul_n))
        except Exception as err:  # noqa: BLE001 - report, do not crash the coordinator
            _say({"skip": f"matmul rate failed: {type(err).__name__}: {err}"})
        return
    spec = device_specs(args.quick, args.w3_size)[workload]
    try:
        if framework in TORCH_FRAMEWORKS:
            compiled = framework == "torch_compile"
            runner, info = _torch_runner(spec, args.jax_platform, compiled=compiled)
            if runner is None:
                _say({"skip": info})
                return
        else:
            runner, info = _jax_runner(framework, spec)
        start = time.perf_counter()
        flops = runner.compile()  # build + compile + one step
        compile_s = time.perf_counter() - start
        peak_compiled = peak_mb(framework)
        for _ in range(args.warmup):
            runner.run(1)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            runner.run(1)  # blocks until the step is done
            times.append(time.perf_counter() - start)
    except Exception as err:  # noqa: BLE001 - report, do not crash the coordinator
        _say({"skip": f"{framework} failed on {workload}: {type(err).__name__}: {err}"})
        return
    _say({**info, "compile_s": compile_s, "flops_reported": flops, "items": runner.items,
          "times": times, "xla_memory": xla_memory(getattr(runner, "compiled", None)),
          "peak_mb": peak_mb(framework), "peak_after_compile_mb": peak_compiled})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Coordinator side
# ---------------------------------------------------------------------------------------------


def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def spawn(framework: str, workload: str, args, jax_platform: str | None, timeout: float) -> dict:
    """Runs one worker process; its reply, or ``{"skip": why}``."""
    if framework in TORCH_FRAMEWORKS and importlib.util.find_spec("torch") is None:
        return {"skip": "torch not importable: no module named 'torch'"}  # no process needed
    cmd = [sys.executable, "-m", "bench", "--device", "--worker", framework, workload,
           "--w3-size", str(args.w3_size), "--warmup", str(args.warmup), "--steps",
           str(args.steps), "--matmul-n", str(args.matmul_n)]  # fmt: skip
    cmd += ["--quick"] if args.quick else []
    if jax_platform:
        cmd += ["--jax-platform", jax_platform]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**ENV_DEFAULTS, **os.environ, "PYTHONPATH": path}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"skip": f"no reply within {timeout:.0f} s"}
    replies = [ln[len(TAG) :] for ln in proc.stdout.splitlines() if ln.startswith(TAG)]
    if not replies:
        return {"skip": f"worker exited (code {proc.returncode}): {_tail(proc.stderr)}"}
    return json.loads(replies[-1])


def tflops(flops: float | None, seconds: float | None) -> float | None:
    """Achieved TFLOP/s: ``flops`` per step over ``seconds`` per step (None if either is missing)."""
    if not flops or not seconds or seconds <= 0:
        return None
    return flops / seconds / 1e12


def summarise(report: dict) -> None:
    """Adds medians, spreads, images/s, TFLOP/s (the workload's analytic count), MFU (bfloat16
    workloads), memory in MB and x jcnn to every row that ran."""
    rate = report.get("matmul", {}).get("tflops_per_s")
    for name, wl in report["workloads"].items():
        fws = wl["frameworks"]
        bf16 = report["specs"][name].get("precision") == "mixed_bfloat16"
        for r in fws.values():
            if not r.get("times"):
                continue
            r["median_s"] = statistics.median(r["times"])
            r["min_s"], r["max_s"] = min(r["times"]), max(r["times"])
            r["images_per_s"] = r["items"] / r["median_s"]
            r["tflops_per_s"] = tflops(wl.get("flops"), r["median_s"])
            r["mfu"] = r["tflops_per_s"] / rate if bf16 and rate and r["tflops_per_s"] else None
            xla = r.get("xla_memory")
            r["xla_mb"] = xla["total"] / MB if xla else None
        base = fws.get("jcnn", {}).get("median_s")
        for r in fws.values():
            if base and r.get("median_s"):
                r["ratio_to_jcnn"] = r["median_s"] / base


def accelerator(report: dict) -> tuple[str | None, str | None]:
    """``(platform, device_kind)`` of the JAX workers (the first that ran), or Nones."""
    found = [report.get("matmul", {})]
    found += [wl["frameworks"].get(fw, {}) for wl in report["workloads"].values()
              for fw in JAX_FRAMEWORKS]  # fmt: skip
    for r in found:
        if r.get("platform"):
            return r["platform"], r.get("device_kind")
    return None, None


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def _ms(v):
    ms = v * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


HEADER = ["workload", "framework", "batch", "compile s", "median ms", "min-max ms", "images/s",
          "TFLOP/s", "MFU", "x jcnn", "XLA MB", "peak MB"]  # fmt: skip


def table_rows(report: dict) -> list[list[str]]:
    rows = []
    for name, wl in report["workloads"].items():
        batch = str(report["specs"][name]["batch"])
        for fw, r in wl["frameworks"].items():
            if "skip" in r:
                reason = " ".join(r["skip"].split())[:110]
                rows.append([name, fw, batch, "skipped: " + reason] + [""] * (len(HEADER) - 4))
                continue
            rows.append([
                name, fw, batch, _fmt(r["compile_s"]), _ms(r["median_s"]),
                f"{_ms(r['min_s'])}-{_ms(r['max_s'])}", _fmt(r["images_per_s"], ".0f"),
                _fmt(r.get("tflops_per_s"), ".3g"), _fmt(r.get("mfu"), ".1%"),
                _fmt(r.get("ratio_to_jcnn"), ".2f"), _fmt(r.get("xla_mb"), ".0f"),
                _fmt(r.get("peak_mb"), ".0f"),
            ])  # fmt: skip
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _versions(report: dict) -> dict:
    """Versions the workers reported, else the installed distributions'."""
    out = {}
    for wl in report["workloads"].values():
        for r in wl["frameworks"].values():
            out.update({k: v for k, v in r.get("versions", {}).items() if v is not None})
    for dist in ("jax", "jaxlib", "flax", "optax", "torch"):
        if dist not in out:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = None
    return out


def _torch_line(report: dict) -> str:
    rows = [wl["frameworks"].get(fw, {}) for wl in report["workloads"].values()
            for fw in TORCH_FRAMEWORKS]  # fmt: skip
    for r in rows:
        if r.get("device_kind"):
            return f"PyTorch CUDA: {r['device_kind']}"
    for r in rows:
        if "skip" in r:
            return f"PyTorch: skipped: {r['skip']}"
    return "PyTorch: not run"


def _matmul_line(report: dict) -> str:
    m = report.get("matmul") or {}
    if not m.get("tflops_per_s"):
        return f"bfloat16 matmul rate: not measured ({m.get('skip', 'not run')})."
    n = m["n"]
    return (f"bfloat16 matmul rate: **{m['tflops_per_s']:.4g} TFLOP/s** (median of "
            f"{len(m['times'])} timings of a jitted {n}x{n} @ {n}x{n} bfloat16 product on "
            f"{m['platform']} `{m['device_kind']}`); the `MFU` column divides by it.")  # fmt: skip


def _workload_text(name: str, s: dict) -> str:
    size = f"{s['size']}x{s['size']}x3"
    if s["name"] == "W2":
        return (f"W2 the CIFAR ResNet-18 training step (SGD {common.SGD_LR} momentum "
                f"{common.SGD_MOMENTUM}, BatchNorm running statistics), batch {s['batch']} of "
                f"{size}, float32")  # fmt: skip
    if s["name"] == "W3":
        return (f"W3 ResNet-18 (ImageNet stem, 1,000 classes) inference, batch {s['batch']} "
                f"of {size}, float32")  # fmt: skip
    blocks = "-".join(str(b) for b in s["blocks"])
    depth = "ResNet-50 v1.5" if tuple(s["blocks"]) == common.R50_BLOCKS else "ResNet-50 layout"
    return (f"{name} the {depth} training step (bottlenecks {blocks}, 1,000 classes, SGD "
            f"{common.SGD_LR} momentum {common.SGD_MOMENTUM}, BatchNorm running statistics), "
            f"batch {s['batch']} of {size}, {s['precision']}")  # fmt: skip


def _flop_line(name: str, spec: dict, wl: dict) -> str:
    rule = "3 x 2" if is_training(spec) else "2"
    reported = ", ".join(
        f"{fw} {r['flops_reported'] / 1e9:.4g}"
        for fw, r in wl["frameworks"].items()
        if r.get("flops_reported")
    )
    return (
        f"- {name}: {wl['flops'] / 1e9:.4g} GFLOP per step = {rule} x {wl['macs_per_example']:,} "
        f"MACs x {spec['batch']}"
        + (f"; the frameworks' own counts (not used), GFLOP: {reported}" if reported else "")
    )


def markdown(report: dict) -> str:
    platform, kind = report["platform"], report["device_kind"]
    specs = report["specs"]
    v = report["versions"]
    vers = ", ".join(f"{k} {v[k]}" for k in ("jax", "jaxlib", "flax", "optax", "torch", "cuda",
                                             "cudnn") if v.get(k))  # fmt: skip
    wl_text = [_workload_text(name, s) for name, s in specs.items()]
    flop_lines = [_flop_line(n, specs[n], wl) for n, wl in report["workloads"].items()]
    lines = [
        "# Device check: jcnn vs Flax linen vs PyTorch on an accelerator",
        "",
        "Written by `python -m bench --device` (see `bench/device.py`, `bench/gpu.sh`).",
        "",
    ]
    if platform in (None, "cpu"):
        lines += [f"**{CPU_LINE}**", ""]
    lines += [
        f"Command: `{report['command']}`",
        "",
        f"Device: JAX {platform or '?'} `{kind or '?'}`; {_torch_line(report)}"
        + (f"; driver: {report['nvidia_smi']}" if report.get("nvidia_smi") else "")
        + ".",
        "",
        _matmul_line(report),
        "",
        f"Versions: {vers}.",
        "",
        "Workloads (W2 and W3 are the CPU bench's, `bench/workloads`; W4 is this check's own, "
        "not the CPU bench's W4): " + "; ".join(wl_text) + ".",
        "",
        "Precision: W2 and W3 in float32 with TF32 allowed on both sides (JAX's default "
        "precision; PyTorch `cudnn.allow_tf32`, `set_float32_matmul_precision('high')`); W4 in "
        "bfloat16 mixed precision, float32 params and optimiser, bfloat16 convolutions and "
        "matmuls, float32 logits and loss (jcnn `with_policy(net, Policy.mixed_bfloat16())`; "
        "linen `dtype=bfloat16`, `param_dtype=float32`; PyTorch `torch.autocast(dtype="
        "torch.bfloat16)`, channels-last). `cudnn.benchmark = True`. `torch` is PyTorch eager "
        "(W2, W3 NCHW); `torch_compile` is `torch.compile(model)` (default mode, W4 only).",
        "",
        f"Timing: the first call (build, compile, one step: `compile s`), {report['warmup']} "
        f"warm-up step(s), then {report['steps']} step(s) each timed to completion "
        "(`jax.block_until_ready` / `torch.cuda.synchronize`): median and min-max. `x jcnn` is "
        "the median over jcnn's (> 1: jcnn faster).",
        "",
        "TFLOP/s = the workload's FLOPs per step / median step time, one analytic count per "
        "workload for every framework (so its ratios are the time ratios): `jcnn.count_macs` of "
        "jcnn's model (multiply-adds of convolutions and dense layers per example), x 2 FLOPs "
        "per multiply-add x batch for inference, and x 3 for a training step (forward + "
        "backward, the backward counted as twice the forward: the usual convention; "
        "normalisation, pooling, activations and the optimiser are not counted). XLA's cost "
        "analysis leaves out the convolutions XLA hands to cuDNN on a GPU, so it is not used.",
        "",
        *flop_lines,
        "",
        "MFU = TFLOP/s / the measured bfloat16 matmul rate, for the bfloat16 workload (W4) only: "
        "W2 and W3 run in float32/TF32, whose peak is another.",
        "",
        "Memory, each pair in a fresh process: `XLA MB` is XLA's compiled memory analysis of the "
        "step (arguments + outputs - donated aliases + temporaries: params, optimiser state, "
        "batch and activations; JAX only); `peak MB` the device allocator's peak over the "
        "worker's life (build, compile and its autotuning, warm-up, timed steps): JAX "
        "`memory_stats()['peak_bytes_in_use']`, PyTorch `torch.cuda.max_memory_allocated()` "
        "(none on the CPU).",
        "",
        markdown_table(table_rows(report)),
        "",
        f"Total wall time {report['wall_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def _nvidia_smi() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def run(args: argparse.Namespace, argv: list[str], log=print) -> dict:
    """Measures the matmul rate, then runs every (workload, framework) worker in turn within
    ``args.budget`` seconds."""
    start = time.monotonic()
    specs = device_specs(args.quick, args.w3_size)
    report = {
        "command": "python -m bench --device " + " ".join(argv),
        "quick": args.quick,
        "warmup": args.warmup,
        "steps": args.steps,
        "specs": {w: specs[w] for w in args.workloads},
        "nvidia_smi": _nvidia_smi(),
        "workloads": {},
    }
    report["matmul"] = spawn("jax", MATMUL, args, None, min(args.timeout, 120.0))
    m = report["matmul"]
    log(f"bf16 matmul rate: {m['tflops_per_s']:.4g} TFLOP/s at n={m['n']}" if "skip" not in m
        else f"bf16 matmul rate: skipped: {m['skip']}")  # fmt: skip
    jax_platform = m.get("platform")
    for name in args.workloads:
        spec = specs[name]
        flops, macs = analytic_flops(spec)
        log(f"{name}: {spec}: {flops / 1e9:.4g} GFLOP per step")
        results = {}
        for fw in (f for f in args.frameworks if runs_on(f, name)):
            left = args.budget - (time.monotonic() - start)
            if left < 10:
                results[fw] = {"skip": f"not run: the {args.budget:.0f} s budget is spent"}
                log(f"  {fw:13s} skipped: {results[fw]['skip']}")
                continue
            reply = spawn(fw, name, args, jax_platform, min(args.timeout, left))
            results[fw] = reply
            if "skip" in reply:
                log(f"  {fw:13s} skipped: {reply['skip']}")
                continue
            if fw in JAX_FRAMEWORKS:
                jax_platform = jax_platform or reply.get("platform")
            med = statistics.median(reply["times"]) * 1e3
            log(f"  {fw:13s} {reply.get('platform')} {reply.get('device_kind')}: compiled in "
                f"{reply['compile_s']:.1f} s, median {med:.3g} ms")  # fmt: skip
        report["workloads"][name] = {"flops": flops, "macs_per_example": macs,
                                     "frameworks": results}  # fmt: skip
    report["wall_s"] = time.monotonic() - start
    report["platform"], report["device_kind"] = accelerator(report)
    report["versions"] = _versions(report)
    summarise(report)
    return report


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write(report: dict, md_path: Path) -> Path:
    """Writes the markdown to ``md_path`` and the JSON next to it; returns the JSON's path."""
    json_path = md_path.with_suffix(".json")
    _write_atomic(md_path, markdown(report))
    _write_atomic(json_path, json.dumps(report, indent=1))
    return json_path


def docs_section() -> list[str]:
    """The section of docs/benchmarks.md (written by ``python -m bench --docs``) on this check."""
    recorded = (
        "The latest accelerator run is in [`device.md`](device.md)."
        if DOCS_OUT.exists()
        else "No accelerator run is recorded here yet: `docs/device.md` appears only once the "
        "check has run with `--docs` on a machine with a GPU or TPU."
    )
    return [
        "## The GPU / TPU check",
        "",
        "`python -m bench --device` (or `bench/gpu.sh`, which sets "
        "`XLA_PYTHON_CLIENT_PREALLOCATE=false` first) runs, on the accelerator JAX sees, W2 "
        "(CIFAR ResNet-18 training, float32) and W3 (ResNet-18 inference) in jcnn, Flax linen and "
        "PyTorch CUDA, and W4 (ResNet-50 training at 224x224, batch 256, bfloat16 mixed "
        "precision) in jcnn, linen, PyTorch eager (channels_last, autocast) and torch.compile; "
        "PyTorch rows say `skipped` without `torch.cuda.is_available()`. Each (workload, "
        "framework) runs in a fresh process, within a 540 s budget. It reports the median step "
        "time after warm-up, TFLOP/s from one analytic count for every framework "
        "(`jcnn.count_macs` of the workload's model: 2 FLOPs per multiply-add, a training step "
        "3 forward passes), MFU against the bf16 matmul rate it measures first, memory measured "
        "the same way for every framework (XLA's compiled memory analysis, and the allocator's "
        "peak after the timed steps) and the ratio to jcnn, with the device name and versions in "
        "the header. It writes `runs/bench/device.md` and `device.json` (`--out` elsewhere); "
        "`--docs` also writes `docs/device.md`, and only from a full run on an accelerator. "
        "Without a GPU or TPU it runs on the CPU and its header says that the numbers are not "
        "accelerator numbers.",
        "",
        "```bash",
        "bench/gpu.sh                                   # W2, W3, W4, every framework",
        "bench/gpu.sh --docs                            # also docs/device.md (accelerator only)",
        "python -m bench --device --quick --out device-quick.md   # tiny sizes: seconds, any machine",
        "```",
        "",
        recorded,
        "",
    ]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench --device",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[1:]),
    )
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="subset of W2,W3,W4")
    p.add_argument(
        "--frameworks",
        default=",".join(FRAMEWORKS),
        help="subset of jcnn,linen,torch,torch_compile (torch_compile: W4 only)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 warm-up + 2 timed steps")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20; --quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5; --quick 1)")
    p.add_argument("--out", type=Path, default=None, help=f"markdown path (default {DEFAULT_OUT})")
    p.add_argument("--docs", action="store_true", help="also write docs/device.md (+ .json)")
    p.add_argument("--w3-size", type=int, default=112, help="W3 image side (default 112)")
    p.add_argument(
        "--matmul-n",
        type=int,
        default=None,
        help="side of the bfloat16 matmul that measures the rate (8192; --quick 512)",
    )
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per worker (240)")
    p.add_argument("--budget", type=float, default=540.0, help="seconds in all (default 540)")
    p.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    p.add_argument("--jax-platform", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.steps = args.steps if args.steps is not None else (2 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    args.matmul_n = args.matmul_n or (512 if args.quick else 8192)
    if args.steps < 1 or args.warmup < 0 or args.matmul_n < 1:
        p.error("--steps and --matmul-n must be >= 1 and --warmup >= 0")
    if args.worker:
        return args
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; choose from {WORKLOADS}")
    for f in args.frameworks:
        if f not in FRAMEWORKS:
            p.error(f"unknown framework {f!r}; choose from {FRAMEWORKS}")
    # jcnn first (its platform for the PyTorch workers), PyTorch last
    args.frameworks = [f for f in FRAMEWORKS if f in args.frameworks]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.worker:
        worker(*args.worker, args)
        return 0
    report = run(args, argv, log=lambda msg: print(msg, flush=True))
    text = markdown(report)
    print()
    print(text)
    out = args.out or DEFAULT_OUT
    json_path = write(report, out)
    print(f"wrote {out} and {json_path}")
    if args.docs:
        if report["platform"] in (None, "cpu") or args.quick:
            print(f"--docs: not writing {DOCS_OUT}: only a full run on a GPU or TPU goes there")
        else:
            write(report, DOCS_OUT)
            print(f"wrote {DOCS_OUT} and {DOCS_OUT.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
