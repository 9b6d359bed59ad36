"""jcnn.privacy: per-example gradients against a loop of single-example grads, clipping, the
noise's standard deviation, the private step against the non-private one (and micro-batched
against whole), accounting against TF Privacy's published values, the BatchNorm refusal and
``fit(privacy=DPSGD(...))``."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jcnn import batched, models
from jcnn import layers as L
from jcnn import privacy as P
from jcnn import train as T
from jcnn.training import fit, make_train_step
from jcnn.training.losses import softmax_cross_entropy

# The programs this file compiles itself (references, per-example gradients) run once or a few
# times on tiny inputs: XLA's cheapest optimisation level compiles them several times faster.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _data(rng, n, shape, classes=3):
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n).astype(np.int32)
    return x, y


def _init(net, shape, seed=0):
    return _jit(lambda k: net.init(k, shape)[1:])(jax.random.key(seed))


def _conv_net():
    """Strided/padded/grouped convs (both CPU lowerings), both max-pool lowerings, AvgPool,
    GroupNorm, Dropout, Dense: (12, 12, 3) -> (3,)."""
    return L.serial(
        L.Conv(8, 3, stride=2, padding=1),  # C_in 3: "patches" filter gradient on CPU
        L.Relu(),
        L.Conv(16, 3, padding="SAME", groups=2),  # grouped
        L.GroupNorm(4),
        L.Gelu(),
        L.Conv(16, 1, padding=(1, 0)),  # C_in 16: the native gradient
        L.MaxPool(2),  # non-overlapping: the "mask" gradient
        L.MaxPool(2, stride=1),  # overlapping: the native gradient
        L.AvgPool(2, padding="SAME"),
        L.Flatten(),
        L.Dense(12),
        L.Dropout(0.5),
        L.Tanh(),
        L.Dense(3),
    )


def _branchy_net():
    """Residual, concat, LayerNorm, AdaptiveAvgPool, GlobalAvgPool, Dropout in the branches:
    (8, 8, 2) -> (3,)."""
    block = L.serial(L.Conv(4, 3, padding=1), L.LayerNorm(), L.Relu(), L.Dropout(0.3))
    return L.serial(
        L.Conv(4, 3, padding=1),
        L.residual(block),
        L.concat(L.Conv(2, 1), L.serial(L.Conv(3, 3, padding=1), L.Sigmoid())),
        L.residual(L.Conv(5, 1), L.AdaptiveAvgPool(8)),
        L.GlobalAvgPool(),
        L.Dense(3),
    )


def _course_cnn_with_dropout():
    """The course CNN (models.cnn) with Dropout before its Dense: (H, W, 1) -> (10,)."""
    *body, dense = (child for _, child in models.cnn().children)
    return L.serial(*body, L.Dropout(0.25), dense)


NETS = {
    "conv": (_conv_net, (12, 12, 3)),
    "branchy": (_branchy_net, (8, 8, 2)),
    "course_cnn": (_course_cnn_with_dropout, (16, 16, 1)),  # 16 -> 12 -> 6 -> 4 -> 2
}


def _allclose(a, b, rtol=2e-4, atol=2e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- per-example grads


@pytest.mark.parametrize("name", ["conv", "branchy"])
def test_per_example_grads_equal_a_loop_of_single_example_grads(name, rng):
    make, shape = NETS[name]
    net = make()
    params, state = _init(net, shape)
    classes = net.output_shape(shape)[0]
    x, y = _data(rng, 5, shape, classes)
    key = jax.random.key(7)
    losses, grads = _jit(
        lambda p, x, y, k: P.per_example_grads(net, softmax_cross_entropy, p, state, (x, y), key=k)
    )(params, x, y, key)
    grads = jax.tree.map(np.asarray, grads)

    # The reference: example i alone, by jax.grad of optax's cross-entropy of the per-example
    # apply, with the key jcnn.batched gives example i of the batch (split(key, B)[i]).
    @_jit
    def reference(p, x_i, y_i, k_i):
        def loss_i(p):
            out, _ = net.apply(p, state, x_i, key=k_i, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(out, y_i)

        return jax.value_and_grad(loss_i)(p)

    for i, k_i in enumerate(jax.random.split(key, len(x))):
        value, ref = reference(params, x[i], y[i], k_i)
        np.testing.assert_allclose(losses[i], value, rtol=1e-5)
        _allclose(jax.tree.map(lambda g, i=i: g[i], grads), ref)

    # Their mean is the batch gradient of the non-private step with the same key (same dropout
    # masks, through jcnn.batched).
    batch_grads = _jit(
        lambda p, k: T.loss_and_grads(net.apply, softmax_cross_entropy, p, state, (x, y), key=k)
    )(params, key)[1]
    _allclose(jax.tree.map(lambda g: g.mean(0), grads), batch_grads)


def test_dropout_masks_are_per_example(rng):
    net = L.serial(L.Flatten(), L.Dropout(0.5), L.Dense(3, use_bias=False))
    params, state = _init(net, (40,))
    x = jnp.ones((4, 40))
    _, grads = _jit(
        lambda p, k: P.per_example_grads(
            net, softmax_cross_entropy, p, state, (x, jnp.zeros(4, jnp.int32)), key=k
        )
    )(params, jax.random.key(0))
    kept = np.asarray(grads["Dense_0"]["kernel"]).any(axis=2)  # (B, 40): the inputs kept
    assert 0.2 < kept.mean() < 0.8
    assert len({row.tobytes() for row in kept}) == 4  # a different mask for every example


def test_per_example_norms_are_global_l2_norms(rng):
    grads = {"a": rng.normal(size=(3, 4, 2)), "b": {"c": rng.normal(size=(3, 5))}}
    expected = [
        math.sqrt(np.sum(grads["a"][i] ** 2) + np.sum(grads["b"]["c"][i] ** 2)) for i in range(3)
    ]
    np.testing.assert_allclose(P.per_example_norms(grads), expected, rtol=1e-6)


# --------------------------------------------------------------------------- clipping and noise


def _sgd_update(step, ts, batch):
    """The update of one sgd(1.0) step: -(new params - old params)."""
    old = jax.tree.map(np.asarray, ts.params)
    new, metrics = step(ts, batch)
    return jax.tree.map(lambda a, b: a - np.asarray(b), old, new.params), metrics


def test_clipping_bounds_each_example_and_keeps_small_ones(rng):
    net = L.serial(L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(3))
    shape = (6, 6, 2)
    ts = T.create_train_state(net, shape, optax.sgd(1.0))
    x, y = _data(rng, 8, shape)
    x = x * np.linspace(0.05, 3.0, 8, dtype=np.float32)[:, None, None, None]  # a spread of norms
    _, grads = _jit(lambda p: P.per_example_grads(net, softmax_cross_entropy, p, ts.state, (x, y)))(
        ts.params
    )
    grads = jax.tree.map(np.asarray, grads)
    norms = np.asarray(P.per_example_norms(grads))
    clip = float(np.median(norms))
    assert (norms < clip).sum() >= 3 and (norms > clip).sum() >= 3

    step = P.make_private_train_step(
        net, softmax_cross_entropy, optax.sgd(1.0), l2_clip=clip, noise_multiplier=0.0,
        donate=False,
    )  # fmt: skip
    for i in range(8):  # a batch of one: the update IS the clipped gradient of example i
        update, metrics = _sgd_update(step, ts, (x[i : i + 1], y[i : i + 1]))
        g_i = jax.tree.map(lambda g, i=i: g[i], grads)
        if norms[i] <= clip:
            _allclose(update, g_i, rtol=1e-5, atol=1e-7)  # unchanged
            assert float(metrics["clip_fraction"]) == 0.0
        else:
            norm = math.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(update)))
            np.testing.assert_allclose(norm, clip, rtol=1e-5)
            _allclose(update, jax.tree.map(lambda g, f=clip / norms[i]: g * f, g_i), rtol=1e-5)
            assert float(metrics["clip_fraction"]) == 1.0

    # The whole batch: the mean of the clipped gradients, computed here in NumPy.
    factors = np.minimum(1.0, clip / norms)
    expected = jax.tree.map(lambda g: np.tensordot(factors, np.asarray(g), axes=1) / 8, grads)
    update, metrics = _sgd_update(step, ts, (x, y))
    _allclose(update, expected, rtol=1e-5, atol=1e-7)
    # ... and optax's DP-SGD aggregate of the same per-example gradients (noise 0).
    aggregate = optax.contrib.differentially_private_aggregate(clip, 0.0, jax.random.key(0))
    reference = _jit(lambda g: aggregate.update(g, aggregate.init(None))[0])(grads)
    _allclose(update, reference, rtol=1e-5, atol=1e-7)
    assert float(metrics["clip_fraction"]) == np.mean(norms > clip)


@pytest.mark.parametrize(("clip", "sigma", "batch"), [(1.0, 1.1, 4), (0.5, 3.0, 2)])
def test_noise_has_the_stated_standard_deviation(clip, sigma, batch):
    """Zero gradients (a loss that ignores the outputs) and 60,060 parameters: the update of
    sgd(1.0) is the noise over B, i.e. N(0, (sigma C / B)^2) per coordinate. The sample std of
    n = 60,060 normals has relative standard error 1/sqrt(2n) = 0.3%; the tolerance is 3%
    (10 standard errors), the mean within 0.05 std (12 standard errors): it cannot flake, and
    a noise off by a factor such as B or sqrt(B) fails."""
    net = L.serial(L.Dense(60))
    ts = T.create_train_state(net, (1000,), optax.sgd(1.0), seed=3)

    def ignores_outputs(out, y):
        return 0.0 * jnp.mean(out)

    step = P.make_private_train_step(
        net, ignores_outputs, optax.sgd(1.0), l2_clip=clip, noise_multiplier=sigma,
        metrics_fn=lambda out, y: {}, donate=False,
    )  # fmt: skip
    batch_ = (jnp.ones((batch, 1000)), jnp.zeros((batch,)))
    update, _ = _sgd_update(step, ts, batch_)
    noise = np.concatenate([np.ravel(v) for v in jax.tree.leaves(update)])
    assert noise.size == 60_060
    std = sigma * clip / batch
    assert abs(noise.std() / std - 1) < 0.03
    assert abs(noise.mean()) < 0.05 * std

    # A new draw at the next step, the same draw for the same (seed, step).
    again, _ = _sgd_update(step, ts, batch_)
    _allclose(again, update, rtol=0, atol=0)
    later, _ = _sgd_update(step, ts._replace(step=ts.step + 1), batch_)
    later = np.concatenate([np.ravel(v) for v in jax.tree.leaves(later)])
    assert abs(np.corrcoef(noise, later)[0, 1]) < 0.05


def test_noise_key_differs_from_every_dropout_and_augmentation_key():
    ts = T.create_train_state(L.serial(L.Dense(2)), (3,), optax.sgd(0.1))
    key = T.step_key(ts)
    noise = np.asarray(jax.random.key_data(jax.random.fold_in(key, P.NOISE_FOLD)))
    dropout = np.asarray(jax.random.key_data(jax.random.split(key, 512)))  # examples' keys
    transform = np.asarray(jax.random.key_data(jax.random.fold_in(key, T.TRANSFORM_FOLD)))
    assert not (dropout == noise).all(axis=1).any() and not np.array_equal(noise, transform)


# --------------------------------------------------------------------------- the step


def test_private_step_without_noise_or_clipping_is_the_plain_step(rng):
    """noise 0 and a clip above every norm: the non-private update of a mean loss, dropout
    included (the same per-example keys), over two Adam steps, metrics too."""
    make, shape = NETS["course_cnn"]
    net = make()
    opt = optax.adam(0.01)
    x, y = _data(rng, 6, shape, net.output_shape(shape)[0])
    plain = T.make_train_step(net.apply, softmax_cross_entropy, opt)
    private = P.make_private_train_step(
        net.apply, softmax_cross_entropy, opt, l2_clip=1e6, noise_multiplier=0.0
    )
    ts_a = T.create_train_state(net, shape, opt, seed=1)
    ts_b = T.create_train_state(net, shape, opt, seed=1)
    for _ in range(2):
        ts_a, m_a = plain(ts_a, (x, y))
        ts_b, m_b = private(ts_b, (x, y))
    _allclose(ts_b.params, ts_a.params, rtol=1e-4, atol=1e-6)
    assert int(ts_b.step) == 2
    np.testing.assert_allclose(m_b["loss"], m_a["loss"], rtol=1e-5)
    assert float(m_b["accuracy"]) == float(m_a["accuracy"])
    assert float(m_b["clip_fraction"]) == 0.0


def test_microbatched_private_step_adds_the_noise_once(rng):
    """make_train_step(privacy=, microbatches=4): each example clipped in its slice, the noise
    drawn once per step after the slices, so the update (noise included) equals the whole-batch
    private step's; noise per slice, or scaled by the slice size, would differ. The noise is
    there: the update differs from the noise-free one by about sigma C / B per coordinate."""
    net = L.serial(L.Flatten(), L.Dense(8), L.Tanh(), L.Dense(3))
    shape = (4, 3, 1)
    x, y = _data(rng, 8, shape)
    opt = optax.sgd(1.0)
    ts = T.create_train_state(net, shape, opt, seed=2)

    def update(privacy, microbatches):
        step = make_train_step(net.apply, softmax_cross_entropy, opt, privacy=privacy,
                               microbatches=microbatches, donate=False)  # fmt: skip
        return _sgd_update(step, ts, (x, y))

    dp = P.DPSGD(l2_clip=0.1, noise_multiplier=1.0)
    whole, m_whole = update(dp, 1)
    sliced, m_sliced = update(dp, 4)
    assert 0 < float(m_whole["clip_fraction"]) and float(m_whole["clip_fraction"]) == float(
        m_sliced["clip_fraction"]
    )
    _allclose(sliced, whole, rtol=1e-5, atol=1e-7)
    quiet, _ = update(P.DPSGD(l2_clip=0.1, noise_multiplier=0.0), 4)
    noise = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(sliced),
                                                             jax.tree.leaves(quiet))])  # fmt: skip
    assert 0.5 < noise.std() / (1.0 * 0.1 / 8) < 2.0


def test_bad_clip_or_noise_is_a_clear_error():
    net = L.serial(L.Dense(2))
    for kwargs, word in (
        (dict(l2_clip=0.0, noise_multiplier=1.0), "l2_clip"),
        (dict(l2_clip=math.inf, noise_multiplier=1.0), "l2_clip"),
        (dict(l2_clip=1.0, noise_multiplier=-0.5), "noise_multiplier"),
    ):
        with pytest.raises(ValueError, match=word):
            P.make_private_train_step(net, softmax_cross_entropy, optax.sgd(0.1), **kwargs)
        with pytest.raises(ValueError, match=word):
            P.DPSGD(**kwargs)


# --------------------------------------------------------------------------- BatchNorm


def test_batchnorm_is_refused_by_path_before_tracing():
    net = L.serial(
        L.Conv(4, 3),
        L.residual(L.serial(L.Conv(4, 3, padding=1), L.BatchNorm())),
        L.Flatten(),
        L.Dense(3),
        name="net",
    )
    for make in (
        lambda: P.make_private_train_step(
            net, softmax_cross_entropy, optax.sgd(0.1), l2_clip=1.0, noise_multiplier=1.0
        ),
        lambda: fit(
            net,
            _data(np.random.default_rng(0), 4, (6, 6, 1)),
            epochs=1,
            batch_size=2,
            privacy=P.DPSGD(l2_clip=1.0, noise_multiplier=1.0),
            progress=False,
        ),
        lambda: P.check_per_example(net),
    ):
        with pytest.raises(
            ValueError, match=r"net/residual_0/block/BatchNorm_0 \(BatchNorm\)"
        ) as e:
            make()
        assert "GroupNorm" in str(e.value) and "LayerNorm" in str(e.value)
    with pytest.raises(ValueError, match="cifar_resnet18/.*BatchNorm.*, .*BatchNorm"):
        P.check_per_example(models.cifar_resnet18())  # every one of them listed


@pytest.mark.parametrize("builder", ["make_private_train_step", "make_train_step"])
def test_batchnorm_through_a_bare_apply_fails_when_traced_with_its_path(rng, builder):
    """Given only the apply function (as a step builder holds), the per-example trace binds no
    batch axis, and BatchNorm's request for it becomes the same advice."""
    net = L.serial(L.Conv(4, 3), L.BatchNorm(), L.Flatten(), L.Dense(3), name="net")
    shape = (6, 6, 1)
    ts = T.create_train_state(net, shape, optax.sgd(0.1))
    if builder == "make_private_train_step":
        step = P.make_private_train_step(
            net.apply, softmax_cross_entropy, optax.sgd(0.1), l2_clip=1.0, noise_multiplier=1.0
        )
    else:
        privacy = P.DPSGD(l2_clip=1.0, noise_multiplier=1.0)
        step = make_train_step(net.apply, softmax_cross_entropy, optax.sgd(0.1), privacy=privacy)
    with pytest.raises(ValueError, match="net/BatchNorm_0 is not per-example.*GroupNorm"):
        step(ts, _data(rng, 4, shape))


