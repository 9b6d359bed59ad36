"""``python -m bench.loops``: seconds per epoch of jcnn's default ``fit`` against its host loop and
a hand-written jitted step, for the models of the loop rule (``jcnn.training.loops``).

    python -m bench.loops                 # the four models, 3 interleaved repetitions
    python -m bench.loops --quick         # tiny sizes: a smoke test

Three ways to train one epoch of the same data, batch and optimiser (Adam 1e-3):

* ``fit``: ``jcnn.fit(...)`` with its defaults (the on-device loop);
* ``host``: ``jcnn.fit(..., on_device=False)`` (prefetched host batches);
* ``jit``: a hand-written loop: ``jax.jit`` of ``value_and_grad`` + ``optax`` update, donated
  state, one ``device_put`` batch per step, as a user would write it with jcnn's layers.

Each figure is the steady-state epoch (epochs after the first, which compiles), the minimum over
the repetitions (interleaved: fit, host, jit, fit, ...). The ratio is ``fit`` over the fastest of
the three: the default is the fast path when it is at most 1.15.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
import optax

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.training.losses import softmax_cross_entropy

ROOT = Path(__file__).resolve().parents[1]


def cases(quick: bool) -> dict[str, dict]:
    """Model, example shape, batch and epoch size of each row."""
    conv16 = L.serial(
        L.Conv(16, 3), L.Relu(), L.Conv(16, 3), L.Relu(), L.Conv(16, 3), L.Relu(), L.Flatten(),
        L.Dense(10),
    )  # fmt: skip
    rows = {
        "3x Conv(16, 3)": dict(net=conv16, shape=(28, 28, 1), batch=64, steps=40),
        "course CNN": dict(net=models.cnn(), shape=(28, 28, 1), batch=128, steps=40),
        "cifar_resnet18": dict(net=models.cifar_resnet18(), shape=(32, 32, 3), batch=32, steps=6),
        "mobilenet_v2": dict(
            net=models.mobilenet_v2(num_classes=10), shape=(32, 32, 3), batch=32, steps=6
        ),
    }
    if quick:
        rows = {k: {**v, "steps": 2, "batch": 8} for k, v in rows.items() if k != "cifar_resnet18"}
    return rows


def _data(case: dict) -> tuple[np.ndarray, np.ndarray]:
    n = case["batch"] * case["steps"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *case["shape"])).astype(np.float32)
    return x, rng.integers(0, 10, n).astype(np.int32)


def fit_epoch(case: dict, on_device: bool, epochs: int) -> float:
    """Seconds of the last epoch of a ``fit`` of ``epochs`` epochs."""
    result = jcnn.fit(
        case["net"], _data(case), epochs=epochs, batch_size=case["batch"], progress=False,
        optimizer=OPT, on_device=on_device,
    )  # fmt: skip
    return min(result.history["seconds"][1:])


def jit_epoch(case: dict, epochs: int) -> float:
    """Seconds of the fastest epoch after the first of a hand-written jitted loop."""
    net, opt = case["net"], OPT
    x, y = _data(case)

    def loss(params, state, xb, yb, key):
        out, state = jcnn.batched(net.apply)(params, state, xb, key=key, train=True)
        return softmax_cross_entropy(out, yb), state

    @jax.jit
    def step(params, state, opt_state, xb, yb, key):
        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state, xb, yb, key)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state, value

    _, params, state = net.init(jax.random.key(0), case["shape"])
    opt_state = opt.init(params)
    times = []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        perm = np.random.default_rng(epoch).permutation(len(x))
        for i in range(case["steps"]):
            idx = perm[i * case["batch"] : (i + 1) * case["batch"]]
            key = jax.random.fold_in(jax.random.key(1), epoch * 1000 + i)
            batch = jax.device_put((x[idx], y[idx]))
            params, state, opt_state, value = step(params, state, opt_state, *batch, key)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - t0)
    return min(times[1:])


OPT = optax.adam(1e-3)


def measure(quick: bool = False, reps: int = 3, epochs: int = 3) -> list[dict]:
    """One row per model: seconds per epoch of fit, host and jit (minimum over ``reps``)."""
    rows = []
    for name, case in cases(quick).items():
        got: dict[str, list[float]] = {"fit": [], "host": [], "jit": []}
        for _ in range(reps):
            got["fit"].append(fit_epoch(case, True, epochs))
            got["host"].append(fit_epoch(case, False, epochs))
            got["jit"].append(jit_epoch(case, epochs))
        best = {k: min(v) for k, v in got.items()}
        ratio = best["fit"] / min(best.values())
        rows.append({"model": name, "batch": case["batch"], "steps": case["steps"], **best,
                     "fit_over_fastest": ratio})  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    """A Markdown table of :func:`measure`'s rows."""
    lines = [
        "| model | batch x steps | default fit s/epoch | host loop s/epoch | jitted step s/epoch "
        "| fit / fastest |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch']} x {r['steps']} | {r['fit']:.3f} | {r['host']:.3f} | "
            f"{r['jit']:.3f} | {r['fit_over_fastest']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench", help="JSON folder")
    args = parser.parse_args(argv)
    jcnn.compile_cache.enable()
    rows = measure(args.quick, reps=1 if args.quick else args.reps, epochs=2 if args.quick else 3)
    print(f"# jax {jax.__version__}, {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loops.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
