"""Training pieces of jcnn.train: train state, jit steps (donation, keys, BatchNorm state,
train/eval modes), hand-written steps from the parts, the on-device epoch, host batches
(jcnn.data.batching.batches, what fit's host loop iterates), freezing."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jcnn import batched, models
from jcnn import layers as L
from jcnn import train as T
from jcnn.data.batching import batches
from jcnn.layers.custom import custom
from jcnn.layers.shapes import ShapeError
from jcnn.training.losses import softmax_cross_entropy


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)
    )


def _copy(tree):
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


def _data(rng, n, shape, classes=3):
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return x, y


def _bn_dropout_net():
    """BatchNorm (state) and Dropout (keys) in one small net: (3, 3, 2) -> (3,)."""
    return L.serial(
        L.BatchNorm(momentum=0.9),
        L.Flatten(),
        L.Dense(16),
        L.Relu(),
        L.Dropout(0.5),
        L.Dense(3),
    )


BN_NET = _bn_dropout_net()
BN_OPT = optax.adam(3e-3)


@functools.cache
def _bn_step():
    """One compiled (not donating) train step of BN_NET, shared by the tests below."""
    return T.make_train_step(BN_NET.apply, softmax_cross_entropy, BN_OPT, donate=False)


@functools.cache
def _bn_eval():
    return T.make_eval_step(BN_NET.apply, softmax_cross_entropy)


@functools.cache
def _bn_forward():
    """``forward(params, state, x, key, train)``: jitted batched apply of BN_NET (train static)."""
    return jax.jit(
        lambda p, s, x, key, train: batched(BN_NET.apply)(p, s, x, key=key, train=train)[0],
        static_argnums=4,
    )


# --------------------------------------------------------------------------- train state


def test_create_train_state_documented_keys():
    net = L.serial(L.Flatten(), L.Dense(3))
    opt = optax.adam(1e-3)
    ts = T.create_train_state(net, (2, 2, 1), opt, seed=5)
    root = jax.random.key(5)
    _, params, state = net.init(jax.random.fold_in(root, 0), (2, 2, 1))
    assert _leaves_equal(ts.params, params) and _leaves_equal(ts.state, state)
    assert _leaves_equal(ts.opt_state, opt.init(params))
    assert ts.step.dtype == jnp.int32 and int(ts.step) == 0
    np.testing.assert_array_equal(ts.rng, jax.random.key_data(jax.random.fold_in(root, 1)))
    np.testing.assert_array_equal(
        jax.random.key_data(T.step_key(ts)),
        jax.random.key_data(jax.random.fold_in(jax.random.fold_in(root, 1), 0)),
    )
    other = T.create_train_state(net, (2, 2, 1), opt, seed=6)
    assert not np.array_equal(other.params["Dense_0"]["kernel"], ts.params["Dense_0"]["kernel"])
    assert not np.array_equal(other.rng, ts.rng)
    # The data stream is a third, independent key.
    np.testing.assert_array_equal(T.data_rng(5), jax.random.key_data(jax.random.fold_in(root, 2)))


def test_train_state_create_is_create_train_states_scheme():
    """TrainState.create (what transfer_setup builds on) == create_train_state around the same
    params: opt state, step 0 and the step-key stream of the seed."""
    net = L.serial(L.Flatten(), L.Dense(3))
    opt = optax.adam(1e-3)
    ts = T.create_train_state(net, (2, 2, 1), opt, seed=5)
    _, params, state = net.init(T.init_key(5), (2, 2, 1))
    assert _leaves_equal(T.TrainState.create(params, state, opt, seed=5), ts)
    assert not _leaves_equal(T.TrainState.create(params, state, opt, seed=6).rng, ts.rng)


def _counting_net():
    """A shape-preserving first layer that counts how often its init is traced, then a Conv."""
    traces = []

    def init(key, shape):
        traces.append(shape)
        return shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        return x, state

    counter = custom(init, apply, "Counter", output_shape=lambda s: s, pointwise=True)
    return L.serial(counter, L.Conv(2, (3, 3)), L.Flatten(), L.Dense(3)), traces


def test_bad_input_shape_raises_shape_error_without_tracing_init():
    net, traces = _counting_net()
    with pytest.raises(ShapeError, match="Conv"):
        T.create_train_state(net, (5,), optax.sgd(0.1))  # rank 1: the Conv needs (H, W, C)
    assert traces == []  # checked by arithmetic; init never traced (it was traced twice)
    T.create_train_state(net, (5, 5, 1), optax.sgd(0.1))
    assert traces == [(5, 5, 1)]  # a good shape: one trace


def test_create_train_state_inside_an_outer_jit_equals_outside():
    net, traces = _counting_net()
    inside = jax.jit(lambda: T.create_train_state(net, (5, 5, 1), optax.sgd(0.1), seed=3))()
    outside = T.create_train_state(net, (5, 5, 1), optax.sgd(0.1), seed=3)
    assert len(traces) == 2  # once in each: no failed attempt and retry inside the jit
    assert jax.tree.structure(inside) == jax.tree.structure(outside)
    for a, b in zip(jax.tree.leaves(inside), jax.tree.leaves(outside)):  # other -O levels
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    with pytest.raises(ShapeError):
        jax.jit(lambda: T.create_train_state(net, (5,), optax.sgd(0.1)))()
    assert len(traces) == 2


# --------------------------------------------------------------------------- the course CNN


def test_course_cnn_steps_decrease_loss_and_donate_the_old_state(rng):
    net = models.cnn()
    opt = optax.adam(1e-2)
    x, y = _data(rng, 16, (12, 12, 1), classes=10)
    ts = T.create_train_state(net, (12, 12, 1), opt, seed=0)
    step = T.make_train_step(net.apply, softmax_cross_entropy, opt)

    old = ts
    ts, metrics = step(ts, (x, y))
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(old))  # donated
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(ts))
    assert set(metrics) == {"loss", "accuracy"}
    assert np.isfinite(float(metrics["loss"]))

    losses = [float(metrics["loss"])]
    for _ in range(14):
        ts, metrics = step(ts, (x, y))
        losses.append(float(metrics["loss"]))
    assert int(ts.step) == 15
    assert losses[-1] < 0.5 * losses[0], losses
    assert float(metrics["accuracy"]) > 0.5  # memorising 16 random labels


def test_no_donation_when_disabled_and_sgd_matches_the_hand_derived_gradient(rng):
    net = L.serial(L.Flatten(), L.Dense(3))
    opt = optax.sgd(0.1)
    ts = T.create_train_state(net, (2, 2, 1), opt)
    step = T.make_train_step(net.apply, softmax_cross_entropy, opt, donate=False)
    x, y = _data(rng, 4, (2, 2, 1))
    new, metrics = step(ts, (x, y))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(ts))
    # Plain SGD: new = old - lr * grad of the mean cross-entropy, derived by hand for a linear
    # layer: dL/dW = X^T (softmax(XW + b) - onehot(y)) / B. The reported loss is the one before
    # the update.
    w, b = (np.asarray(ts.params["Dense_0"][k], np.float64) for k in ("kernel", "bias"))
    xf = x.reshape(4, -1).astype(np.float64)
    z = xf @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(
        float(metrics["loss"]), -np.log(p[np.arange(4), y]).mean(), rtol=1e-5
    )
    delta = (p - np.eye(3)[y]) / 4
    np.testing.assert_allclose(new.params["Dense_0"]["kernel"], w - 0.1 * xf.T @ delta, atol=1e-6)
    np.testing.assert_allclose(new.params["Dense_0"]["bias"], b - 0.1 * delta.sum(0), atol=1e-6)


# --------------------------------------------------------------------------- keys per step


def test_dropout_mask_of_step_t_comes_from_fold_in_rng_t(rng):
    net = L.serial(L.Dense(32), L.Dropout(0.5))
    opt = optax.sgd(0.01)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    target = np.zeros((4, 32), np.float32)
    ts = T.create_train_state(net, (5,), opt, seed=3)
    step = T.make_train_step(
        net.apply,
        lambda out, t: jnp.mean(jnp.square(out - t)),
        opt,
        metrics_fn=lambda out, t: {"kept": out != 0},
        donate=False,
    )
    masks = []
    for t in range(3):
        new, metrics = step(ts, (x, target))
        key = jax.random.fold_in(jax.random.wrap_key_data(ts.rng), t)
        expected, _ = batched(net.apply)(ts.params, ts.state, x, key=key, train=True)
        np.testing.assert_array_equal(np.asarray(metrics["kept"]), np.asarray(expected) != 0)
        masks.append(np.asarray(metrics["kept"]))
        ts = new
    assert 0.3 < masks[0].mean() < 0.7
    assert not np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], masks[2])
    # The same step of a state with the same rng replays the same mask.
    _, again = step(ts._replace(step=jnp.asarray(1, jnp.int32)), (x, target))
    key1 = jax.random.fold_in(jax.random.wrap_key_data(ts.rng), 1)
    replay, _ = batched(net.apply)(ts.params, ts.state, x, key=key1, train=True)
    np.testing.assert_array_equal(np.asarray(again["kept"]), np.asarray(replay) != 0)


# --------------------------------------------------------------------------- state and modes


def test_batchnorm_running_stats_threaded_by_train_step_not_by_eval(rng):
    x, y = _data(rng, 8, (3, 3, 2))
    x = x * 2.0 + 1.5  # batch mean ~1.5, variance ~4
    ts = T.create_train_state(BN_NET, (3, 3, 2), BN_OPT, seed=0)

    new, _ = _bn_step()(ts, (x, y))
    xf = x.astype(np.float64).reshape(-1, 2)
    bn = new.state["BatchNorm_0"]
    np.testing.assert_allclose(bn["mean"], 0.9 * 0.0 + 0.1 * xf.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn["var"], 0.9 * 1.0 + 0.1 * xf.var(0), rtol=1e-5)
    np.testing.assert_array_equal(ts.state["BatchNorm_0"]["mean"], np.zeros(2))  # old untouched
    newer, _ = _bn_step()(new, (x, y))
    np.testing.assert_allclose(
        newer.state["BatchNorm_0"]["mean"], 0.9 * bn["mean"] + 0.1 * xf.mean(0), rtol=1e-5
    )

    before = _copy(new.state)
    m1 = _bn_eval()(new, (x, y))
    assert _leaves_equal(new.state, before)  # evaluation reads the running stats only
    # Eval uses the running statistics: equal to a manual train=False forward pass.
    logits = _bn_forward()(new.params, new.state, x, None, False)
    np.testing.assert_allclose(
        float(m1["loss"]), float(softmax_cross_entropy(logits, y)), rtol=1e-6
    )
    # ...and differs from normalising with the batch statistics.
    train_logits = _bn_forward()(new.params, new.state, x, jax.random.key(0), True)
    assert not np.allclose(np.asarray(logits), np.asarray(train_logits))


def test_eval_with_dropout_is_deterministic_and_train_is_not(rng):
    x, y = _data(rng, 8, (3, 3, 2))
    ts = T.create_train_state(BN_NET, (3, 3, 2), BN_OPT, seed=1)
    a, b = _bn_eval()(ts, (x, y)), _bn_eval()(ts, (x, y))
    assert float(a["loss"]) == float(b["loss"])
    # train=False ignores the key (dropout off, running statistics)...
    keys = jax.random.key(0), jax.random.key(1)
    evals = [_bn_forward()(ts.params, ts.state, x, k, False) for k in keys]
    np.testing.assert_array_equal(evals[0], evals[1])
    np.testing.assert_allclose(
        float(softmax_cross_entropy(evals[0], y)), float(a["loss"]), rtol=1e-6
    )
    # ...train=True does not: two keys, two dropout masks.
    trains = [_bn_forward()(ts.params, ts.state, x, k, True) for k in keys]
    assert not np.allclose(np.asarray(trains[0]), np.asarray(trains[1]))
    # Two train steps from states that differ only in rng give different losses.
    other = ts._replace(rng=T.data_rng(99))
    la = float(_bn_step()(ts, (x, y))[1]["loss"])
    lb = float(_bn_step()(other, (x, y))[1]["loss"])
    assert la != lb


def test_train_step_without_a_key_fails_for_dropout(rng):
    ts = T.create_train_state(BN_NET, (3, 3, 2), optax.sgd(0.1))
    with pytest.raises(ValueError, match="PRNG key"):
        T.loss_and_grads(
            BN_NET.apply,
            softmax_cross_entropy,
            ts.params,
            ts.state,
            _data(rng, 4, (3, 3, 2)),
            key=None,
        )


# --------------------------------------------------------------------------- reusable pieces


def test_hand_written_step_equals_make_train_step_bit_for_bit(rng):
    ts0 = T.create_train_state(BN_NET, (3, 3, 2), BN_OPT, seed=2)
    batches = [_data(rng, 8, (3, 3, 2)) for _ in range(3)]

    @jax.jit
    def my_step(ts, batch):
        key = jax.random.fold_in(jax.random.wrap_key_data(ts.rng), ts.step)
        (loss, (new_state, metrics)), grads = T.loss_and_grads(
            BN_NET.apply, softmax_cross_entropy, ts.params, ts.state, batch, key=key
        )
        return T.apply_gradients(ts, grads, new_state, BN_OPT), metrics

    mine, theirs = ts0, ts0
    for batch in batches:
        mine, m_mine = my_step(mine, batch)
        theirs, m_theirs = _bn_step()(theirs, batch)
        assert _leaves_equal(m_mine, m_theirs)
    assert _leaves_equal(mine, theirs)
    assert int(mine.step) == 3
    assert not _leaves_equal(mine.params, ts0.params)
    assert not _leaves_equal(mine.state, ts0.state)


def test_apply_gradients_is_one_optax_update():
    net = L.serial(L.Dense(2))
    opt = optax.sgd(0.5)
    ts = T.create_train_state(net, (3,), opt)
    grads = jax.tree.map(jnp.ones_like, ts.params)
    new = T.apply_gradients(ts, grads, {"Dense_0": {}}, opt)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(new.params["Dense_0"][name], ts.params["Dense_0"][name] - 0.5)
    assert int(new.step) == 1 and np.array_equal(new.rng, ts.rng)


# --------------------------------------------------------------------------- on-device epoch


def test_epoch_permutation_is_documented_permutation():
    rng_data = T.data_rng(4)
    for epoch in (0, 1):
        perm = np.asarray(T.epoch_permutation(rng_data, epoch, 10))
        assert sorted(perm) == list(range(10))
        key = jax.random.fold_in(jax.random.wrap_key_data(rng_data), epoch)
        np.testing.assert_array_equal(perm, jax.random.permutation(key, 10))
    assert not np.array_equal(
        T.epoch_permutation(rng_data, 0, 10), T.epoch_permutation(rng_data, 1, 10)
    )


def test_make_epoch_equals_steps_over_the_epoch_permutation(rng):
    """One compiled epoch == make_train_step over batches perm[i*B:(i+1)*B] (the documented order)."""
    x, y = _data(rng, 37, (3, 3, 2))  # 4 steps of 8, 5 examples dropped
    ts0 = T.create_train_state(BN_NET, (3, 3, 2), BN_OPT, seed=0)
    drng = T.data_rng(0)
    run_epoch = T.make_epoch(BN_NET.apply, softmax_cross_entropy, BN_OPT, 8, donate=False)
    ts_epoch, metrics = run_epoch(ts0, x, y, 1, data_rng=drng)
    assert metrics["loss"].shape == (4,) and metrics["accuracy"].shape == (4,)
    assert int(ts_epoch.step) == 4

    perm = np.asarray(T.epoch_permutation(drng, 1, 37))
    ts, losses = ts0, []
    for i in range(4):
        idx = perm[i * 8 : (i + 1) * 8]
        ts, m = _bn_step()(ts, (x[idx], y[idx]))
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(np.asarray(metrics["loss"]), losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ts_epoch), jax.tree.leaves(ts)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    # Another epoch index is another order.
    other, _ = run_epoch(ts0, x, y, 2, data_rng=drng)
    assert not _leaves_equal(other.params, ts_epoch.params)


@pytest.mark.parametrize("start, num_steps", [(-1, 1), (0, 0), (3, 2), (5, None)])
def test_make_epoch_rejects_steps_outside_the_epoch(rng, start, num_steps):
    net = L.serial(L.Flatten(), L.Dense(3))
    ts = T.create_train_state(net, (2, 2, 1), optax.sgd(0.1))
    run_epoch = T.make_epoch(net.apply, softmax_cross_entropy, optax.sgd(0.1), 4)
    x, y = _data(rng, 16, (2, 2, 1))
    with pytest.raises(ValueError, match="outside"):
        run_epoch(ts, x, y, 0, data_rng=T.data_rng(0), start=start, num_steps=num_steps)
    with pytest.raises(ValueError, match="batch_size"):
        run_epoch(ts, x[:3], y[:3], 0, data_rng=T.data_rng(0))


def test_host_batches_follow_the_permutation_and_drop_the_remainder(rng):
    x = np.arange(11 * 2, dtype=np.float32).reshape(11, 2)
    y = np.arange(11, dtype=np.int32)
    perm = rng.permutation(11)
    got = list(batches(x, y, 3, order=perm, put=jax.device_put))
    assert len(got) == 3
    for i, (xb, yb) in enumerate(got):
        assert isinstance(xb, jax.Array)
        np.testing.assert_array_equal(yb, perm[3 * i : 3 * i + 3])
        np.testing.assert_array_equal(xb, x[perm[3 * i : 3 * i + 3]])
    later = list(batches(x, y, 3, order=perm, start=2, put=jax.device_put, prefetch=1))
    assert len(later) == 1
    np.testing.assert_array_equal(later[0][1], perm[6:9])


# --------------------------------------------------------------------------- freezing


def _nested_params():
    net = L.serial(
        L.serial(L.Conv(2, (3, 3)), L.Relu(), L.Conv(2, (1, 1)), name="features"),
        L.Flatten(),
        L.Dense(3).named("head"),
    )
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), (5, 5, 1))[1])
    return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)


def _frozen_paths(params, patterns):
    labels = T.param_labels(params, patterns)
    flat = jax.tree_util.tree_flatten_with_path(labels)[0]
    return sorted(T.param_path(p) for p, lab in flat if lab == "frozen")


ALL = [
    "features/Conv_0/bias",
    "features/Conv_0/kernel",
    "features/Conv_1/bias",
    "features/Conv_1/kernel",
    "head/bias",
    "head/kernel",
]


@pytest.mark.parametrize(
    "patterns, expected",
    [
        ((), []),
        (["features"], ALL[:4]),
        (["features/"], ALL[:4]),
        (["features/Conv_0"], ALL[:2]),
        (["features/Conv_0/kernel"], ["features/Conv_0/kernel"]),
        (["features/*/kernel"], ["features/Conv_0/kernel", "features/Conv_1/kernel"]),
        (["*bias"], ["features/Conv_0/bias", "features/Conv_1/bias", "head/bias"]),
        (["head", "features/Conv_1"], ALL[2:]),
        (["feat"], []),  # a prefix of a name is not the name
        (["Conv_0"], []),  # patterns are full paths
    ],
)
def test_param_labels_on_nested_names(patterns, expected):
    params = _nested_params()
    assert (
        sorted(T.param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]) == ALL
    )
    assert _frozen_paths(params, patterns) == expected


def test_param_path_joins_every_kind_of_key():
    tree = {"a": [{"k": 1}, (2,)], "b": T.TrainState(3, 4, 5, 6, 7)}
    paths = [T.param_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    assert paths == ["a/0/k", "a/1/0", "b/params", "b/state", "b/opt_state", "b/step", "b/rng"]


def test_freeze_gives_zero_updates_to_frozen_leaves():
    params = _nested_params()
    opt = T.freeze(optax.sgd(1.0), params, ["features/Conv_0"])
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    flat = {
        T.param_path(p): np.asarray(u) for p, u in jax.tree_util.tree_flatten_with_path(updates)[0]
    }
    for path, u in flat.items():
        if path.startswith("features/Conv_0"):
            np.testing.assert_array_equal(u, np.zeros_like(u))
        else:
            np.testing.assert_array_equal(u, -np.ones_like(u))


@pytest.mark.parametrize(
    "patterns, unmatched",
    [(["nope"], ["nope"]), (["head", "features/Conv_2", "hed"], ["features/Conv_2", "hed"])],
)
def test_freeze_names_every_pattern_that_matches_nothing(patterns, unmatched):
    with pytest.raises(ValueError) as info:
        T.freeze(optax.sgd(1.0), _nested_params(), patterns)
    message = str(info.value)
    assert message.startswith(f"freeze: {unmatched} match no parameter path")
    assert "features/Conv_0/kernel" in message  # the paths there are


def test_freeze_accepts_the_name_of_a_layer_without_params():
    """A whole body (jcnn.transfer) names its Flatten too: not a typo, it exists, with no params."""
    params = _nested_params()
    T.freeze(optax.sgd(1.0), params, ["features", "Flatten_0"])
    assert _frozen_paths(params, ["features", "Flatten_0"]) == ALL[:4]
    with pytest.raises(ValueError, match=r"\['Flatten_1'\] match no parameter path"):
        T.freeze(optax.sgd(1.0), params, ["features", "Flatten_1"])


@pytest.mark.parametrize("fn", [T.freeze, T.param_labels])
def test_frozen_as_a_string_is_refused(fn):
    args = (optax.sgd(1.0), _nested_params()) if fn is T.freeze else (_nested_params(),)
    with pytest.raises(TypeError, match=r"got the string 'head'.*use \['head'\]"):
        fn(*args, "head")


# --------------------------------------------------------------------------- loss checks


TINY = L.serial(L.Flatten(), L.Dense(3))


def _per_example(out, y):
    return optax.softmax_cross_entropy_with_integer_labels(out, y)


@pytest.mark.parametrize(
    "loss_fn, metrics_fn, error, words",
    [
        (_per_example, T.default_metrics, TypeError, "loss_fn _per_example returned shape (4,)"),
        (lambda out, y: jnp.sum(y), T.default_metrics, TypeError, "scalar of dtype int32"),
        (softmax_cross_entropy, lambda out, y: 1.0, TypeError, "returned float: it must return"),
    ],
)
@pytest.mark.parametrize("make", ["train", "eval"])
def test_steps_check_the_loss_and_metrics_when_traced(make, loss_fn, metrics_fn, error, words):
    if make == "train":
        step = T.make_train_step(TINY.apply, loss_fn, optax.sgd(0.1), metrics_fn=metrics_fn)
    else:
        step = T.make_eval_step(TINY.apply, loss_fn, metrics_fn=metrics_fn)
    ts = T.create_train_state(TINY, (2,), optax.sgd(0.1))
    with pytest.raises(error) as info:
        step(ts, (jnp.ones((4, 2)), jnp.zeros(4, jnp.int32)))
    assert words in str(info.value)


def test_hand_written_loops_may_return_array_metrics(rng):
    """Only fit needs scalar metrics (it averages them); a step may return arrays."""
    step = T.make_eval_step(TINY.apply, softmax_cross_entropy, metrics_fn=lambda o, y: {"o": o})
    ts = T.create_train_state(TINY, (2,), optax.sgd(0.1))
    assert step(ts, (jnp.ones((4, 2)), jnp.zeros(4, jnp.int32)))["o"].shape == (4, 3)
