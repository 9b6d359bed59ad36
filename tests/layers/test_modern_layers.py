"""Layers of the modern torchvision CNNs: Relu6/Silu/Hardswish/Hardsigmoid, gate and
squeeze_excitation, StochasticDepth, LayerScale (and channels-last LayerNorm), Upsample and
PixelShuffle.

References: numpy formulas written here, and PyTorch outputs stored in
``tests/fixtures/torch_parity.npz`` by ``tests/fixtures/make_torch_fixtures.py`` (this module never
imports torch).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers.shapes import ShapeError
from jcnn.tools.summary import count_params

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "torch_parity.npz"
with np.load(FIXTURE, allow_pickle=False) as _f:
    DATA = {k: _f[k] for k in _f.files}


def cases(op: str) -> list[str]:
    idx = sorted({int(k.split("/")[1]) for k in DATA if k.split("/")[0] == op})
    assert idx, f"no {op} cases in the fixture: regenerate it"
    return [f"{op}/{i}" for i in idx]


def close(actual, expected, tol=1e-5):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = float(np.max(np.abs(actual - expected)))
    assert err < tol, f"max abs err {err:.3g}"


def nchw_to_nhwc(a):
    return np.moveaxis(a, 1, -1)


@pytest.fixture(autouse=True)
def _full_f32_precision():
    with jax.default_matmul_precision("float32"):
        yield


# ----------------------------------------------------------------------- activations

KINKS = np.array([-6.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 6.0, 7.5, -7.5], np.float32)


def _relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


NUMPY_ACTIVATIONS = {
    "Relu6": _relu6,
    "Silu": lambda x: x / (1.0 + np.exp(-x)),
    "Hardsigmoid": lambda x: _relu6(x + 3.0) / 6.0,
    "Hardswish": lambda x: x * _relu6(x + 3.0) / 6.0,
}


@pytest.mark.parametrize("kind", sorted(NUMPY_ACTIVATIONS))
def test_activation_matches_numpy_formula(kind):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 4, 500).astype(np.float32), KINKS]).reshape(-1, 1, 1)
    layer = getattr(L, kind)()
    assert layer.kind == kind and layer.pointwise and layer.output_shape(x.shape) == x.shape
    y, state = layer.apply({}, {}, jnp.asarray(x))
    assert state == {} and y.dtype == jnp.float32
    close(y, NUMPY_ACTIVATIONS[kind](x.astype(np.float64)), tol=1e-6)


def test_activation_values_at_the_kinks():
    x = jnp.asarray(KINKS)
    hs = L.Hardsigmoid().apply({}, {}, x)[0]
    np.testing.assert_array_equal(np.asarray(hs)[[1, 3, 5]], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(np.asarray(L.Relu6().apply({}, {}, x)[0])[[6, 7]], [6.0, 6.0])
    np.testing.assert_array_equal(np.asarray(L.Hardswish().apply({}, {}, x)[0])[[1, 5]], [0, 3])


@pytest.mark.parametrize(
    "op, kind",
    [
        ("relu6", "Relu6"),
        ("silu", "Silu"),
        ("hardswish", "Hardswish"),
        ("hardsigmoid", "Hardsigmoid"),
    ],
)
def test_activation_matches_torch(op, kind):
    (case,) = cases(op)
    y, _ = getattr(L, kind)().apply({}, {}, jnp.asarray(DATA[f"{case}/x"]))
    close(y, DATA[f"{case}/y"], tol=1e-6)


def test_swish_is_silu():
    assert L.Swish is L.Silu and L.Swish() == L.Silu()


# ------------------------------------------------------------------------------ gate


def _channel_gate(c):
    return L.gate(L.GlobalAvgPool(), L.Dense(c), L.Sigmoid())


def test_gate_per_channel_matches_numpy():
    x = np.random.default_rng(1).normal(size=(5, 4, 3)).astype(np.float32)
    layer = _channel_gate(3)
    out, params, state = layer.init(jax.random.key(0), x.shape)
    assert out == x.shape and sorted(params) == ["Dense_0", "GlobalAvgPool_0", "Sigmoid_0"]
    y, _ = layer.apply(params, state, jnp.asarray(x))
    k, b = (np.asarray(params["Dense_0"][n], np.float64) for n in ("kernel", "bias"))
    g = 1.0 / (1.0 + np.exp(-(x.mean(axis=(0, 1)) @ k + b)))
    close(y, x * g)


@pytest.mark.parametrize(
    "branch", [lambda: L.AdaptiveAvgPool(1), lambda: L.Identity(), lambda: L.GlobalAvgPool()]
)
def test_gate_accepts_documented_shapes(branch):
    x = np.random.default_rng(2).uniform(0.5, 2, (3, 4, 2)).astype(np.float32)
    layer = L.gate(branch())
    assert layer.output_shape(x.shape) == x.shape
    y, _ = layer.apply(*layer.init(jax.random.key(0), x.shape)[1:], jnp.asarray(x))
    g = x if branch().kind == "Identity" else x.mean(axis=(0, 1))
    close(y, x * g)


@pytest.mark.parametrize("branch", [lambda: L.Conv(1, 1), lambda: L.Conv(4, 3), lambda: L.Dense(1)])
def test_gate_refuses_other_broadcasting(branch):
    layer = L.gate(branch(), name="attn")
    with pytest.raises(ShapeError, match=r"attn: input shape \(5, 5, 3\): the gate branch gives"):
        layer.init(jax.random.key(0), (5, 5, 3))
    with pytest.raises(ShapeError, match="no other broadcasting"):
        layer.output_shape((5, 5, 3))


def test_gate_facts_and_errors():
    layer = _channel_gate(4)
    assert layer.kind == "gate" and layer.combine == "gate" and not layer.pointwise
    assert layer.child_input_shapes((6, 6, 4))[1] == (4,)
    with pytest.raises(TypeError, match="call constructors"):
        L.gate(L.Relu)


def _se_numpy(x, p, hard):
    """torchvision's SqueezeExcitation on one NHWC example, from the jcnn params."""
    s = x.mean(axis=(0, 1))
    k1, b1 = p["fc1"]["kernel"][0, 0], p["fc1"]["bias"]
    k2, b2 = p["fc2"]["kernel"][0, 0], p["fc2"]["bias"]
    z = np.maximum(s @ k1 + b1, 0) @ k2 + b2
    g = np.clip(z + 3, 0, 6) / 6 if hard else 1 / (1 + np.exp(-z))
    return x * g


