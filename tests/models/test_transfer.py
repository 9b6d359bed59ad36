"""Transfer learning: a new head on a trained body; after training, the body is bit-identical."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.models.transfer import replace_head, transfer_setup
from jcnn.training import fit
from jcnn.training.legacy import create_train_state, init_key, make_train_step
from jcnn.training.losses import softmax_cross_entropy

SHAPE = (8, 8, 1)


def _trained_net():
    return L.serial(
        L.Conv(4, (3, 3)),
        L.BatchNorm(),
        L.Relu(),
        L.MaxPool((2, 2)),
        L.Flatten(),
        L.Dropout(0.2),
        L.Dense(10),
        name="small",
    )


@pytest.fixture(scope="module")
def pretrained():
    """A "trained" network: params and running statistics drawn with NumPy (no init compile)."""
    net = _trained_net()
    _, params, state = jcnn.init_shapes(net, SHAPE)
    rng = np.random.default_rng(0)

    def draw(tree, low):
        return jax.tree_util.tree_map(
            lambda s: jnp.asarray(rng.uniform(low, low + 1.0, s.shape), s.dtype), tree
        )

    return net, draw(params, -0.5), draw(state, 0.5)


def _data(n=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *SHAPE)).astype(np.float32), rng.integers(0, classes, n)


def _same(a, b):
    return jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda u, v: np.array_equal(np.asarray(u), np.asarray(v)), a, b)
    )


def test_replace_head_keeps_keys_and_changes_output():
    net = replace_head(models.resnet18(), L.Dense(5))
    assert [k for k, _ in net.children] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
        "head",
    ]  # fmt: skip
    assert jcnn.output_shape(net, (224, 224, 3)) == (5,)
    # fc 512 -> 1000 (513,000) replaced by 512 -> 5 (2,565).
    assert jcnn.count_params(net, (224, 224, 3)) == 11_689_512 - 513_000 + 2_565
    vgg = replace_head(models.vgg11(), L.serial(L.Dense(64), L.Relu(), L.Dense(3)))
    assert jcnn.output_shape(vgg, (224, 224, 3)) == (3,)
    cnn = replace_head(models.cnn(), L.serial(L.GlobalAvgPool(), L.Dense(2)), head="Flatten_0")
    assert [k for k, _ in cnn.children][-1] == "head"
    assert jcnn.output_shape(cnn, (28, 28, 1)) == (2,)


def test_replace_head_errors():
    with pytest.raises(ValueError, match="no child keyed"):
        replace_head(models.cnn(), L.Dense(2), head="nope")
    with pytest.raises(ValueError, match="first child"):
        replace_head(models.cnn(), L.Dense(2), head="Conv_0")
    with pytest.raises(ValueError, match="already a child key"):
        replace_head(models.cnn(), L.Dense(2), head_name="Conv_0")


@pytest.mark.parametrize("body_inference", [True, False])
def test_frozen_body_bit_identical_head_trained(pretrained, body_inference):
    net, params, state = pretrained
    setup = transfer_setup(
        net, L.Dense(3), SHAPE, params, state, optax.adam(0.05), body_inference=body_inference
    )
    body = [k for k, _ in net.children][:-1]
    assert setup.frozen == body
    ts0 = setup.train_state
    for key in body:  # the trained body was copied in
        assert _same(ts0.params[key], params[key]) and _same(ts0.state[key], state[key])
    head0 = jax.tree_util.tree_map(np.asarray, ts0.params["head"])

    step = make_train_step(setup.net.apply, softmax_cross_entropy, setup.optimizer, donate=False)
    x, y = _data()
    ts, losses = ts0, []
    for _ in range(6):
        ts, metrics = step(ts, (x, y))
        losses.append(float(metrics["loss"]))

    for key in body:
        assert _same(ts.params[key], params[key]), key
    assert not np.array_equal(np.asarray(ts.params["head"]["kernel"]), head0["kernel"])
    assert not np.array_equal(np.asarray(ts.params["head"]["bias"]), head0["bias"])
    assert losses[-1] < losses[0]
    # In inference mode the body's BatchNorm keeps its trained statistics; otherwise they adapt.
    assert _same(ts.state["BatchNorm_0"], state["BatchNorm_0"]) == body_inference


def test_transfer_with_fit(pretrained):
    net, params, state = pretrained
    setup = transfer_setup(net, L.Dense(3), SHAPE, params, state, optax.sgd(0.1), seed=1)
    head0 = jax.tree_util.tree_map(np.array, setup.train_state.params["head"])  # fit donates
    result = fit(
        setup.net,
        _data(),
        train_state=setup.train_state,
        optimizer=setup.optimizer,
        epochs=2,
        batch_size=8,
        progress=False,
    )
    ts = result.train_state
    assert int(ts.step) == 8
    assert _same({k: ts.params[k] for k in setup.frozen}, {k: params[k] for k in setup.frozen})
    assert not _same(ts.params["head"], head0)


def test_transfer_rejects_params_of_another_input(pretrained):
    net, _, _ = pretrained
    _, other, other_state = jcnn.init_shapes(net, (8, 8, 2))  # 2 input channels
    with pytest.raises(ValueError, match="do not fit"):
        transfer_setup(net, L.Dense(3), SHAPE, other, other_state, optax.sgd(0.1))


def test_transfer_uses_create_train_states_keys_and_fresh_state(pretrained):
    """The head is initialised with create_train_state's init key, the step keys are its stream,
    and ``state=None`` gives the body's freshly initialised state."""
    net, params, _ = pretrained
    opt = optax.sgd(0.1)
    setup = transfer_setup(net, L.Dense(3), SHAPE, params, None, opt, seed=4)
    ts = setup.train_state
    body_out = jcnn.output_shape(L.serial(*[c.named(k) for k, c in net.children[:-1]]), SHAPE)
    _, head_params, _ = L.Dense(3).init(init_key(4), body_out)
    assert _same(ts.params["head"], head_params)
    np.testing.assert_array_equal(ts.rng, create_train_state(setup.net, SHAPE, opt, seed=4).rng)
    assert int(ts.step) == 0
    _, _, fresh = net.init(jax.random.key(0), SHAPE)
    assert _same(ts.state["BatchNorm_0"], fresh["BatchNorm_0"])  # mean 0, var 1: no trained stats
    other = transfer_setup(net, L.Dense(3), SHAPE, params, None, opt, seed=5).train_state
    assert not _same(other.params["head"], ts.params["head"])


