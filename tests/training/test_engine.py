"""The step builder and fit on one device: combinations, EMA, custom estimators, evaluation,
data fingerprints, callbacks in a real run, and fit's size."""

from __future__ import annotations

import inspect
import itertools
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnn
from jcnn import layers as L
from jcnn.training import EarlyStopping, KeepBest, MetricsLogger
from jcnn.training.estimators import loss_and_grads
from jcnn.training.losses import softmax_cross_entropy
from jcnn.training.privacy import DPSGD

REPO = Path(__file__).resolve().parents[2]
NET = L.serial(L.Conv(3, 3), L.Relu(), L.Dropout(0.1), L.Flatten(), L.Dense(4))


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 1)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)


def noise(key, x):
    return x + 0.1 * jax.random.normal(key, x.shape, x.dtype)


# A half fraction of the 2^4 design: every option both ways, every pair of options together.
COMBINATIONS = [
    (mb, private, ema, noise if (mb == 2) ^ private ^ (ema is not None) else None)
    for mb, private, ema in itertools.product([1, 2], [False, True], [None, 0.9])
]


@pytest.mark.parametrize("microbatches,private,ema,transform", COMBINATIONS)
def test_every_combination_trains_in_both_loops_alike(microbatches, private, ema, transform):
    x, y = data()
    kw = dict(
        epochs=1, batch_size=16, optimizer=optax.sgd(0.1), progress=False, ema=ema,
        microbatches=microbatches, transform=transform,
        privacy=DPSGD(l2_clip=1.0, noise_multiplier=0.5) if private else None,
    )  # fmt: skip
    device = jcnn.fit(NET, (x, y), on_device=True, **kw)
    host = jcnn.fit(NET, (x, y), on_device=False, **kw)
    assert int(device.train_state.step) == 4
    for a, b in zip(jax.tree.leaves(device.train_state), jax.tree.leaves(host.train_state)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert (device.ema_params is None) == (ema is None)
    assert ("train_clip_fraction" in device.history) == private


def test_ema_follows_its_definition():
    x, y = data()
    opt = optax.sgd(0.1)
    step = jcnn.make_train_step(NET.apply, softmax_cross_entropy, opt, ema=0.8)
    ts = jcnn.create_train_state(NET, (6, 6, 1), opt)
    average = jax.tree.map(np.asarray, ts.params)
    for i in range(3):
        ts, _ = step(ts, (x[16 * i : 16 * i + 16], y[16 * i : 16 * i + 16]))
        average = jax.tree.map(lambda a, p: 0.8 * a + 0.2 * np.asarray(p), average, ts.params)
    for a, b in zip(jax.tree.leaves(ts.ema), jax.tree.leaves(average)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_custom_estimator_gets_placement_loops_and_ema():
    """A per-example weighted loss: weights of 0 and 2 on halves equal the plain loss on the
    doubled second half, so the custom step equals the plain step on that half."""
    x, y = data(32)
    w = np.repeat(np.array([0.0, 2.0], np.float32), 16)

    def weighted(outputs, target):
        labels, weights = target
        per = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
        return jnp.mean(per * weights)

    def gradients(params, state, batch, key):
        (_, (new_state, metrics)), grads = loss_and_grads(
            NET.apply, weighted, params, state, batch, key=key, train=False,
            metrics_fn=lambda o, t: {},
        )  # fmt: skip
        return grads, new_state, metrics

    opt = optax.sgd(0.1)
    custom = jcnn.make_train_step(NET.apply, weighted, opt, gradients=gradients, ema=0.5)
    plain = jcnn.make_train_step(NET.apply, softmax_cross_entropy, opt,
                                 gradients=lambda p, s, b, k: gradients(p, s, (b[0], (b[1], np.ones(16, np.float32))), k))  # fmt: skip
    a, _ = custom(jcnn.create_train_state(NET, (6, 6, 1), opt), (x, (y, w)))
    b, _ = plain(jcnn.create_train_state(NET, (6, 6, 1), opt), (x[16:], y[16:]))
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert a.ema is not None


def test_equal_arguments_give_the_same_compiled_step():
    opt = optax.sgd(0.1)
    one = jcnn.make_train_step(NET.apply, softmax_cross_entropy, opt, microbatches=2)
    assert one is jcnn.make_train_step(NET.apply, softmax_cross_entropy, opt, microbatches=2)
    assert one is not jcnn.make_train_step(NET.apply, softmax_cross_entropy, opt)


def test_evaluate_and_predict_match_a_direct_apply():
    x, y = data(50)
    result = jcnn.fit(NET, (x, y), epochs=1, batch_size=10, ema=0.5, progress=False)
    ts = result.train_state
    out, _ = jcnn.batched(NET.apply)(ts.params, ts.state, jnp.asarray(x), train=False)
    np.testing.assert_allclose(jcnn.predict(NET, ts, x, batch_size=16), out, rtol=1e-5, atol=1e-6)
    got = jcnn.evaluate(NET, ts, (x, y), batch_size=16)
    assert got["loss"] == pytest.approx(float(softmax_cross_entropy(out, y)), rel=1e-5)
    assert got["accuracy"] == pytest.approx(float(np.mean(np.argmax(out, 1) == y)))
    ema_out, _ = jcnn.batched(NET.apply)(ts.ema, ts.state, jnp.asarray(x), train=False)
    np.testing.assert_allclose(jcnn.predict(NET, ts, x, ema=True), ema_out, rtol=1e-5, atol=1e-6)
    plain = jcnn.create_train_state(NET, (6, 6, 1), optax.sgd(0.1))
    with pytest.raises(ValueError, match="keeps no EMA"):
        jcnn.evaluate(NET, plain, (x, y), ema=True)


def test_an_empty_batch_is_an_error_not_a_nan():
    opt = optax.sgd(0.1)
    step = jcnn.make_train_step(NET.apply, softmax_cross_entropy, opt)
    ts = jcnn.create_train_state(NET, (6, 6, 1), opt)
    with pytest.raises(ValueError, match="empty batch"):
        step(ts, (np.zeros((0, 6, 6, 1), np.float32), np.zeros(0, np.int32)))


def test_a_checkpoint_of_other_data_is_refused(tmp_path):
    x, y = data()
    kw = dict(epochs=1, batch_size=16, progress=False, checkpoint_dir=tmp_path / "c")
    jcnn.fit(NET, (x, y), **kw)
    with pytest.raises(ValueError, match="holds a run on other training data"):
        jcnn.fit(NET, (x[::-1].copy(), y), **{**kw, "epochs": 2})
    again = jcnn.fit(NET, (x, y), **{**kw, "epochs": 2})  # the same data resumes
    assert again.resumed_from == 4


def test_callbacks_and_learning_rate_in_a_run(tmp_path):
    x, y = data()
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 20))
    best = KeepBest(tmp_path / "best", monitor="val_accuracy")
    result = jcnn.fit(
        NET, (x, y), val=(x, y), epochs=6, batch_size=16, optimizer=opt, progress=False,
        callbacks=[MetricsLogger(tmp_path / "log.jsonl"), MetricsLogger(tmp_path / "log.csv"),
                   best, EarlyStopping(monitor="val_loss", patience=1, min_delta=10.0)],
    )  # fmt: skip
    # min_delta=10 never counts as an improvement: epoch 1 sets the best, epoch 2 stops
    assert result.history["epoch"] == [1, 2]
    assert result.history["lr"] == pytest.approx([0.1 * (1 - 3 / 20), 0.1 * (1 - 7 / 20)])
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["lr"] == result.history["lr"][1]
    assert (tmp_path / "log.csv").read_text().splitlines()[0].startswith("epoch,step,")
    restored = best.restore(jcnn.create_train_state(NET, (6, 6, 1), opt))
    assert int(restored.step) == 4 * best.best_epoch


def test_fit_reads_in_one_screen():
    source = inspect.getsource(jcnn.fit)
    doc = jcnn.fit.__doc__
    assert len(source.splitlines()) - len(doc.splitlines()) <= 80


def test_docs_name_fit_the_function():
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    texts += sorted((REPO / "jcnn").rglob("*.py")) + sorted((REPO / "examples").glob("*"))
    for path in texts:
        if path.is_file():
            assert not re.search(r"jcnn\.fit\.(fit|evaluate|FitResult)|from jcnn\.fit import",
                                 path.read_text()), path  # fmt: skip
