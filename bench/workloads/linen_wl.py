"""Flax linen + optax; BatchNorm running statistics in the mutable ``batch_stats`` collection.

R50 (the device check's W4) is a ResNet-50 v1.5 written as the Flax ImageNet example writes it:
``dtype`` is the compute dtype (bfloat16 under ``mixed_bfloat16``) and ``param_dtype`` stays
float32; its logits come back in float32."""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from bench.workloads import common


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        x = nn.max_pool(nn.relu(nn.Conv(8, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


class Block(nn.Module):
    c: int
    s: int

    @nn.compact
    def __call__(self, x, train):
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=common.BN_MOMENTUM,
                     epsilon=common.BN_EPS)  # fmt: skip
        h = nn.relu(bn()(nn.Conv(self.c, (3, 3), self.s, padding=1, use_bias=False)(x)))
        h = bn()(nn.Conv(self.c, (3, 3), 1, padding=1, use_bias=False)(h))
        if self.s != 1 or x.shape[-1] != self.c:
            x = bn()(nn.Conv(self.c, (1, 1), self.s, use_bias=False)(x))
        return nn.relu(h + x)


class ResNet18(nn.Module):
    classes: int
    imagenet: bool

    @nn.compact
    def __call__(self, x, train=True):
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=common.BN_MOMENTUM,
                     epsilon=common.BN_EPS)  # fmt: skip
        if self.imagenet:
            x = nn.relu(bn()(nn.Conv(64, (7, 7), 2, padding=3, use_bias=False)(x)))
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        else:
            x = nn.relu(bn()(nn.Conv(64, (3, 3), 1, padding=1, use_bias=False)(x)))
        for c, s in ((64, 1), (128, 2), (256, 2), (512, 2)):
            x = Block(c, s)(x, train)
            x = Block(c, 1)(x, train)
        return nn.Dense(self.classes)(jnp.mean(x, axis=(1, 2)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 carrying the stride (v1.5), 1x1 expand to 4x; projection shortcut when
    the shape changes; every conv bias-free and followed by BatchNorm."""

    c: int
    s: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train):
        conv = partial(nn.Conv, use_bias=False, dtype=self.dtype)
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=common.BN_MOMENTUM,
                     epsilon=common.BN_EPS, dtype=self.dtype)  # fmt: skip
        h = nn.relu(bn()(conv(self.c, (1, 1))(x)))
        h = nn.relu(bn()(conv(self.c, (3, 3), self.s, padding=1)(h)))
        h = bn()(conv(4 * self.c, (1, 1))(h))
        if self.s != 1 or x.shape[-1] != 4 * self.c:
            x = bn()(conv(4 * self.c, (1, 1), self.s)(x))
        return nn.relu(h + x)


class ResNet50(nn.Module):
    """ResNet-50 v1.5 (ImageNet stem; ``blocks`` bottlenecks per stage) computing in ``dtype``."""

    classes: int
    blocks: tuple[int, ...] = common.R50_BLOCKS
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train=True):
        bn = partial(nn.BatchNorm, use_running_average=not train, momentum=common.BN_MOMENTUM,
                     epsilon=common.BN_EPS, dtype=self.dtype)  # fmt: skip
        x = nn.Conv(64, (7, 7), 2, padding=3, use_bias=False, dtype=self.dtype)(x)
        x = nn.max_pool(nn.relu(bn()(x)), (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for i, (n, c) in enumerate(zip(self.blocks, (64, 128, 256, 512))):
            for b in range(n):
                x = Bottleneck(c, 2 if i > 0 and b == 0 else 1, self.dtype)(x, train)
        x = nn.Dense(self.classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))
        return x.astype(jnp.float32)


def _r50(spec: dict) -> ResNet50:
    dtype = jnp.bfloat16 if spec.get("precision") == "mixed_bfloat16" else jnp.float32
    return ResNet50(1000, tuple(spec.get("blocks", common.R50_BLOCKS)), dtype)


def make(spec: dict):
    name = spec["name"]
    x, y = common.data(spec)
    if name == "W3":
        model = ResNet18(1000, True)
        variables = model.init(jax.random.key(0), jnp.asarray(x[:1]), train=False)
        from bench.workloads.jcnn_wl import InferRunner

        def infer(v, xb):
            return v, jnp.argmax(model.apply(v, xb, train=False), -1)

        return InferRunner(infer, variables, jnp.asarray(x), spec["batch"])
    if name == "W2":
        model, opt = ResNet18(10, False), optax.sgd(common.SGD_LR, common.SGD_MOMENTUM)
    elif name == "R50":
        model, opt = _r50(spec), optax.sgd(common.SGD_LR, common.SGD_MOMENTUM)
    else:
        model, opt = CNN(), optax.adam(common.ADAM_LR)
    init = partial(model.init, train=False)
    if name == "R50":  # one compiled init, not hundreds of eager ops
        init = jax.jit(init)
    variables = init(jax.random.key(0), jnp.asarray(x[:1]))
    params, stats = variables["params"], variables.get("batch_stats", {})

    def step(carry, xb, yb):
        params, stats, opt_state = carry

        def loss(p):
            if name in ("W2", "R50"):
                logits, upd = model.apply({"params": p, "batch_stats": stats}, xb, train=True,
                                          mutable=["batch_stats"])  # fmt: skip
                return common.cross_entropy(logits, yb), upd["batch_stats"]
            return common.cross_entropy(model.apply({"params": p}, xb), yb), stats

        grads, new_stats = jax.grad(loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state

    carry = (params, stats, opt.init(params))
    if name == "W4":
        return common.JaxEpochRunner(step, carry, spec)
    return common.JaxRunner(step, carry, (jnp.asarray(x), jnp.asarray(y)), spec["batch"])
