"""Training steps compile once and never synchronise with the host inside the step.

The partial last batch is DROPPED, as documented by ``jcnn.train.make_epoch`` and
``jcnn.data.batching.batches`` (``drop_remainder=True``, what the host loop of ``fit`` uses): a
batch of another size would be a new shape and a second trace.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jcnn import layers as L
from jcnn import train as T
from jcnn.data.batching import batches as host_batches
from jcnn.training.losses import softmax_cross_entropy


def _net():
    return L.serial(L.Conv(3, 3), L.Relu(), L.MaxPool(2), L.BatchNorm(), L.Flatten(), L.Dense(4))


def _counting_loss(counter):
    def loss(logits, labels):
        counter.append(1)  # runs once per trace, never per call
        return softmax_cross_entropy(logits, labels)

    return loss


@pytest.mark.parametrize("microbatches", [1, 2])
def test_steps_compile_once_and_do_not_touch_the_host(microbatches):
    net, opt, traces = _net(), optax.adam(1e-2), []
    ts = T.create_train_state(net, (8, 8, 1), opt)
    step = T.make_train_step(net.apply, _counting_loss(traces), opt, microbatches=microbatches)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((26, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 4, 26).astype(np.int32)
    batches = list(host_batches(images, labels, 4, order=np.arange(26), put=jax.device_put))
    assert len(batches) == 6  # 26 = 6 * 4 + 2: the partial batch of 2 is dropped
    ts, _ = step(ts, batches[0])  # the one trace and compilation
    batches = [jax.device_put(b) for b in batches]
    jax.block_until_ready((ts, batches))
    with jax.transfer_guard("disallow"):  # any implicit host<->device copy raises
        for batch in batches[1:] * 3:
            ts, metrics = step(ts, batch)
    jax.block_until_ready(ts)
    assert len(traces) == 1
    assert step.jitted(ts)._cache_size() == 1
    assert int(ts.step) == 16
    assert np.isfinite(float(metrics["loss"]))


def test_epochs_compile_once_with_remainder_dropped():
    net, opt, traces = _net(), optax.sgd(1e-2), []
    ts = T.create_train_state(net, (8, 8, 1), opt)
    epoch = T.make_epoch(net.apply, _counting_loss(traces), opt, batch_size=4)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.standard_normal((18, 8, 8, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, 18), jnp.int32)
    data_rng = T.data_rng(0)
    epochs = [jnp.asarray(e, jnp.int32) for e in range(3)]
    ts, _ = epoch(ts, images, labels, epochs[0], data_rng=data_rng)
    jax.block_until_ready(ts)
    first = len(traces)
    # No device->host copy (no synchronisation) inside the epoch. (run_epoch still uploads its
    # Python int ``start`` each call, a scalar host->device copy, so only that direction is
    # guarded here.)
    with jax.transfer_guard_device_to_host("disallow"):
        for e in epochs[1:]:
            ts, metrics = epoch(ts, images, labels, e, data_rng=data_rng)
    assert len(traces) == first  # later epochs reuse the first epoch's program
    assert first == 1, f"the first epoch traced the step {first} times"
    assert metrics["loss"].shape == (4,)  # 18 // 4 steps: the remainder of 2 is dropped
    assert int(ts.step) == 12


def test_a_partial_batch_would_retrace():
    # Why the partial batch is dropped: another batch size is another program.
    net, opt, traces = _net(), optax.sgd(1e-2), []
    ts = T.create_train_state(net, (8, 8, 1), opt)
    step = T.make_train_step(net.apply, _counting_loss(traces), opt)
    x = jnp.zeros((4, 8, 8, 1))
    y = jnp.zeros((4,), jnp.int32)
    ts, _ = step(ts, (x, y))
    ts, _ = step(ts, (x[:2], y[:2]))
    assert len(traces) == 2


def test_microbatched_step_equals_full_batch_step_without_batchnorm():
    net = L.serial(L.Conv(3, 3), L.Relu(), L.MaxPool(2), L.Flatten(), L.Dense(4))
    opt = optax.sgd(0.1)
    rng = np.random.default_rng(2)
    batch = (
        jnp.asarray(rng.standard_normal((8, 8, 8, 1)), jnp.float32),
        jnp.asarray(rng.integers(0, 4, 8), jnp.int32),
    )
    results = []
    for m in (1, 4):
        ts = T.create_train_state(net, (8, 8, 1), opt)
        step = T.make_train_step(net.apply, softmax_cross_entropy, opt, microbatches=m)
        results.append(step(ts, batch))
    (ts_full, met_full), (ts_micro, met_micro) = results
    np.testing.assert_allclose(float(met_micro["loss"]), float(met_full["loss"]), rtol=1e-6)
    for a, b in zip(
        jax.tree_util.tree_leaves(ts_micro.params), jax.tree_util.tree_leaves(ts_full.params)
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="microbatches=3 does not divide the batch of 8"):
        T.make_train_step(net.apply, softmax_cross_entropy, opt, microbatches=3)(ts_full, batch)
    # make_epoch knows its batch size: it refuses microbatches that do not divide it when made.
    with pytest.raises(ValueError, match="microbatches=3.*(divid|divide).*8"):
        T.make_epoch(net.apply, softmax_cross_entropy, opt, 8, microbatches=3)
