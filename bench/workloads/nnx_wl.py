"""Flax NNX: stateful modules, ``nnx.Optimizer``, ``nnx.jit`` steps (the documented idiom)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bench.workloads import common


class CNN(nnx.Module):
    def __init__(self, rngs):
        self.c1 = nnx.Conv(1, 8, (5, 5), padding="VALID", rngs=rngs)
        self.c2 = nnx.Conv(8, 16, (3, 3), padding="VALID", rngs=rngs)
        self.fc = nnx.Linear(400, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.c1(x)), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.c2(x)), (2, 2), (2, 2))
        return self.fc(x.reshape(x.shape[0], -1))


def _bn(c, rngs):
    return nnx.BatchNorm(c, momentum=common.BN_MOMENTUM, epsilon=common.BN_EPS, rngs=rngs)


class Block(nnx.Module):
    def __init__(self, cin, c, s, rngs):
        conv = partial(nnx.Conv, use_bias=False, rngs=rngs)
        self.conv1, self.bn1 = conv(cin, c, (3, 3), strides=s, padding=1), _bn(c, rngs)
        self.conv2, self.bn2 = conv(c, c, (3, 3), padding=1), _bn(c, rngs)
        short = s != 1 or cin != c
        self.short_conv = nnx.data(conv(cin, c, (1, 1), strides=s) if short else None)
        self.short_bn = nnx.data(_bn(c, rngs) if short else None)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        if self.short_conv is not None:
            x = self.short_bn(self.short_conv(x))
        return nnx.relu(h + x)


class ResNet18(nnx.Module):
    def __init__(self, classes, imagenet, rngs):
        k, s, p = (7, 2, 3) if imagenet else (3, 1, 1)
        self.imagenet = imagenet
        self.stem = nnx.Conv(3, 64, (k, k), strides=s, padding=p, use_bias=False, rngs=rngs)
        self.bn = _bn(64, rngs)
        blocks, cin = [], 64
        for c, st in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Block(cin, c, st, rngs), Block(c, c, 1, rngs)]
            cin = c
        self.blocks = nnx.List(blocks)
        self.fc = nnx.Linear(512, classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.stem(x)))
        if self.imagenet:
            x = nnx.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for b in self.blocks:
            x = b(x)
        return self.fc(jnp.mean(x, axis=(1, 2)))


@nnx.jit
def _train_step(model, optimizer, x, y):
    grads = nnx.grad(lambda m: common.cross_entropy(m(x), y))(model)
    optimizer.update(model, grads)


@nnx.jit
def _infer(model, x):
    return jnp.argmax(model(x), -1)


class Runner:
    def __init__(self, spec):
        self.spec, self.items = spec, common.items_per_iter(spec)
        self.x, self.y = common.data(spec)
        rngs = nnx.Rngs(0)
        name = spec["name"]
        if name in ("W2", "W3"):
            self.model = ResNet18(common.num_classes(spec), name == "W3", rngs)
        else:
            self.model = CNN(rngs)
        if name == "W3":
            self.model.eval()
        else:
            self.model.train()
            opt = (
                optax.sgd(common.SGD_LR, common.SGD_MOMENTUM)
                if name == "W2"
                else optax.adam(common.ADAM_LR)
            )
            self.optimizer = nnx.Optimizer(self.model, opt, wrt=nnx.Param)
        if name != "W4":
            self.x, self.y = jnp.asarray(self.x), jnp.asarray(self.y)
        self.epoch = 0

    def compile(self):
        self.run(1)
        return None

    def run(self, n):
        name = self.spec["name"]
        for _ in range(n):
            if name == "W3":
                out = _infer(self.model, self.x)
            elif name == "W4":
                for idx in common.epoch_batches(self.spec["n"], self.spec["batch"], self.epoch):
                    _train_step(self.model, self.optimizer, self.x[idx], self.y[idx])
                self.epoch += 1
            else:
                _train_step(self.model, self.optimizer, self.x, self.y)
        jax.block_until_ready(out if name == "W3" else nnx.state(self.model))


def make(spec: dict):
    return Runner(spec)