def test_group_and_layer_norm_nets_pass_the_check():
    P.check_per_example(_conv_net())
    P.check_per_example(_branchy_net())
    with pytest.raises(TypeError, match="Layer"):
        P.check_per_example(lambda x: x)


# --------------------------------------------------------------------------- accounting


# TF Privacy, tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py
# (test_compute_dp_sgd_privacy, computed with dp_accounting's RDP accountant): (N, batch, sigma,
# epochs, delta) -> epsilon; steps = ceil(epochs * N / batch), q = batch / N.
TF_PRIVACY_RDP = [
    (60000, 150, 1.3, 15, 1e-5, 0.7242234026109595),
    (100000, 100, 1.0, 30, 1e-7, 1.4154988495444842),
]

# Same file, test_compute_dp_sgd_example_privacy without microbatching: 1.2 epochs at Poisson
# rate 1e-2 (ceil(1.2 / 1e-2) = 120 steps), sigma 0.7, delta 1e-5.
TF_PRIVACY_EXAMPLE = {"rdp": 3.2392676, "pld": 2.4612381}


@pytest.mark.parametrize(("n", "batch", "sigma", "epochs", "delta", "expected"), TF_PRIVACY_RDP)
def test_rdp_epsilon_matches_tf_privacy(n, batch, sigma, epochs, delta, expected):
    steps = math.ceil(epochs * n / batch)
    assert P.epsilon(steps, batch / n, sigma, delta) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epsilon_matches_tf_privacy_example_privacy(accountant):
    eps = P.epsilon(120, 1e-2, 0.7, 1e-5, accountant=accountant)
    assert eps == pytest.approx(TF_PRIVACY_EXAMPLE[accountant], abs=1e-6)


