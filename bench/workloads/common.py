"""Workload specs, the shared random data, and the runner protocol every framework implements.

A runner is built by ``make(spec)`` in a framework's module and offers::

    runner.compile()   # build + compile (JAX: ``jit(...).lower(...).compile()``); returns FLOPs or None
    runner.run(n)      # n iterations (steps / inference calls / epochs), blocking until done
    runner.items       # images processed per iteration

Workloads (``spec["name"]``):
    W1   the course CNN training step (Adam 0.005), batch ``spec["batch"]`` of 28x28x1
    W2   CIFAR ResNet-18 training step (BatchNorm running stats, SGD 0.1 momentum 0.9), 32x32x3
    W3   ResNet-18 (ImageNet stem, 1,000 classes) inference, ``spec["size"]`` squared RGB images
    W4   one epoch of W1 on ``spec["n"]`` images at ``spec["batch"]``, the loop included
    W5   the course CNN training step at batch 256 (Adam 0.005): ``spec["private"]`` DP-SGD
         (per-example clipping to ``DP_CLIP``, noise ``DP_NOISE``; jcnn.privacy, PyTorch +
         Opacus) or the same step without privacy; measured for ``spec["frameworks"]`` only
    R50  the device check's W4 (:mod:`bench.device` only, not in :func:`specs`): a ResNet-50 v1.5
         training step (SGD 0.1 momentum 0.9, BatchNorm running stats, 1,000 classes) on
         ``spec["size"]`` squared RGB images, stages of ``spec["blocks"]`` bottlenecks (ResNet-50:
         3-4-6-3), under ``spec["precision"]`` (``"mixed_bfloat16"``: float32 params, bfloat16
         compute, float32 logits)
"""

from __future__ import annotations

import numpy as np

ADAM_LR = 0.005
SGD_LR = 0.1
SGD_MOMENTUM = 0.9
BN_MOMENTUM = 0.9  # Flax convention: new = 0.9 * old + 0.1 * batch (PyTorch momentum=0.1)
BN_EPS = 1e-5
DP_CLIP = 1.0  # W5: per-example L2 clipping norm
DP_NOISE = 1.1  # W5: noise multiplier (the TF Privacy MNIST tutorial's)
DP_FRAMEWORKS = ("jcnn", "torch")  # W5's peers: jcnn.privacy and PyTorch + Opacus
R50_BLOCKS = (3, 4, 6, 3)  # bottlenecks per stage of ResNet-50


def specs(quick: bool, w3_size: int = 112) -> dict[str, dict]:
    """The workload table; ``quick`` shrinks every size for a smoke test."""
    if quick:
        return {
            "W1-1000": {"name": "W1", "batch": 32, "steps": 2},
            "W1-128": {"name": "W1", "batch": 16, "steps": 2},
            "W2": {"name": "W2", "batch": 4, "size": 16, "steps": 1},
            "W3": {"name": "W3", "batch": 4, "size": 32, "steps": 1},
            "W4": {"name": "W4", "batch": 16, "n": 64, "steps": 1},
            **_w5(batch=16, steps=2),
        }
    return {
        "W1-1000": {"name": "W1", "batch": 1000, "steps": 5},
        "W1-128": {"name": "W1", "batch": 128, "steps": 20},
        "W2": {"name": "W2", "batch": 128, "size": 32, "steps": 1},
        "W3": {"name": "W3", "batch": 256, "size": w3_size, "steps": 1},
        "W4": {"name": "W4", "batch": 128, "n": 5000, "steps": 1},
        **_w5(batch=256, steps=10),
    }


def _w5(batch: int, steps: int) -> dict[str, dict]:
    """W5-dp (DP-SGD) and W5-sgd (the same step, not private), for jcnn and PyTorch only."""
    return {
        f"W5-{kind}": {"name": "W5", "batch": batch, "steps": steps, "private": kind == "dp",
                       "frameworks": DP_FRAMEWORKS}
        for kind in ("dp", "sgd")
    }  # fmt: skip


def items_per_iter(spec: dict) -> int:
    """Images per iteration: the batch, or for W4 the images of the (remainder-dropped) epoch."""
    if spec["name"] == "W4":
        return spec["n"] // spec["batch"] * spec["batch"]
    return spec["batch"]


def data(spec: dict, channels_first: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The same seeded random images and labels for every framework (NHWC, or NCHW)."""
    rng = np.random.default_rng(0)
    name = spec["name"]
    if name in ("W1", "W4", "W5"):
        n = spec["n"] if name == "W4" else spec["batch"]
        shape, classes = (n, 28, 28, 1), 10
    elif name == "W2":
        shape, classes = (spec["batch"], spec["size"], spec["size"], 3), 10
    else:
        shape, classes = (spec["batch"], spec["size"], spec["size"], 3), 1000
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, classes, shape[0]).astype(np.int32)
    if channels_first:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, y


def num_classes(spec: dict) -> int:
    """1,000 for the ImageNet-shaped workloads (W3, R50), else 10."""
    return 1000 if spec["name"] in ("W3", "R50") else 10


def epoch_batches(n: int, batch: int, epoch: int) -> list[np.ndarray]:
    """The index arrays of one shuffled epoch (remainder dropped), the same for every peer."""
    perm = np.random.default_rng(1000 + epoch).permutation(n)
    return [perm[i * batch : (i + 1) * batch] for i in range(n // batch)]


def jax_flops(compiled) -> float | None:
    """FLOPs of a compiled JAX computation from XLA's cost analysis (None when unavailable)."""
    try:
        cost = compiled.cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0]
        return float(cost["flops"])
    except Exception:  # noqa: BLE001 - optional figure
        return None


class JaxRunner:
    """Runs an ahead-of-time compiled ``step(carry, *batch) -> carry`` (carry donated)."""

    def __init__(self, step, carry, batch, items, donate=True):
        import jax

        self._jit = jax.jit(step, donate_argnums=(0,) if donate else ())
        self.carry, self.batch, self.items = carry, batch, items
        self._compiled = None

    @property
    def compiled(self):
        """The ahead-of-time compiled step (None before :meth:`compile`): its
        ``memory_analysis()`` and ``cost_analysis()`` are XLA's figures."""
        return self._compiled

    def compile(self):
        self._compiled = self._jit.lower(self.carry, *self.batch).compile()
        self.run(1)
        return jax_flops(self._compiled)

    def run(self, n):
        import jax

        for _ in range(n):
            self.carry = self._compiled(self.carry, *self.batch)
        jax.block_until_ready(self.carry)


class JaxEpochRunner:
    """W4 for JAX peers: the idiomatic host loop, one jitted step per shuffled batch."""

    def __init__(self, step, carry, spec):
        import jax

        self._jit = jax.jit(step, donate_argnums=(0,))
        self.carry, self.spec = carry, spec
        self.x, self.y = data(spec)
        self.items = items_per_iter(spec)
        self.epoch = 0

    def compile(self):
        b = self.spec["batch"]
        compiled = self._jit.lower(self.carry, self.x[:b], self.y[:b]).compile()
        self.run(1)
        return jax_flops(compiled) and jax_flops(compiled) * (self.spec["n"] // b)

    def run(self, n):
        import jax

        for _ in range(n):
            for idx in epoch_batches(self.spec["n"], self.spec["batch"], self.epoch):
                self.carry = self._jit(self.carry, self.x[idx], self.y[idx])
            self.epoch += 1
        jax.block_until_ready(self.carry)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy with integer labels (optax's, for every JAX peer)."""
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