@pytest.mark.parametrize("hard", [False, True])
def test_squeeze_excitation_matches_numpy(hard):
    se = jcnn.models.squeeze_excitation(8, 3, scale_activation=L.Hardsigmoid if hard else L.Sigmoid)
    x = np.random.default_rng(3).normal(size=(2, 6, 5, 8)).astype(np.float32)
    _, params, state = se.init(jax.random.key(1), x.shape[1:])
    assert list(params) == ["avgpool", "fc1", "activation", "fc2", "scale_activation"]
    ys, _ = jcnn.batched(se.apply)(params, state, jnp.asarray(x))
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    close(ys, np.stack([_se_numpy(v.astype(np.float64), p64, hard) for v in x]))


@pytest.mark.parametrize("case", cases("squeeze_excitation"))
def test_squeeze_excitation_matches_torch(case):
    get = lambda f: DATA[f"{case}/{f}"]  # noqa: E731
    c, sq = get("fc1_weight").shape[1], get("fc1_weight").shape[0]
    hard = bool(get("hardsigmoid"))
    se = jcnn.models.squeeze_excitation(
        c, sq, scale_activation=L.Hardsigmoid() if hard else L.Sigmoid()
    )
    x = nchw_to_nhwc(get("x"))
    _, params, state = se.init(jax.random.key(0), x.shape[1:])
    for fc in ("fc1", "fc2"):  # OIHW -> HWIO: torchvision's fc1/fc2 map 1:1
        params[fc] = {
            "kernel": jnp.asarray(np.transpose(get(f"{fc}_weight"), (2, 3, 1, 0))),
            "bias": jnp.asarray(get(f"{fc}_bias")),
        }
    ys, _ = jcnn.batched(se.apply)(params, state, jnp.asarray(x))
    close(ys, nchw_to_nhwc(get("y")))


@pytest.mark.parametrize("c, sq", [(16, 4), (96, 24), (40, 10)])
def test_squeeze_excitation_param_count_is_torchvisions(c, sq):
    # torchvision: fc1 = Conv2d(c, sq, 1) and fc2 = Conv2d(sq, c, 1), both with bias.
    assert count_params(jcnn.models.squeeze_excitation(c, sq), (7, 7, c)) == (c * sq + sq) + (
        sq * c + c
    )


def test_squeeze_excitation_states_it_is_a_gate():
    # x * chain(x): a tool reading "serial" would take the (1, 1, C) chain output as the output.
    se = jcnn.models.squeeze_excitation(8, 2)
    assert se.combine == "gate" == L.gate(L.Conv(8, 1), L.Sigmoid()).combine
    assert se.output_shape((5, 5, 8)) == (5, 5, 8)


