"""Step time and compiled memory of data-parallel training: 1 vs 8 devices, with/without remat.

    python bench/scale.py --out runs/scale.json            # 1 and 8 host devices (CPU)
    python bench/scale.py --devices 1 --steps 5 --batch 64 # quicker

Each device count runs in its own subprocess, because the number of host (CPU) devices is the
XLA flag ``--xla_force_host_platform_device_count`` and must be set before JAX starts. On a
machine with accelerators, ``--platform native`` uses its real devices instead (the device
counts then select the first N of them).

Rows (all synthetic data, Adam, the step of ``jcnn.make_train_step(..., mesh=mesh)``):
    cnn  dp     the course CNN (5,386 params) on 28x28x1, params replicated
    deep dp     a residual conv net (stem + ``--blocks`` blocks of 2x[Conv 3x3, BatchNorm, ReLU])
    deep remat  the same with every block wrapped in ``jcnn.remat.remat``
    deep fsdp   the same as ``deep dp`` with every param split FSDP-style (``min_size=0``: the
                step is built on ``jcnn.training.Placement(mesh, fsdp=True, min_size=0)``, as
                ``make_train_step(fsdp=True)`` leaves arrays under 2**14 elements replicated)

Memory is per device, from the compiled step's ``memory_analysis()``: ``args`` (train state and
batch shard), ``temp`` (activations and scratch). Every step compiles with
``jcnn.remat.compiler_options()`` so remat saves memory on CPU too (see ``jcnn/layers/remat.py``).
Timings on a shared CPU are rough; the 8 "devices" of one CPU share its cores, so no speed-up
is expected there, only the same results with the batch split eight ways.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,8", help="comma list of device counts")
    parser.add_argument("--batch", type=int, default=128, help="global batch size")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--blocks", type=int, default=4, help="residual blocks of the deep net")
    parser.add_argument("--width", type=int, default=16, help="channels of the deep net")
    parser.add_argument("--platform", default="cpu", choices=["cpu", "native"])
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per subprocess")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def deep_net(blocks: int, width: int, use_remat: bool):
    from jcnn import layers as L
    from jcnn.layers.remat import remat

    def block():
        body = L.serial(
            L.Conv(width, (3, 3), padding="SAME"),
            L.BatchNorm(),
            L.Relu(),
            L.Conv(width, (3, 3), padding="SAME"),
            L.BatchNorm(),
        )
        res = L.serial(L.residual(body), L.Relu())
        return remat(res) if use_remat else res

    return L.serial(
        L.Conv(width, (3, 3), stride=2, padding="SAME"),
        L.Relu(),
        *[block() for _ in range(blocks)],
        L.GlobalAvgPool(),
        L.Dense(10),
    )


def train_step(net, opt, mesh, fsdp: bool, options: dict):
    """The data-parallel step on ``mesh``; with ``fsdp`` every divisible array is split."""
    from jcnn.training import Placement, TrainStep, make_train_step
    from jcnn.training.losses import softmax_cross_entropy
    from jcnn.training.step import make_update

    if not fsdp:
        return make_train_step(
            net.apply, softmax_cross_entropy, opt, mesh=mesh, compiler_options=options
        )
    placement = Placement(mesh, fsdp=True, min_size=0)
    update = make_update(net.apply, softmax_cross_entropy, opt, placement=placement)
    return TrainStep(update, placement, ema=None, donate=True, compiler_options=options)


def measure(name: str, mode: str, net, args: argparse.Namespace, devices) -> dict:
    """Compiles and times one train step; returns a row of the table."""
    import jax
    import numpy as np
    import optax

    from jcnn import distributed as D
    from jcnn.layers.remat import compiler_options
    from jcnn.tools.summary import count_params
    from jcnn.training import create_train_state

    mesh = D.data_mesh(devices)
    fsdp = mode == "fsdp"
    opt = optax.adam(1e-3)
    ts = jax.jit(lambda: create_train_state(net, (28, 28, 1), opt, seed=0))()
    ts = D.shard_params(ts, mesh, fsdp=fsdp, min_size=0)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int32)
    batch = D.shard_batch((x, y), mesh)
    step = train_step(net, opt, mesh, fsdp, compiler_options())
    t0 = time.perf_counter()
    compiled = step.lower(ts, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    ts, metrics = step(ts, batch)  # warm-up (uses the cached executable)
    jax.block_until_ready(ts)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        ts, metrics = step(ts, batch)
        jax.block_until_ready((ts, metrics))
        times.append(time.perf_counter() - t0)
    step_s = float(np.median(times))
    return {
        "devices": len(devices),
        "model": name,
        "mode": mode,
        "params": count_params(net, (28, 28, 1)),
        "batch": args.batch,
        "compile_s": round(compile_s, 2),
        "step_ms": round(1e3 * step_s, 2),
        "images_per_s": round(args.batch / step_s, 1),
        "args_mb": round(mem.argument_size_in_bytes / 2**20, 3),
        "temp_mb": round(mem.temp_size_in_bytes / 2**20, 3),
        "loss": round(float(D.host_value(metrics["loss"])), 4),
    }


def worker(args: argparse.Namespace) -> None:
    import jax

    from jcnn.models.course import cnn

    n = args.worker
    devices = jax.devices()[:n]
    if len(devices) != n:
        raise SystemExit(f"bench/scale.py: asked for {n} devices, found {len(jax.devices())}")
    if args.batch % n:
        raise SystemExit(f"bench/scale.py: batch {args.batch} does not split over {n} devices")
    rows = [measure("cnn", "dp", cnn(), args, devices)]
    for mode in ("dp", "remat", "fsdp"):
        net = deep_net(args.blocks, args.width, use_remat=mode == "remat")
        rows.append(measure("deep", mode, net, args, devices))
    for row in rows:
        print("RESULT " + json.dumps(row), flush=True)


def run_worker(n: int, args: argparse.Namespace) -> list[dict]:
    env = dict(os.environ)
    if args.platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flag = f"--xla_force_host_platform_device_count={n}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    argv = [f"--{k}={getattr(args, k)}" for k in ("batch", "steps", "blocks", "width", "platform")]
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", str(n)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"worker with {n} devices failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def table(rows: list[dict]) -> str:
    cols = ["devices", "model", "mode", "batch", "compile_s", "step_ms", "images_per_s"]
    cols += ["args_mb", "temp_mb", "loss"]
    cells = [cols] + [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return
    counts = [int(n) for n in args.devices.split(",")]
    rows: list[dict] = []
    for n in counts:
        rows += run_worker(n, args)
    print(table(rows))
    by = {(r["devices"], r["mode"], r["model"]): r for r in rows}
    for n in counts:
        dp, rm = by.get((n, "dp", "deep")), by.get((n, "remat", "deep"))
        if dp and rm and rm["temp_mb"] > 0:
            print(
                f"{n} device(s): remat temp {rm['temp_mb']} MB vs {dp['temp_mb']} MB "
                f"({dp['temp_mb'] / rm['temp_mb']:.1f}x less), step {rm['step_ms']} vs "
                f"{dp['step_ms']} ms"
            )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"config": vars(args), "rows": rows}, f, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
