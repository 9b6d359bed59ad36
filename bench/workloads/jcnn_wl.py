"""jcnn: the models from jcnn.models, steps from jcnn.train and jcnn.privacy (default lowerings:
"auto"); R50 (the device check's W4) under a jcnn.layers.precision policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import jcnn
from bench.workloads import common
from jcnn import models, privacy
from jcnn import train as T
from jcnn.layers.core import Layer
from jcnn.layers.precision import Policy, with_policy
from jcnn.training.losses import softmax_cross_entropy


def microbatches_for(batch: int) -> int | None:
    """Slices of ~125 images for large batches (XLA:CPU keeps them in cache); None below 500."""
    if batch < 500:
        return None
    m = max(1, round(batch / 125))
    while batch % m:
        m -= 1
    return m if m > 1 else None


def model(spec: dict) -> Layer:
    """jcnn's network of a workload (also what the device check's analytic FLOP count reads).

    W2: the CIFAR ResNet-18; W3: ResNet-18; R50: ResNet-50 (``spec["blocks"]`` bottlenecks per
    stage, default 3-4-6-3) wrapped in the precision policy ``spec["precision"]``; else the
    course CNN.
    """
    name = spec["name"]
    if name == "W3":
        return models.resnet18(num_classes=1000)
    if name == "W2":
        return models.cifar_resnet18(num_classes=10)
    if name == "R50":
        blocks = tuple(spec.get("blocks", common.R50_BLOCKS))
        if blocks == common.R50_BLOCKS:
            net = models.resnet50(num_classes=1000)
        else:  # a shallower stack of the same bottlenecks (the --quick size)
            net = _bottleneck_resnet(blocks, 1000)
        return with_policy(net, Policy.from_name(spec.get("precision", "float32")))
    return models.cnn(num_classes=10)


def _bottleneck_resnet(blocks: tuple[int, ...], classes: int) -> Layer:
    """ResNet-50's layout (its stem, bottleneck stages, pool and fc) with ``blocks`` per stage."""
    from jcnn import layers as L
    from jcnn.models.common import classifier_pool, torch_batch_norm
    from jcnn.models.resnet import resnet_stages

    stem = [
        L.Conv(64, (7, 7), stride=2, padding=3, use_bias=False),
        torch_batch_norm(),
        L.Relu(),
        L.MaxPool((3, 3), stride=2, padding=1),
    ]
    stages, _ = resnet_stages("bottleneck", blocks, 64)
    return L.serial(*stem, *stages, classifier_pool(), L.Dense(classes), name="resnet_bottleneck")


def make(spec: dict):
    name = spec["name"]
    x, y = common.data(spec)
    net = model(spec)
    if name == "W3":
        ts = T.create_train_state(net, x.shape[1:], optax.sgd(0.1), seed=0)

        def infer(carry, xb):
            logits, _ = jcnn.batched(net.apply)(carry[0], carry[1], xb, train=False)
            return carry, jnp.argmax(logits, -1)

        return InferRunner(infer, (ts.params, ts.state), jnp.asarray(x), spec["batch"])
    if name in ("W2", "R50"):
        opt = optax.sgd(common.SGD_LR, common.SGD_MOMENTUM)
    else:
        opt = optax.adam(common.ADAM_LR)
    ts = T.create_train_state(net, x.shape[1:], opt, seed=0)
    if name == "W4":
        epoch = T.make_epoch(net.apply, softmax_cross_entropy, opt, spec["batch"])
        return EpochRunner(epoch, ts, jnp.asarray(x), jnp.asarray(y), spec)
    if spec.get("private"):  # W5-dp: DP-SGD, per-example gradients (no micro-batches)

        def private_step(carry, xb, yb):
            new, _ = privacy.private_train_step(
                net.apply, softmax_cross_entropy, opt, carry, (xb, yb),
                l2_clip=common.DP_CLIP, noise_multiplier=common.DP_NOISE,
            )  # fmt: skip
            return new

        return common.JaxRunner(private_step, ts, (jnp.asarray(x), jnp.asarray(y)), spec["batch"])
    micro = microbatches_for(spec["batch"])

    def step(carry, xb, yb):
        new, _ = T.train_step(
            net.apply, softmax_cross_entropy, opt, carry, (xb, yb), microbatches=micro
        )
        return new

    return common.JaxRunner(step, ts, (jnp.asarray(x), jnp.asarray(y)), spec["batch"])


class InferRunner:
    """Inference: ``f(carry, x) -> (carry, out)`` compiled ahead of time, nothing donated."""

    def __init__(self, f, carry, x, items):
        self._jit = jax.jit(f)
        self.carry, self.x, self.items = carry, x, items
        self._compiled = None

    @property
    def compiled(self):
        """The ahead-of-time compiled call (None before :meth:`compile`)."""
        return self._compiled

    def compile(self):
        self._compiled = self._jit.lower(self.carry, self.x).compile()
        self.run(1)
        return common.jax_flops(self._compiled)

    def run(self, n):
        for _ in range(n):
            out = self._compiled(self.carry, self.x)[1]
        jax.block_until_ready(out)


class EpochRunner:
    """W4: ``jcnn.train.make_epoch``, one compiled call per epoch (shuffle + lax.scan)."""

    def __init__(self, epoch_fn, ts, x, y, spec):
        self.epoch_fn, self.ts, self.x, self.y = epoch_fn, ts, x, y
        self.items = common.items_per_iter(spec)
        self.rng = T.data_rng(0)
        self.epoch = 0

    def compile(self):
        self.run(1)
        return None

    def run(self, n):
        for _ in range(n):
            self.ts, metrics = self.epoch_fn(self.ts, self.x, self.y, self.epoch, data_rng=self.rng)
            self.epoch += 1
        jax.block_until_ready((self.ts, metrics))
