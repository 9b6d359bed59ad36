"""``python -m bench.lowering_loops``: conv gradients inside loops vs one dispatch per step, CPU.

XLA:CPU rewrites non-canonical convolutions (the native backward convs) into the layout its
convolution runtime takes only in the ENTRY computation of a program; inside a ``lax.scan`` /
``while`` body they stay as generic loops and run 10-35x slower (see :mod:`jcnn.lowering`). This
script measures a full training step (forward, ``value_and_grad``, Adam) per model in two loops:

* ``scan``: ``steps`` batches in ONE jitted ``lax.scan`` (one dispatch per epoch);
* ``dispatch``: one jitted step per batch, called ``steps`` times from Python;

each with two conv rules:

* ``old``: ``lowering="auto"`` as it was: ``"patches"`` for thin convs, ``"native"`` otherwise
  (``jcnn.lowering.CPU_WIDE_CONV = "native"``);
* ``new``: ``lowering="auto"`` now: ``"patches"`` for thin convs, ``"canonical"`` otherwise;
* ``allcanon`` (only with ``--rules``): ``"canonical"`` for every conv, thin ones too.

Each cell is ``wall / CPU`` ms per step of compiled programs, interleaved A B C D A B C D; the
best of ``--reps`` (a cell whose repetitions exceed ``--budget`` seconds stops early). CPU is
the process CPU time (all threads), the steadier figure when the machine is shared.
The training step is written here (optax + :func:`jcnn.batched`) so that the script does not
depend on :mod:`jcnn.train`.

    python -m bench.lowering_loops                     # every case (a few minutes on 2 cores)
    python -m bench.lowering_loops --cases conv16,cnn64 --reps 3
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jcnn
from jcnn import layers as L
from jcnn import lowering as lw
from jcnn import models
from jcnn.training.losses import softmax_cross_entropy

# name -> (model factory, example shape, batch, steps)
CASES = {
    "conv16": (
        lambda: L.serial(
            *(m for _ in range(3) for m in (L.Conv(16, 3), L.Relu())), L.Flatten(), L.Dense(10)
        ),
        (28, 28, 1),
        64,
        6,
    ),
    "cnn64": (models.cnn, (28, 28, 1), 64, 12),
    "cnn1000": (models.cnn, (28, 28, 1), 1000, 4),
    "cifar_resnet18": (models.cifar_resnet18, (32, 32, 3), 32, 2),
    "mobilenet_v2": (lambda: models.mobilenet_v2(num_classes=10), (32, 32, 3), 32, 3),
}
# rule -> (jcnn.lowering.CPU_WIDE_CONV, jcnn.lowering.PATCHES_MAX_CHANNELS) while tracing
RULES = {"old": ("native", 8), "new": ("canonical", 8), "allcanon": ("canonical", 0)}


def _programs(name: str):
    """The jitted scan (all steps) and single step of ``name``, and their initial carry."""
    factory, shape, batch, steps = CASES[name]
    net = factory()
    _, params, state = net.init(jax.random.key(0), shape)
    opt = optax.adam(1e-3)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.random((batch * steps, *shape), np.float32))
    ys = jnp.asarray(np.arange(batch * steps) % 10)
    apply = jcnn.batched(net.apply)

    def step(carry, i):
        params, state, opt_state = carry
        xb = jax.lax.dynamic_slice_in_dim(xs, i * batch, batch)
        yb = jax.lax.dynamic_slice_in_dim(ys, i * batch, batch)

        def loss(p):
            key = jax.random.fold_in(jax.random.key(1), i)  # dropout (MobileNetV2)
            logits, new_state = apply(p, state, xb, key=key, train=True)
            return softmax_cross_entropy(logits, yb), new_state

        (value, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_state, opt_state), value

    carry = (params, state, opt.init(params))
    scan = jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(steps)))
    one = jax.jit(step)
    return scan, one, carry, steps


def _time_per_step(run, steps: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per step of ``run()``, which runs ``steps`` steps."""
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(run())
    return (time.perf_counter() - t) / steps, (time.process_time() - c) / steps


def measure(name: str, rules: list[str], reps: int, budget_s: float) -> dict:
    """``{(rule, loop): (wall, CPU) ms per step}`` of case ``name``: best of up to ``reps``.

    Every program is compiled first; then the repetitions are interleaved (old scan, old
    dispatch, new scan, ... and again) so that slow drifts of a shared machine hit all alike.
    A cell stops repeating once its repetitions took ``budget_s`` (the slow native loops).
    """
    runs = {}
    for rule in rules:
        saved = lw.CPU_WIDE_CONV, lw.PATCHES_MAX_CHANNELS
        lw.CPU_WIDE_CONV, lw.PATCHES_MAX_CHANNELS = RULES[rule]
        try:
            scan, one, carry, steps = _programs(name)
            scan_c = scan.lower(carry).compile()
            one_c = one.lower(carry, jnp.asarray(0)).compile()
        finally:
            lw.CPU_WIDE_CONV, lw.PATCHES_MAX_CHANNELS = saved

        def dispatch(one_c=one_c, carry=carry, steps=steps):
            c = carry
            for i in range(steps):
                c, _ = one_c(c, jnp.asarray(i))
            return c

        jax.block_until_ready(one_c(carry, jnp.asarray(0)))  # first-call costs, once
        runs[rule, "scan"] = partial(scan_c, carry)
        runs[rule, "dispatch"] = dispatch
    times = {key: [] for key in runs}
    for _ in range(reps):
        for key, run in runs.items():
            if not times[key] or sum(w for w, _ in times[key]) * steps < budget_s:
                times[key].append(_time_per_step(run, steps))
    return {key: tuple(1e3 * min(col) for col in zip(*t)) for key, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated: " + ",".join(CASES)
    )
    parser.add_argument("--rules", default="old,new", help="comma-separated: " + ",".join(RULES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, default=20.0, help="seconds after which a cell stops repeating"
    )
    args = parser.parse_args(argv)
    rules = args.rules.split(",")
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; ms/step, best of {args.reps};")
    print("each cell: wall / process CPU time (all threads; steadier on a shared machine)")
    head = f"{'case':<15}{'batch':>6}" + "".join(
        f"{r + ' ' + loop:>18}" for r in rules for loop in ("scan", "dispatch")
    )
    print(head)
    for name in args.cases.split(","):
        row = f"{name:<15}{CASES[name][2]:>6}"
        ms = measure(name, rules, args.reps, args.budget)
        for rule in rules:
            for loop in ("scan", "dispatch"):
                wall, cpu = ms[rule, loop]
                row += f"{f'{wall:.1f} / {cpu:.1f}':>18}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