def test_squeeze_excitation_errors():
    se = jcnn.models.squeeze_excitation(8, 2, activation=L.Silu())
    assert dict(se.children)["activation"].kind == "Silu"
    with pytest.raises(ShapeError, match=r"squeeze_excitation: .*built for channels=8"):
        se.init(jax.random.key(0), (4, 4, 6))
    with pytest.raises(TypeError, match="activation must be a Layer"):
        jcnn.models.squeeze_excitation(8, 2, activation="relu")
    with pytest.raises(ShapeError, match="squeeze_channels must be a positive int"):
        jcnn.models.squeeze_excitation(8, 0)


# -------------------------------------------------------------------- StochasticDepth


def _positive(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(np.float32)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_stochastic_depth_row_drops_whole_examples_at_rate_p(p):
    n = 20_000
    x = _positive((n, 2, 3))
    ys, _ = jcnn.batched(L.StochasticDepth(p).apply)(
        {}, {}, jnp.asarray(x), key=jax.random.key(4), train=True
    )
    ys = np.asarray(ys)
    dropped = (ys == 0).all(axis=(1, 2))
    kept = (ys != 0).all(axis=(1, 2))
    assert (dropped | kept).all()  # all or nothing per example
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(ys[kept], x[kept] / (1 - p), rtol=1e-6)


def test_stochastic_depth_batch_mode_one_decision_per_batch():
    p, draws = 0.3, 800
    x = jnp.asarray(_positive((6, 2, 2, 3)))
    apply = jax.jit(jcnn.batched(L.StochasticDepth(p, mode="batch").apply), static_argnames="train")
    fractions = []
    for i in range(draws):
        ys = np.asarray(apply({}, {}, x, key=jax.random.key(i), train=True)[0])
        per_example = (ys == 0).all(axis=(1, 2, 3))
        assert per_example.all() or not per_example.any()  # the whole batch together
        if not per_example.any():
            np.testing.assert_allclose(ys, np.asarray(x) / (1 - p), rtol=1e-6)
        fractions.append(per_example.all())
    assert abs(np.mean(fractions) - p) < 5 * np.sqrt(p * (1 - p) / draws)


def test_stochastic_depth_eval_identity_edges_and_errors():
    x = jnp.asarray(_positive((4, 3, 2)))
    k = jax.random.key(0)
    for mode in ("row", "batch"):
        layer = L.StochasticDepth(0.5, mode)
        assert layer.pointwise and layer.output_shape((4, 3, 2)) == (4, 3, 2)
        np.testing.assert_array_equal(jcnn.batched(layer.apply)({}, {}, x)[0], x)
        np.testing.assert_array_equal(
            jcnn.batched(L.StochasticDepth(0.0, mode).apply)({}, {}, x, key=k, train=True)[0], x
        )
        ones = jcnn.batched(L.StochasticDepth(1.0, mode).apply)({}, {}, x, key=k, train=True)[0]
        np.testing.assert_array_equal(ones, np.zeros_like(x))
    with pytest.raises(ValueError, match="StochasticDepth: train=True needs a PRNG key"):
        L.StochasticDepth(0.5).apply({}, {}, x[0], train=True)
    with pytest.raises(NameError, match="mode='batch'.*jcnn.batched"):
        L.StochasticDepth(0.5, "batch").apply({}, {}, x[0], key=k, train=True)
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"StochasticDepth p must be in \[0, 1\]"):
            L.StochasticDepth(bad)
    with pytest.raises(ValueError, match="mode must be 'row'"):
        L.StochasticDepth(0.1, mode="rows")


def test_stochastic_depth_in_a_residual_keeps_the_shortcut():
    block = L.residual(L.serial(L.Dense(3), L.StochasticDepth(1.0)))
    x = jnp.asarray(_positive((2, 3)))
    _, params, state = block.init(jax.random.key(0), (3,))
    ys, _ = jcnn.batched(block.apply)(params, state, x, key=jax.random.key(1), train=True)
    np.testing.assert_array_equal(ys, x)


# ------------------------------------------------------------ LayerScale, LayerNorm


def test_layer_scale_matches_numpy():
    layer = L.LayerScale(1e-6)
    assert layer.pointwise and layer.hparams["init_value"] == 1e-6
    _, params, _ = layer.init(jax.random.key(0), (3, 4, 5))
    np.testing.assert_array_equal(params["scale"], np.full((5,), 1e-6, np.float32))
    scale = np.arange(1, 6, dtype=np.float32)
    x = np.random.default_rng(5).normal(size=(3, 4, 5)).astype(np.float32)
    y, _ = layer.apply({"scale": jnp.asarray(scale)}, {}, jnp.asarray(x))
    close(y, x * scale, tol=1e-6)
    with pytest.raises(ShapeError, match="LayerScale: input shape \\(3, 4, 6\\)"):
        layer.apply(params, {}, jnp.zeros((3, 4, 6)))
    with pytest.raises(TypeError, match="LayerScale init_value must be a real number"):
        L.LayerScale("1e-6")


