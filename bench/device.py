"""``python -m bench --device``: W2 and W3 on the accelerator JAX sees, jcnn vs Flax linen vs PyTorch.

    python -m bench --device                  # W2 + W3, jcnn, linen, torch: a few minutes on a GPU
    bench/gpu.sh                              # the same with the environment set (see the script)
    python -m bench --device --quick          # tiny sizes, 1 warm-up + 2 timed steps (seconds)
    python -m bench --device --steps 50 --out device-quick.md --workloads W2

W2 is the CIFAR ResNet-18 training step (batch 128 of 32x32x3, SGD with momentum, BatchNorm
running statistics) and W3 ResNet-18 (ImageNet stem) inference at batch 256 of ``--w3-size``
squared images: the CPU bench's workloads (:mod:`bench.workloads`), models and all, run on the
device: jcnn and Flax linen on JAX's default device, PyTorch eager on ``cuda`` when it is
importable and ``torch.cuda.is_available()`` (else the row says ``skipped: ...``; TPUs have no
PyTorch peer). Each (workload, framework) pair runs in its own process, one after another: it
builds and compiles the program (the first call), runs ``--warmup`` steps, then times ``--steps``
steps one by one, each waited for (``jax.block_until_ready`` / ``torch.cuda.synchronize``); the
table reports the median and the min-max.

TFLOP/s is one step's FLOPs over the median step time. The FLOPs come from XLA's cost analysis
of the compiled jcnn program (``jitted.lower(...).compile().cost_analysis()``; linen's when jcnn
has none, PyTorch's ``FlopCounterMode`` when neither has), and the same count divides every
framework's time of a workload, so the TFLOP/s ratios equal the time ratios. ``x jcnn`` is a
framework's median over jcnn's (> 1: jcnn is faster).

Precision: float32 everywhere (the bench workloads have no bfloat16 policy), with TF32 tensor
cores allowed on both sides, as each framework does by default for convolutions: JAX's default
precision, PyTorch's ``cudnn.allow_tf32`` (its default), plus ``set_float32_matmul_precision(
"high")`` so PyTorch's one dense layer may use them as XLA's may. ``cudnn.benchmark`` is on (XLA
autotunes its convolutions too).

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
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.workloads import MODULES, common

ROOT = Path(__file__).resolve().parents[1]
TAG = "@@DEVICE "
WORKLOADS = ("W2", "W3")
FRAMEWORKS = ("jcnn", "linen", "torch")
DEFAULT_OUT = Path("runs") / "bench" / "device.md"
DOCS_OUT = ROOT / "docs" / "device.md"
CPU_LINE = "no GPU/TPU found: running on cpu, the numbers are not accelerator numbers"
ENV_DEFAULTS = {  # for the workers; bench/gpu.sh sets the same
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # grow on demand: PyTorch runs after JAX
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
FLOP_SOURCES = (
    ("jcnn", "XLA cost analysis of the compiled jcnn program"),
    ("linen", "XLA cost analysis of the compiled Flax linen program"),
    ("torch", "PyTorch FlopCounterMode (analytic count of one step)"),
)


# ---------------------------------------------------------------------------------------------
# Worker side (one process per framework and workload)
# ---------------------------------------------------------------------------------------------


def _say(obj: dict) -> None:
    sys.stdout.write(TAG + json.dumps(obj) + "\n")
    sys.stdout.flush()


class TorchCudaRunner:
    """The CPU bench's PyTorch runner (:mod:`bench.workloads.torch_wl`) moved onto ``cuda``."""

    def __init__(self, spec: dict):
        import torch

        from bench.workloads import torch_wl

        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")  # TF32 dense layers, as XLA's default
        self._torch = torch
        self._inner = torch_wl.Runner(spec)
        inner = self._inner
        inner.model.to("cuda")
        inner.x, inner.y = inner.x.cuda(), inner.y.cuda()
        if hasattr(inner, "opt"):  # rebuild the optimiser on the moved parameters
            inner.opt = type(inner.opt)(inner.model.parameters(), **inner.opt.defaults)
        self.items = inner.items

    def compile(self) -> float:
        flops = self._inner.compile()  # one step under FlopCounterMode
        self._torch.cuda.synchronize()
        return flops

    def run(self, n: int) -> None:
        self._inner.run(n)
        self._torch.cuda.synchronize()


def _torch_runner(spec: dict, jax_platform: str | None):
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
    return TorchCudaRunner(spec), info


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


def _peak_mem_mb(framework: str) -> float | None:
    try:
        if framework == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        import jax

        stats = jax.devices()[0].memory_stats()
        return stats["peak_bytes_in_use"] / 2**20 if stats else None
    except Exception:  # noqa: BLE001 - optional figure
        return None


