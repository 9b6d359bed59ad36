"""``python -m bench.zoo_compile``: trace and XLA compile time of zoo models' train-mode forward.

    python -m bench.zoo_compile convnext_tiny efficientnet_b0 mobilenet_v2 resnet18
    python -m bench.zoo_compile densenet121 --size 32 --batch 4

For each model (a builder name in ``jcnn.models``): ``init`` at ``(size, size, 3)``, then one
``jax.jit`` of the batched train-mode apply with a PRNG key (Dropout and StochasticDepth active),
timed as tracing + lowering, XLA compilation, and the first run. The persistent compilation cache
is not enabled here, so every compile is a real one. Compare builds A/B in one session: times
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import jcnn
from jcnn import models


def measure(name: str, size: int = 64, batch: int = 2) -> dict[str, float]:
    """Seconds of ``trace`` (tracing and lowering), ``compile`` and ``run`` for one model."""
    net = getattr(models, name)()
    _, params, state = net.init(jax.random.key(0), (size, size, 3))
    apply = jcnn.batched(net.apply)
    step = jax.jit(lambda p, s, x, k: apply(p, s, x, key=k, train=True))
    x, key = jnp.ones((batch, size, size, 3)), jax.random.key(1)
    t0 = time.perf_counter()
    lowered = step.lower(params, state, x, key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    jax.block_until_ready(compiled(params, state, x, key))
    t3 = time.perf_counter()
    return {"trace": t1 - t0, "compile": t2 - t1, "run": t3 - t2}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.zoo_compile", description=__doc__)
    p.add_argument("models", nargs="+", help="builder names in jcnn.models (resnet18, ...)")
    p.add_argument("--size", type=int, default=64, help="image side (default 64)")
    p.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    args = p.parse_args(argv)
    unknown = [m for m in args.models if not callable(getattr(models, m, None))]
    if unknown:
        p.error(f"no builder {unknown} in jcnn.models; e.g. {', '.join(models.SUPPORTED[:4])}")
    print(f"train-mode forward with a key, batch {args.batch}, {args.size}x{args.size}x3")
    print(f"{'model':<18}{'trace s':>9}{'compile s':>11}{'run s':>8}")
    for name in args.models:
        t = measure(name, args.size, args.batch)
        print(f"{name:<18}{t['trace']:>9.2f}{t['compile']:>11.2f}{t['run']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