def test_channels_last_layer_norm_matches_torch():
    (case,) = cases("layer_norm_channels_last")
    layer = L.LayerNorm()
    x = DATA[f"{case}/x"]
    params = {
        "scale": jnp.asarray(DATA[f"{case}/weight"]),
        "offset": jnp.asarray(DATA[f"{case}/bias"]),
    }
    ys, _ = jcnn.batched(layer.apply)(params, {}, jnp.asarray(x))
    close(ys, DATA[f"{case}/y"])


# ------------------------------------------------------------- Upsample, PixelShuffle


@pytest.mark.parametrize(
    "case",
    cases("upsample_nearest") + cases("upsample_bilinear") + cases("upsample_linear"),
)
def test_upsample_matches_torch(case):
    mode = case.split("/")[0].split("_")[1]
    scale = tuple(int(v) for v in DATA[f"{case}/scale_factor"])
    x, y = nchw_to_nhwc(DATA[f"{case}/x"]), nchw_to_nhwc(DATA[f"{case}/y"])
    layer = L.Upsample(scale if len(set(scale)) > 1 else scale[0], mode=mode)
    assert layer.output_shape(x.shape[1:]) == y.shape[1:]
    ys = jax.vmap(lambda v: layer.apply({}, {}, v)[0])(jnp.asarray(x))
    close(ys, y)


def test_upsample_nearest_is_numpy_repeat_for_any_rank_and_dtype():
    x = np.arange(2 * 3 * 2 * 4, dtype=np.int32).reshape(2, 3, 2, 4)
    layer = L.Upsample((2, 1, 3))
    y, _ = layer.apply({}, {}, jnp.asarray(x))
    expected = np.repeat(np.repeat(x, 2, axis=0), 3, axis=2)
    np.testing.assert_array_equal(y, expected)
    assert layer.output_shape(x.shape) == expected.shape and not layer.pointwise


def test_upsample_errors():
    with pytest.raises(ValueError, match="Upsample mode must be one of"):
        L.Upsample(2, mode="bicubic")
    with pytest.raises(ShapeError, match="Upsample scale_factor must be a positive int"):
        L.Upsample(0)
    with pytest.raises(ShapeError, match="Upsample scale_factor"):
        L.Upsample(1.5)
    with pytest.raises(ShapeError, match=r"Upsample: input shape \(4, 4, 4, 2\): expected rank 3"):
        L.Upsample(2, mode="bilinear").output_shape((4, 4, 4, 2))
    with pytest.raises(ShapeError, match="takes 2 spatial dims but scale_factor"):
        L.Upsample((2, 2, 2), mode="bilinear").output_shape((4, 4, 2))
    with pytest.raises(TypeError, match="Upsample: input dtype int32"):
        L.Upsample(2, mode="bilinear").apply({}, {}, jnp.zeros((2, 2, 1), jnp.int32))


@pytest.mark.parametrize("case", cases("pixel_shuffle"))
def test_pixel_shuffle_matches_torch(case):
    r = int(DATA[f"{case}/upscale_factor"])
    x, y = nchw_to_nhwc(DATA[f"{case}/x"]), nchw_to_nhwc(DATA[f"{case}/y"])
    layer = L.PixelShuffle(r)
    assert layer.output_shape(x.shape[1:]) == y.shape[1:]
    ys = jcnn.batched(layer.apply)({}, {}, jnp.asarray(x))[0]
    np.testing.assert_array_equal(ys, y)


def test_pixel_shuffle_matches_the_index_formula_and_errors():
    r, (h, w, c) = 2, (2, 3, 2)
    x = np.random.default_rng(6).normal(size=(h, w, c * r * r)).astype(np.float32)
    expected = np.empty((h * r, w * r, c), np.float32)
    for hh in range(h):
        for ww in range(w):
            for cc in range(c):
                for i in range(r):
                    for j in range(r):
                        expected[hh * r + i, ww * r + j, cc] = x[hh, ww, cc * r * r + i * r + j]
    np.testing.assert_array_equal(L.PixelShuffle(r).apply({}, {}, jnp.asarray(x))[0], expected)
    with pytest.raises(
        ShapeError, match="PixelShuffle: input shape \\(2, 3, 6\\): upscale_factor=2"
    ):
        L.PixelShuffle(2).output_shape((2, 3, 6))
    with pytest.raises(ShapeError, match="expected rank 3"):
        L.PixelShuffle(2).output_shape((2, 4))
