"""Dense, Flatten, Reshape, Identity and every activation against NumPy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

import jcnn
from jcnn import layers as L
from jcnn.layers.shapes import ShapeError

MAX_ERR: dict[str, float] = {}


@pytest.fixture(autouse=True, scope="module")
def _print_max_errors():
    yield
    if MAX_ERR:
        print(
            "\n[test_dense_activations] max abs errors:",
            {k: f"{v:.1e}" for k, v in MAX_ERR.items()},
        )


def _record(name: str, got, want) -> float:
    err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    MAX_ERR[name] = max(MAX_ERR.get(name, 0.0), err)
    return err


# ---------------------------------------------------------------------------------------------
# Dense
# ---------------------------------------------------------------------------------------------


def test_dense_matches_numpy():
    rng = np.random.default_rng(0)
    layer = L.Dense(4)
    out, p0, state = jcnn.init_shapes(layer, (6,))
    assert out == (4,) and state == {}
    assert {k: v.shape for k, v in p0.items()} == {"kernel": (6, 4), "bias": (4,)}
    x = rng.standard_normal(6)
    params = {"kernel": rng.standard_normal((6, 4)), "bias": rng.standard_normal(4)}
    with jax.enable_x64(True):
        y, _ = layer.apply(params, state, jnp.asarray(x))
    assert y.shape == (4,)
    assert _record("Dense", y, x @ params["kernel"] + params["bias"]) < 1e-12


def test_dense_without_bias():
    rng = np.random.default_rng(1)
    layer = L.Dense(3, use_bias=False)
    _, p0, _ = jcnn.init_shapes(layer, (5,))
    assert set(p0) == {"kernel"}
    x, w = rng.standard_normal(5), rng.standard_normal((5, 3))
    with jax.enable_x64(True):
        y, _ = layer.apply({"kernel": w}, {}, jnp.asarray(x))
    assert _record("Dense", y, x @ w) < 1e-12


def test_dense_on_rank_2_example():
    # A (T, in) example: the (out,) bias must be broadcast explicitly, not by rank promotion.
    rng = np.random.default_rng(2)
    layer = L.Dense(4)
    assert jcnn.output_shape(layer, (3, 6)) == (3, 4)
    x = rng.standard_normal((3, 6))
    params = {"kernel": rng.standard_normal((6, 4)), "bias": rng.standard_normal(4)}
    with jax.enable_x64(True), jax.numpy_rank_promotion("raise"):
        y, _ = layer.apply(params, {}, jnp.asarray(x))
    assert _record("Dense", y, x @ params["kernel"] + params["bias"][None, :]) < 1e-12


def test_dense_errors():
    for bad in (0, -3, 2.5):
        with pytest.raises(ShapeError, match="out_features"):
            L.Dense(bad)
    with pytest.raises(ShapeError, match=r"Dense: input shape \(\)"):
        L.Dense(3).init(jax.random.key(0), ())
    params = {"kernel": jnp.full((5, 3), 0.5), "bias": jnp.full((3,), 0.5)}
    with pytest.raises(
        ShapeError, match=r"Dense: input shape \(6,\): the input has 6 .*made for 5"
    ):
        L.Dense(3).apply(params, {}, jnp.full((6,), 0.25))
    with pytest.raises(ValueError, match="another architecture.*'kernel' has shape \\(5, 3\\)"):
        L.Dense(4).apply(params, {}, jnp.full((5,), 0.25))


# ---------------------------------------------------------------------------------------------
# Flatten / Reshape / Identity
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 4, 5), (7,), (2, 1, 3, 2)])
def test_flatten_is_row_major(shape):
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    layer = L.Flatten()
    out, params, state = layer.init(None, shape)
    y, _ = layer.apply(params, state, jnp.asarray(x))
    assert out == y.shape == (x.size,)
    np.testing.assert_array_equal(y, x.reshape(-1))


@pytest.mark.parametrize(
    ("target", "want"),
    [((-1, 6), (10, 6)), ((5, -1), (5, 12)), ((3, 4, 5), (3, 4, 5)), ((-1,), (60,))],
)
def test_reshape(target, want):
    x = np.random.default_rng(4).standard_normal((4, 15)).astype(np.float32)
    layer = L.Reshape(target)
    assert layer.init(None, x.shape)[0] == want
    y, _ = layer.apply({}, {}, jnp.asarray(x))
    np.testing.assert_array_equal(y, x.reshape(want))


@pytest.mark.parametrize("target", [(7, -1), (4, 4), (61,)])
def test_reshape_wrong_element_count_errors_at_init(target):
    with pytest.raises(ShapeError, match=r"Reshape: input shape \(4, 15\): 60 elements"):
        L.Reshape(target).init(None, (4, 15))


@pytest.mark.parametrize("target", [(-1, -1), (0, 5), (-2, 30)])
def test_reshape_bad_target_errors_at_construction(target):
    with pytest.raises(ShapeError, match="Reshape shape"):
        L.Reshape(target)


def test_identity():
    x = jnp.asarray(np.random.default_rng(5).standard_normal((3, 2)), jnp.float32)
    out, params, state = L.Identity().init(None, (3, 2))
    y, new_state = L.Identity().apply(params, state, x)
    assert out == (3, 2) and params == {} and new_state == {}
    np.testing.assert_array_equal(y, x)


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACTIVATIONS = [
    ("Relu", L.Relu(), lambda x: np.maximum(x, 0.0)),
    ("LeakyRelu(0.2)", L.LeakyRelu(0.2), lambda x: np.where(x >= 0, x, 0.2 * x)),
    ("LeakyRelu()", L.LeakyRelu(), lambda x: np.where(x >= 0, x, 0.01 * x)),
    ("Elu", L.Elu(), lambda x: np.where(x > 0, x, np.expm1(x))),
    ("Elu(0.5)", L.Elu(0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    ("Gelu exact", L.Gelu(), lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))),
    (
        "Gelu tanh",
        L.Gelu(approximate=True),
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    ),
    ("Tanh", L.Tanh(), np.tanh),
    ("Sigmoid", L.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    ("Softmax", L.Softmax(), lambda x: _np_softmax(x, -1)),
    ("Softmax(axis=0)", L.Softmax(axis=0), lambda x: _np_softmax(x, 0)),
    ("LogSoftmax", L.LogSoftmax(), lambda x: np.log(_np_softmax(x, -1))),
    ("LogSoftmax(axis=0)", L.LogSoftmax(axis=0), lambda x: np.log(_np_softmax(x, 0))),
]


@pytest.mark.parametrize(("name", "layer", "ref"), ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_matches_numpy(name, layer, ref):
    x = np.random.default_rng(6).standard_normal((4, 6)) * 3
    with jax.enable_x64(True):
        out, params, state = layer.init(None, x.shape)
        y, new_state = layer.apply(params, state, jnp.asarray(x))
        abstract = jax.eval_shape(lambda v: layer.apply(params, state, v)[0], jnp.asarray(x))
    assert params == {} and state == {} and new_state == {}
    assert out == y.shape == abstract.shape == x.shape
    assert y.dtype == jnp.float64
    assert _record(name, y, ref(x)) < 1e-12


def test_gelu_default_is_exact_not_tanh_approximation():
    x = np.random.default_rng(6).standard_normal((4, 6)) * 3
    with jax.enable_x64(True):
        y = np.asarray(L.Gelu().apply({}, {}, jnp.asarray(x))[0])
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    assert np.max(np.abs(y - tanh_form)) > 1e-4


def test_activation_names_and_repr():
    assert L.LeakyRelu(0.2).kind == "LeakyRelu"
    assert repr(L.LeakyRelu(0.2)) == "LeakyRelu(negative_slope=0.2)"
    assert repr(L.Softmax(axis=0)) == "Softmax(axis=0)"
    assert [a[1].name for a in ACTIVATIONS[:2]] == ["Relu", "LeakyRelu"]