def test_the_mnist_tutorial_setting():
    """TF Privacy's MNIST tutorial (tutorials/README.md; Abadi et al. 2016's setting): N 60,000,
    batch 256, sigma 1.1, 60 epochs, delta 1e-5 -> "eps = 3.01", from the RDP curve with the
    original RDP -> (eps, delta) conversion; dp-accounting's current, tighter conversion gives
    2.597 for the same curve, and PLD accounting less still."""
    steps, q = math.ceil(60 * 60000 / 256), 256 / 60000
    rdp = P.epsilon(steps, q, 1.1, 1e-5)
    assert rdp == pytest.approx(2.5967, abs=1e-3) and rdp < 3.01
    assert P.epsilon(steps, q, 1.1, 1e-5, accountant="pld") < rdp


def test_noise_multiplier_for_inverts_epsilon():
    sigma = P.noise_multiplier_for(2.0, 100, 0.01, 1e-5)
    eps = P.epsilon(100, 0.01, sigma, 1e-5)
    assert eps <= 2.0 and eps == pytest.approx(2.0, rel=1e-3)
    # More steps need more noise for the same budget.
    assert P.noise_multiplier_for(2.0, 400, 0.01, 1e-5) > P.noise_multiplier_for(
        2.0, 100, 0.01, 1e-5
    )


