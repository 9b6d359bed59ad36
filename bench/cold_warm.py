"""``python -m bench.cold_warm``: the first call, cold vs warm persistent compilation cache.

    python -m bench.cold_warm                         # W1 and W2 train steps, batch 128
    python -m bench.cold_warm --workloads W1 --batch 32

For each workload, two fresh processes share a new, empty cache folder (``JCNN_COMPILE_CACHE``,
see :mod:`jcnn.compile_cache`): *cold* is the first (it compiles and writes the cache), *warm*
the second (it loads the compiled programs). Each process times, after its imports:

* ``init``: building the model and ``create_train_state`` (its init program is compiled too);
* ``trace``: tracing and lowering the train step (Python; the cache cannot skip it);
* ``compile``: XLA's compilation of the step, or loading it from the cache;
* ``run``: its first iteration;
* ``first result``: all of them, what a rerun waits for before its first step is done.

and counts the cache hits and writes (``jax.monitoring`` events). Target: warm <= 0.3x cold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(workload: str, batch: int) -> None:
    """One process: enable the cache, build and compile the workload, print a JSON line."""
    import jax

    events: list[str] = []
    jax.monitoring.register_event_listener(lambda event, **kw: events.append(event))
    from bench.workloads import common, jcnn_wl
    from jcnn import compile_cache

    folder = compile_cache.enable()
    spec = dict(common.specs(False)[{"W1": "W1-128"}.get(workload, workload)], batch=batch)
    start = time.perf_counter()
    runner = jcnn_wl.make(spec)  # a JaxRunner: the jitted step, its carry and batch
    jax.block_until_ready(runner.carry)
    made = time.perf_counter()
    lowered = runner._jit.lower(runner.carry, *runner.batch)
    traced = time.perf_counter()
    runner._compiled = lowered.compile()
    compiled = time.perf_counter()
    runner.run(1)
    done = time.perf_counter()
    result = {
        "init_s": made - start,
        "trace_s": traced - made,
        "compile_s": compiled - traced,
        "run_s": done - compiled,
        "first_s": done - start,
        "hits": events.count("/jax/compilation_cache/cache_hits"),
        "writes": events.count("/jax/compilation_cache/cache_misses"),
        "cache": None if folder is None else str(folder),
    }
    print(json.dumps(result), flush=True)


def _spawn(workload: str, batch: int, folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["JCNN_COMPILE_CACHE"] = str(folder)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "bench.cold_warm", "--child", workload, "--batch", str(batch)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f"{workload} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


FIGURES = (
    ("init_s", "init"),
    ("trace_s", "trace"),
    ("compile_s", "compile"),
    ("run_s", "run"),
    ("first_s", "first result"),
)


def measure(workloads: list[str], batch: int = 128) -> list[dict]:
    """One cold and one warm process per workload, sharing a new cache folder each."""
    rows = []
    for wl in workloads:
        with tempfile.TemporaryDirectory(prefix="jcnn-xla-") as tmp:
            cold = _spawn(wl, batch, Path(tmp) / "xla")
            warm = _spawn(wl, batch, Path(tmp) / "xla")
        rows.append({"workload": wl, "batch": batch, "cold": cold, "warm": warm})
    return rows


def _ratio(cold: float, warm: float) -> float:
    return warm / cold if cold else float("nan")


def text_lines(rows: list[dict]) -> list[str]:
    """The plain-text table ``main`` prints."""
    head = f"{'workload':<10}{'figure':<14}{'cold s':>9}{'warm s':>9}{'warm/cold':>11}"
    lines = [head, "-" * len(head)]
    for row in rows:
        wl, cold, warm = row["workload"], row["cold"], row["warm"]
        for key, label in FIGURES:
            lines.append(
                f"{wl:<10}{label:<14}{cold[key]:>9.2f}{warm[key]:>9.2f}"
                f"{_ratio(cold[key], warm[key]):>10.2f}x"
            )
        lines.append(
            f"{wl:<10}{'cache':<14}{cold['writes']:>5} written; warm: {warm['hits']} hits, "
            f"{warm['writes']} written"
        )
    return lines


def markdown_lines(rows: list[dict]) -> list[str]:
    """The section of docs/benchmarks.md: one row per workload and figure."""
    lines = [
        "| workload | figure | cold s | warm s | warm / cold |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        wl, cold, warm = row["workload"], row["cold"], row["warm"]
        for key, label in FIGURES:
            bold = "**" if key == "first_s" else ""
            lines.append(
                f"| {wl} (batch {row['batch']}) | {bold}{label}{bold} | {cold[key]:.2f} | "
                f"{warm[key]:.2f} | {bold}{_ratio(cold[key], warm[key]):.2f}x{bold} |"
            )
        lines.append(
            f"| {wl} (batch {row['batch']}) | cache | {cold['writes']} written | "
            f"{warm['hits']} hits, {warm['writes']} written | |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cold_warm", description=__doc__)
    p.add_argument("--workloads", default="W1,W2", help="comma-separated: W1, W2, W5-...")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.batch)
        return
    rows = measure(args.workloads.split(","), args.batch)
    print(f"batch {args.batch}; cold: first process, empty cache; warm: second process")
    print("\n".join(text_lines(rows)))


if __name__ == "__main__":
    main()
