"""jax.example_libraries.stax + optax. stax's BatchNorm has no running statistics: W2/W3 use
batch statistics (the same arithmetic per step, without the running-average update)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.example_libraries import stax

from bench.workloads import common


def cnn():
    return stax.serial(
        stax.Conv(8, (5, 5)), stax.Relu, stax.MaxPool((2, 2), (2, 2)),
        stax.Conv(16, (3, 3)), stax.Relu, stax.MaxPool((2, 2), (2, 2)),
        stax.Flatten, stax.Dense(10),
    )  # fmt: skip


def conv_bn(c, k, s=1, relu=True):
    layers = [stax.Conv(c, (k, k), (s, s), [(k // 2, k // 2)] * 2), stax.BatchNorm(axis=(0, 1, 2))]
    return stax.serial(*layers, stax.Relu) if relu else stax.serial(*layers)


def block(cin, c, s):
    main = stax.serial(conv_bn(c, 3, s), conv_bn(c, 3, relu=False))
    short = conv_bn(c, 1, s, relu=False) if s != 1 or cin != c else stax.Identity
    return stax.serial(stax.FanOut(2), stax.parallel(main, short), stax.FanInSum, stax.Relu)


def resnet18(classes, imagenet):
    if imagenet:
        stem = [stax.Conv(64, (7, 7), (2, 2), [(3, 3)] * 2), stax.BatchNorm(axis=(0, 1, 2)), stax.Relu,
                stax.MaxPool((3, 3), (2, 2), "SAME")]  # fmt: skip
    else:
        stem = [conv_bn(64, 3)]
    layers, cin = list(stem), 64
    for c, s in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [block(cin, c, s), block(c, c, 1)]
        cin = c
    return stax.serial(*layers, _global_avg(), stax.Dense(classes))


def _global_avg():
    return (lambda rng, shape: ((shape[0], shape[-1]), ())), (
        lambda params, x, **kw: jnp.mean(x, axis=(1, 2))
    )


def make(spec: dict):
    name = spec["name"]
    x, y = common.data(spec)
    if name == "W3":
        init, apply = resnet18(1000, True)
        _, params = init(jax.random.key(0), (-1, *x.shape[1:]))
        from bench.workloads.jcnn_wl import InferRunner

        return InferRunner(
            lambda p, xb: (p, jnp.argmax(apply(p, xb), -1)), params, jnp.asarray(x), spec["batch"]
        )
    if name == "W2":
        (init, apply), opt = resnet18(10, False), optax.sgd(common.SGD_LR, common.SGD_MOMENTUM)
    else:
        (init, apply), opt = cnn(), optax.adam(common.ADAM_LR)
    _, params = init(jax.random.key(0), (-1, *x.shape[1:]))

    def step(carry, xb, yb):
        params, opt_state = carry
        grads = jax.grad(lambda p: common.cross_entropy(apply(p, xb), yb))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    carry = (params, opt.init(params))
    if name == "W4":
        return common.JaxEpochRunner(step, carry, spec)
    return common.JaxRunner(step, carry, (jnp.asarray(x), jnp.asarray(y)), spec["batch"])
