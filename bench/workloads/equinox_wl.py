"""Equinox: per-example modules (channels-first) vmapped with ``axis_name="batch"``,
``eqx.nn.State`` for BatchNorm, ``eqx.filter_jit`` steps."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from bench.workloads import common


class CNN(eqx.Module):
    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d
    fc: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.c1 = eqx.nn.Conv2d(1, 8, 5, key=k1)
        self.c2 = eqx.nn.Conv2d(8, 16, 3, key=k2)
        self.fc = eqx.nn.Linear(400, 10, key=k3)

    def __call__(self, x, state):
        pool = eqx.nn.MaxPool2d(2, 2)
        x = pool(jax.nn.relu(self.c1(x)))
        x = pool(jax.nn.relu(self.c2(x)))
        return self.fc(x.reshape(-1)), state


def _bn(c):
    return eqx.nn.BatchNorm(c, axis_name="batch", momentum=common.BN_MOMENTUM, eps=common.BN_EPS)


class Block(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    bn2: eqx.nn.BatchNorm
    short: tuple | None

    def __init__(self, cin, c, s, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(cin, c, 3, s, 1, use_bias=False, key=k1)
        self.conv2 = eqx.nn.Conv2d(c, c, 3, 1, 1, use_bias=False, key=k2)
        self.bn1, self.bn2 = _bn(c), _bn(c)
        self.short = None
        if s != 1 or cin != c:
            self.short = (eqx.nn.Conv2d(cin, c, 1, s, use_bias=False, key=k3), _bn(c))

    def __call__(self, x, state):
        h, state = self.bn1(self.conv1(x), state)
        h, state = self.bn2(self.conv2(jax.nn.relu(h)), state)
        if self.short is not None:
            x, state = self.short[1](self.short[0](x), state)
        return jax.nn.relu(h + x), state


class ResNet18(eqx.Module):
    stem: eqx.nn.Conv2d
    bn: eqx.nn.BatchNorm
    blocks: list
    fc: eqx.nn.Linear
    imagenet: bool = eqx.field(static=True)

    def __init__(self, classes, imagenet, key):
        keys = jax.random.split(key, 10)
        k, s, p = (7, 2, 3) if imagenet else (3, 1, 1)
        self.imagenet = imagenet
        self.stem = eqx.nn.Conv2d(3, 64, k, s, p, use_bias=False, key=keys[0])
        self.bn = _bn(64)
        blocks, cin, i = [], 64, 1
        for c, st in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Block(cin, c, st, keys[i]), Block(c, c, 1, keys[i + 1])]
            cin, i = c, i + 2
        self.blocks = blocks
        self.fc = eqx.nn.Linear(512, classes, key=keys[9])

    def __call__(self, x, state):
        x, state = self.bn(self.stem(x), state)
        x = jax.nn.relu(x)
        if self.imagenet:
            x = eqx.nn.MaxPool2d(3, 2, 1)(x)
        for b in self.blocks:
            x, state = b(x, state)
        return self.fc(jnp.mean(x, axis=(1, 2))), state


def _batched(model, x, state):
    return jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x, state)


def _make_step(opt):
    @eqx.filter_jit(donate="all")
    def step(model, state, opt_state, x, y):
        def loss(m, s):
            logits, s = _batched(m, x, s)
            return common.cross_entropy(logits, y), s

        (_, state), grads = eqx.filter_value_and_grad(loss, has_aux=True)(model, state)
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state, opt_state

    return step


@eqx.filter_jit
def _infer(model, state, x):
    return jnp.argmax(_batched(model, x, state)[0], -1)


class Runner:
    def __init__(self, spec):
        self.spec, self.items, name = spec, common.items_per_iter(spec), spec["name"]
        x, y = common.data(spec, channels_first=True)
        key = jax.random.key(0)
        if name in ("W2", "W3"):
            self.model, self.state = eqx.nn.make_with_state(ResNet18)(
                common.num_classes(spec), name == "W3", key
            )
        else:
            self.model, self.state = CNN(key), eqx.nn.State(CNN(key))
        if name == "W3":
            self.model = eqx.nn.inference_mode(self.model)
        else:
            opt = (
                optax.sgd(common.SGD_LR, common.SGD_MOMENTUM)
                if name == "W2"
                else optax.adam(common.ADAM_LR)
            )
            self.opt_state = opt.init(eqx.filter(self.model, eqx.is_array))
            self.step = _make_step(opt)
        self.x, self.y = (x, y) if name == "W4" else (jnp.asarray(x), jnp.asarray(y))
        self.epoch = 0

    def compile(self):
        self.run(1)
        return None

    def _train(self, x, y):
        self.model, self.state, self.opt_state = self.step(
            self.model, self.state, self.opt_state, x, y
        )

    def run(self, n):
        name = self.spec["name"]
        for _ in range(n):
            if name == "W3":
                out = _infer(self.model, self.state, self.x)
            elif name == "W4":
                for idx in common.epoch_batches(self.spec["n"], self.spec["batch"], self.epoch):
                    self._train(self.x[idx], self.y[idx])
                self.epoch += 1
            else:
                self._train(self.x, self.y)
        jax.block_until_ready(out if name == "W3" else eqx.filter(self.model, eqx.is_array))


def make(spec: dict):
    return Runner(spec)
