"""Haiku: ``hk.transform_with_state`` modules (NHWC), optax, ``jax.jit`` steps."""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from bench.workloads import common


def _bn():
    return hk.BatchNorm(True, True, decay_rate=common.BN_MOMENTUM, eps=common.BN_EPS)


def _cnn(x, is_training):
    del is_training
    x = hk.max_pool(jax.nn.relu(hk.Conv2D(8, 5, padding="VALID")(x)), 2, 2, "VALID")
    x = hk.max_pool(jax.nn.relu(hk.Conv2D(16, 3, padding="VALID")(x)), 2, 2, "VALID")
    return hk.Linear(10)(hk.Flatten()(x))


def _block(x, c, s, train):
    h = jax.nn.relu(_bn()(hk.Conv2D(c, 3, s, with_bias=False)(x), train))
    h = _bn()(hk.Conv2D(c, 3, 1, with_bias=False)(h), train)
    if s != 1 or x.shape[-1] != c:
        x = _bn()(hk.Conv2D(c, 1, s, with_bias=False)(x), train)
    return jax.nn.relu(h + x)


def _resnet(classes, imagenet):
    def f(x, is_training):
        if imagenet:
            x = jax.nn.relu(
                _bn()(hk.Conv2D(64, 7, 2, padding=[(3, 3)] * 2, with_bias=False)(x), is_training)
            )
            x = hk.max_pool(x, 3, 2, "SAME")
        else:
            x = jax.nn.relu(_bn()(hk.Conv2D(64, 3, 1, with_bias=False)(x), is_training))
        for c, s in ((64, 1), (128, 2), (256, 2), (512, 2)):
            x = _block(x, c, s, is_training)
            x = _block(x, c, 1, is_training)
        return hk.Linear(classes)(jnp.mean(x, axis=(1, 2)))

    return f


def make(spec: dict):
    name = spec["name"]
    x, y = common.data(spec)
    fn = _cnn if name in ("W1", "W4") else _resnet(common.num_classes(spec), name == "W3")
    model = hk.transform_with_state(fn)
    params, state = model.init(jax.random.key(0), jnp.asarray(x[:2]), True)
    if name == "W3":
        from bench.workloads.jcnn_wl import InferRunner

        def infer(carry, xb):
            logits, _ = model.apply(carry[0], carry[1], None, xb, False)
            return carry, jnp.argmax(logits, -1)

        return InferRunner(infer, (params, state), jnp.asarray(x), spec["batch"])
    opt = (
        optax.sgd(common.SGD_LR, common.SGD_MOMENTUM)
        if name == "W2"
        else optax.adam(common.ADAM_LR)
    )

    def step(carry, xb, yb):
        params, state, opt_state = carry

        def loss(p):
            logits, new_state = model.apply(p, state, None, xb, True)
            return common.cross_entropy(logits, yb), new_state

        grads, state = jax.grad(loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state

    carry = (params, state, opt.init(params))
    if name == "W4":
        return common.JaxEpochRunner(step, carry, spec)
    return common.JaxRunner(step, carry, (jnp.asarray(x), jnp.asarray(y)), spec["batch"])