def worker(framework: str, workload: str, args: argparse.Namespace) -> None:
    """Compiles, warms up and times one (framework, workload) pair; says one tagged JSON line."""
    spec = common.specs(args.quick, args.w3_size)[workload]
    try:
        if framework == "torch":
            runner, info = _torch_runner(spec, args.jax_platform)
            if runner is None:
                _say({"skip": info})
                return
        else:
            runner, info = _jax_runner(framework, spec)
        start = time.perf_counter()
        flops = runner.compile()  # build + compile + one step
        compile_s = time.perf_counter() - start
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
    _say({**info, "compile_s": compile_s, "flops": flops, "items": runner.items,
          "times": times, "peak_mem_mb": _peak_mem_mb(framework)})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Coordinator side
# ---------------------------------------------------------------------------------------------


def _tail(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def spawn(framework: str, workload: str, args, jax_platform: str | None, timeout: float) -> dict:
    """Runs one worker process; its reply, or ``{"skip": why}``."""
    cmd = [sys.executable, "-m", "bench", "--device", "--worker", framework, workload,
           "--w3-size", str(args.w3_size), "--warmup", str(args.warmup), "--steps",
           str(args.steps)] + (["--quick"] if args.quick else [])  # fmt: skip
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


def shared_flops(frameworks: dict) -> tuple[float | None, str | None]:
    """One step's FLOPs for every framework of a workload, and where the count comes from."""
    for fw, source in FLOP_SOURCES:
        flops = frameworks.get(fw, {}).get("flops")
        if flops:
            return float(flops), source
    return None, None


def summarise(report: dict) -> None:
    """Adds medians, spreads, images/s, TFLOP/s (one FLOP count per workload) and x jcnn."""
    for wl in report["workloads"].values():
        fws = wl["frameworks"]
        wl["flops"], wl["flops_source"] = shared_flops(fws)
        for r in fws.values():
            if not r.get("times"):
                continue
            r["median_s"] = statistics.median(r["times"])
            r["min_s"], r["max_s"] = min(r["times"]), max(r["times"])
            r["images_per_s"] = r["items"] / r["median_s"]
            r["tflops_per_s"] = tflops(wl["flops"], r["median_s"])
        base = fws.get("jcnn", {}).get("median_s")
        for r in fws.values():
            if base and r.get("median_s"):
                r["ratio_to_jcnn"] = r["median_s"] / base


def accelerator(report: dict) -> tuple[str | None, str | None]:
    """``(platform, device_kind)`` of the JAX workers (the first that ran), or Nones."""
    for wl in report["workloads"].values():
        for fw in ("jcnn", "linen"):
            r = wl["frameworks"].get(fw, {})
            if r.get("platform"):
                return r["platform"], r.get("device_kind")
    return None, None


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def _ms(v):
    ms = v * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


HEADER = ["workload", "framework", "batch", "compile s", "median ms", "min-max ms", "images/s",
          "TFLOP/s", "x jcnn", "peak mem MB"]  # fmt: skip


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
                _fmt(r.get("tflops_per_s"), ".3g"), _fmt(r.get("ratio_to_jcnn"), ".2f"),
                _fmt(r.get("peak_mem_mb"), ".0f"),
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
    for wl in report["workloads"].values():
        r = wl["frameworks"].get("torch", {})
        if r.get("device_kind"):
            return f"PyTorch CUDA: {r['device_kind']}"
    for wl in report["workloads"].values():
        r = wl["frameworks"].get("torch", {})
        if "skip" in r:
            return f"PyTorch: skipped: {r['skip']}"
    return "PyTorch: not run"


def markdown(report: dict) -> str:
    platform, kind = report["platform"], report["device_kind"]
    specs = report["specs"]
    v = report["versions"]
    vers = ", ".join(f"{k} {v[k]}" for k in ("jax", "jaxlib", "flax", "optax", "torch", "cuda",
                                             "cudnn") if v.get(k))  # fmt: skip
    wl_text = []
    if "W2" in specs:
        s = specs["W2"]
        wl_text.append(f"W2 the CIFAR ResNet-18 training step (SGD {common.SGD_LR} momentum "
                       f"{common.SGD_MOMENTUM}, BatchNorm running statistics), batch {s['batch']} "
                       f"of {s['size']}x{s['size']}x3")  # fmt: skip
    if "W3" in specs:
        s = specs["W3"]
        wl_text.append(f"W3 ResNet-18 (ImageNet stem, 1,000 classes) inference, batch "
                       f"{s['batch']} of {s['size']}x{s['size']}x3")  # fmt: skip
    flop_lines = []
    for name, wl in report["workloads"].items():
        others = ", ".join(
            f"{fw} {r['flops'] / 1e9:.4g}"
            for fw, r in wl["frameworks"].items()
            if fw != "jcnn" and r.get("flops")
        )
        flop_lines.append(
            f"- {name}: {_fmt(wl['flops'] and wl['flops'] / 1e9, '.4g')} GFLOP per step"
            + (f" ({wl['flops_source']})" if wl["flops_source"] else "")
            + (f"; the other frameworks' own counts, GFLOP: {others}" if others else "")
        )
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
        f"Versions: {vers}.",
        "",
        "Workloads (bench/workloads, the CPU bench's): " + "; ".join(wl_text) + ".",
        "",
        "Precision: float32 (the bench workloads have no bfloat16 policy); TF32 allowed on both "
        "sides (JAX's default precision; PyTorch `cudnn.allow_tf32`, "
        "`set_float32_matmul_precision('high')`), `cudnn.benchmark = True`; PyTorch eager, "
        "NCHW, no `torch.compile`.",
        "",
        f"Timing: the first call (build, compile, one step: `compile s`), {report['warmup']} "
        f"warm-up step(s), then {report['steps']} step(s) each timed to completion "
        "(`jax.block_until_ready` / `torch.cuda.synchronize`): median and min-max. `x jcnn` is "
        "the median over jcnn's (> 1: jcnn faster).",
        "",
        "TFLOP/s = one step's FLOPs / median step time, one FLOP count per workload for every "
        "framework (so its ratios are the time ratios):",
        "",
        *flop_lines,
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
    """Runs every (workload, framework) worker in turn within ``args.budget`` seconds."""
    start = time.monotonic()
    specs = common.specs(args.quick, args.w3_size)
    report = {
        "command": "python -m bench --device " + " ".join(argv),
        "quick": args.quick,
        "warmup": args.warmup,
        "steps": args.steps,
        "specs": {w: specs[w] for w in args.workloads},
        "nvidia_smi": _nvidia_smi(),
        "workloads": {},
    }
    jax_platform = None
    for name in args.workloads:
        log(f"{name}: {specs[name]}")
        results = {}
        for fw in args.frameworks:
            left = args.budget - (time.monotonic() - start)
            if left < 10:
                results[fw] = {"skip": f"not run: the {args.budget:.0f} s budget is spent"}
                log(f"  {fw:6s} skipped: {results[fw]['skip']}")
                continue
            reply = spawn(fw, name, args, jax_platform, min(args.timeout, left))
            results[fw] = reply
            if "skip" in reply:
                log(f"  {fw:6s} skipped: {reply['skip']}")
                continue
            if fw != "torch":
                jax_platform = jax_platform or reply.get("platform")
            med = statistics.median(reply["times"]) * 1e3
            log(f"  {fw:6s} {reply.get('platform')} {reply.get('device_kind')}: compiled in "
                f"{reply['compile_s']:.1f} s, median {med:.3g} ms")  # fmt: skip
        report["workloads"][name] = {"frameworks": results}
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
        "`XLA_PYTHON_CLIENT_PREALLOCATE=false` first) runs W2 and W3 in jcnn, Flax linen and "
        "PyTorch CUDA (when `torch.cuda.is_available()`; otherwise its rows say `skipped`) on the "
        "accelerator JAX sees, in float32, in a few minutes (a 300 s budget). It reports per "
        "workload and framework the median step time after warm-up, achieved TFLOP/s (one FLOP "
        "count per workload, from XLA's cost analysis of the compiled jcnn program) and the ratio "
        "to jcnn, with the device name and versions in the header. It writes "
        "`runs/bench/device.md` and `device.json` (`--out` elsewhere); `--docs` also writes "
        "`docs/device.md`, and only from a full run on an accelerator. Without a GPU or TPU it "
        "runs on the CPU and its header says that the numbers are not accelerator numbers.",
        "",
        "```bash",
        "bench/gpu.sh                                   # W2 + W3, all three frameworks",
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
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="subset of W2,W3")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="subset of jcnn,linen,torch")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 warm-up + 2 timed steps")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20; --quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5; --quick 1)")
    p.add_argument("--out", type=Path, default=None, help=f"markdown path (default {DEFAULT_OUT})")
    p.add_argument("--docs", action="store_true", help="also write docs/device.md (+ .json)")
    p.add_argument("--w3-size", type=int, default=112, help="W3 image side (default 112)")
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per worker (240)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds in all (default 300)")
    p.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    p.add_argument("--jax-platform", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.steps = args.steps if args.steps is not None else (2 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
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
    # jcnn first (its FLOPs, its platform for the PyTorch worker), PyTorch last
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