#: torchvision's ``classifier`` Sequential before its last Linear (``classifier[6]``).
VGG_CLASSIFIER = ["0", "1", "2", "3", "4", "5"]


def test_replace_head_nested_in_vgg_classifier():
    vgg = models.vgg11()
    net = replace_head(vgg, L.Dense(10), head="classifier/6", body_inference=True)
    assert net.name == vgg.name
    assert [k for k, _ in net.children] == ["features", "avgpool", "flatten", "classifier"]
    classifier = dict(net.children)["classifier"]
    assert classifier.name == "classifier" and classifier.combine == "serial"
    assert [k for k, _ in classifier.children] == [*VGG_CLASSIFIER, "head"]
    # Kept leaf-level children run in inference mode at both levels; the new head does not.
    assert all(c.wrappers for k, c in net.children if k != "classifier")
    assert all(c.wrappers for k, c in classifier.children if k != "head")
    assert not dict(classifier.children)["head"].wrappers
    shape = (64, 64, 3)
    assert jcnn.output_shape(net, shape) == (10,)
    _, params, _ = jcnn.init_shapes(net, shape)
    _, old, _ = jcnn.init_shapes(vgg, shape)
    assert sorted(params["classifier"]) == sorted([*VGG_CLASSIFIER, "head"])
    for key in ("features", "avgpool", "flatten"):  # the kept params plug in at their paths
        assert jax.tree.structure(params[key]) == jax.tree.structure(old[key])
    for key in VGG_CLASSIFIER:
        assert jax.tree.map(lambda s: s.shape, params["classifier"][key]) == jax.tree.map(
            lambda s: s.shape, old["classifier"][key]
        )
    assert params["classifier"]["head"]["kernel"].shape == (4096, 10)
    # A single-segment head still drops the whole classifier.
    whole = replace_head(vgg, L.Dense(10), head="classifier")
    assert [k for k, _ in whole.children][-1] == "head"


def test_replace_head_nested_errors():
    vgg = models.vgg11()
    with pytest.raises(ValueError, match=r"no child keyed 'classifier/nope'.*'6'"):
        replace_head(vgg, L.Dense(2), head="classifier/nope")
    with pytest.raises(ValueError, match=r"no child keyed 'clf/6'.*'classifier'"):
        replace_head(vgg, L.Dense(2), head="clf/6")
    with pytest.raises(ValueError, match="'avgpool' is not a serial network"):
        replace_head(vgg, L.Dense(2), head="avgpool/x")
    with pytest.raises(ValueError, match="first child"):
        replace_head(vgg, L.Dense(2), head="features/0")
    with pytest.raises(ValueError, match="already a child key"):
        replace_head(vgg, L.Dense(2), head="classifier/6", head_name="0")


def _nested_net():
    return L.serial(
        L.Conv(4, 3), L.Flatten(), L.serial(L.Dense(8), L.Relu(), L.Dense(5), name="classifier")
    )


def test_transfer_setup_nested_head_trains_only_the_new_head():
    net = _nested_net()
    _, params, state = net.init(jax.random.key(1), SHAPE)
    setup = transfer_setup(
        net, L.Dense(3), SHAPE, params, state, optax.adam(0.05), head="classifier/Dense_1"
    )
    assert setup.frozen == ["Conv_0", "Flatten_0", "classifier/Dense_0", "classifier/Relu_0"]
    ts0 = setup.train_state
    assert sorted(ts0.params["classifier"]) == ["Dense_0", "Relu_0", "head"]
    assert ts0.params["classifier"]["head"]["kernel"].shape == (8, 3)
    assert _same(ts0.params["Conv_0"], params["Conv_0"])
    assert _same(ts0.params["classifier"]["Dense_0"], params["classifier"]["Dense_0"])
    head0 = jax.tree_util.tree_map(np.asarray, ts0.params["classifier"]["head"])

    step = make_train_step(setup.net.apply, softmax_cross_entropy, setup.optimizer, donate=False)
    x, y = _data()
    ts = ts0
    for _ in range(4):
        ts, _ = step(ts, (x, y))
    assert _same(ts.params["Conv_0"], params["Conv_0"])
    assert _same(ts.params["classifier"]["Dense_0"], params["classifier"]["Dense_0"])
    assert not _same(ts.params["classifier"]["head"], head0)


def test_transfer_setup_nested_head_checks_shapes():
    net = _nested_net()
    _, shapes, state = jcnn.init_shapes(net, SHAPE)
    params = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    bad = {**params, "classifier": {**params["classifier"], "Dense_0": params["Conv_0"]}}
    with pytest.raises(ValueError, match=r"params\['classifier'\]\['Dense_0'\].*do not fit"):
        transfer_setup(
            net, L.Dense(3), SHAPE, bad, state, optax.sgd(0.1), head="classifier/Dense_1"
        )