def test_accounting_edge_cases_and_errors():
    assert P.epsilon(0, 0.01, 1.0, 1e-5) == 0.0
    assert P.epsilon(10, 0.01, 0.0, 1e-5) == math.inf
    assert P.epsilon(10, 0.01, 5.0, 1e-5) < P.epsilon(10, 0.01, 1.0, 1e-5)
    with pytest.raises(ValueError, match="accountant"):
        P.epsilon(10, 0.01, 1.0, 1e-5, accountant="moments")
    with pytest.raises(ValueError, match="sampling_rate"):
        P.epsilon(10, 1.5, 1.0, 1e-5)
    with pytest.raises(ValueError, match="delta"):
        P.epsilon(10, 0.1, 1.0, 0.0)
    with pytest.raises(ValueError, match="steps"):
        P.epsilon(2.5, 0.1, 1.0, 1e-5)
    with pytest.raises(TypeError, match="FitResult or a TrainState"):
        P.run_epsilon({}, num_examples=10, batch_size=2, noise_multiplier=1.0, delta=1e-5)


# --------------------------------------------------------------------------- fit(privacy=)


def test_fit_with_privacy_both_loops_agree_and_report_epsilon(rng):
    net = L.serial(L.Flatten(), L.Dense(8), L.GroupNorm(2), L.Relu(), L.Dropout(0.2), L.Dense(3))
    x, y = map(np.asarray, _data(rng, 48, (5, 5, 1)))
    dp = P.DPSGD(l2_clip=0.5, noise_multiplier=1.2)
    opt = optax.sgd(0.2)
    runs = [
        fit(net, (x, y), optimizer=opt, epochs=2, batch_size=12, seed=4, on_device=on_device,
            progress=False, privacy=dp)
        for on_device in (True, False)
    ]  # fmt: skip
    _allclose(runs[0].train_state.params, runs[1].train_state.params, rtol=1e-5, atol=1e-6)
    assert runs[0].history["train_loss"] == pytest.approx(runs[1].history["train_loss"], 1e-5)
    assert "train_clip_fraction" in runs[0].history
    assert int(runs[0].train_state.step) == 8
    eps = dp.epsilon(runs[0], num_examples=48, batch_size=12, delta=1e-3)
    assert eps == P.epsilon(8, 12 / 48, 1.2, 1e-3)
    assert eps == P.run_epsilon(
        runs[0].train_state, num_examples=48, batch_size=12, noise_multiplier=1.2, delta=1e-3
    )


def test_batched_gives_example_i_the_key_the_reference_loop_uses():
    """The premise of the loop reference above: jcnn.batched runs example i of a batch with
    key split(key, B)[i]."""
    net = _conv_net()
    params, state = _init(net, (12, 12, 3))
    x = jax.random.normal(jax.random.key(2), (3, 12, 12, 3))
    k = jax.random.key(1)
    out_b, _ = _jit(batched(net.apply), static_argnames="train")(
        params, state, x, key=k, train=True
    )
    apply = _jit(net.apply, static_argnames="train")
    for i, k_i in enumerate(jax.random.split(k, 3)):
        out_i, _ = apply(params, state, x[i], key=k_i, train=True)
        np.testing.assert_allclose(out_b[i], out_i, rtol=1e-6, atol=1e-7)


def test_batch_coupling_is_a_stated_fact_not_an_axis_name():
    """StochasticDepth has an ``axis_name`` hyper-parameter but mixes no data: a net with it
    (ConvNeXt-Tiny) is per-example; BatchNorm and a custom layer that says so are not."""
    from jcnn.training.privacy import check_per_example

    assert "axis_name" in L.StochasticDepth(0.1).hparams  # what the old check keyed off
    row = L.serial(L.Conv(4, 3), L.residual(L.StochasticDepth(0.1, mode="row")), L.Flatten())
    check_per_example(row)
    check_per_example(models.convnext_tiny())
    assert L.BatchNorm().batch_coupled and L.serial(L.Dense(2), L.BatchNorm()).batch_coupled
    assert not L.StochasticDepth(0.1, mode="batch").batch_coupled

    def init(key, shape):
        return shape, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        return x, state

    mixer = L.custom(init, apply, "Mixer", output_shape=lambda s: s, batch_coupled=True)
    with pytest.raises(ValueError, match=r"net/Mixer_0 \(Mixer\) is not per-example"):
        check_per_example(L.serial(L.Dense(2), mixer, name="net"))
