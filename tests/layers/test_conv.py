"""Conv and ConvTranspose: values against NumPy loops, scipy and lax; shapes, batching, gradients,
initialisers, and the errors users hit."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from jax import lax
from jax.test_util import check_grads
from reference import independent_pads, np_conv, np_conv_transpose, per_dim

import jcnn
from jcnn import layers as L
from jcnn.layers.shapes import ShapeError

EXACT = 1e-10  # float64 against a float64 reference
TOL = 1e-5  # float32

SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 5)}
T_SPATIAL = {1: (5,), 2: (4, 3), 3: (3, 2, 3)}


def init(layer, in_shape, seed=0):
    """``layer.init``'s output shape and params, the params from ONE jitted program.

    Eager truncated-normal initialisers compile op by op, and jitted threefry over rank-4 shapes
    compiles slowly on CPU; non-partitionable threefry draws the same distributions faster.
    """
    out_shape, _, _ = jcnn.init_shapes(layer, in_shape)
    with jax.threefry_partitionable(False):
        params, state = jax.jit(lambda k: layer.init(k, in_shape)[1:])(jax.random.key(seed))
    return out_shape, params, state


def shaped(layer, in_shape, rng):
    """Output shape from ``layer.init`` (under eval_shape) and random float32 params of its shapes.

    For tests about shapes, batching and jit, where the initialiser's values do not matter.
    """
    out_shape, abstract, state = jcnn.init_shapes(layer, in_shape)
    params = jax.tree.map(
        lambda a: jnp.asarray(0.5 * rng.normal(size=a.shape).astype(np.float32)), abstract
    )
    return out_shape, params, state


def run(layer, params, x):
    """Jitted per-example apply (an eager conv compiles more slowly than a jitted one)."""
    return jax.jit(lambda p, v: layer.apply(p, {}, v)[0])(params, x)


def random_params(rng, kernel_shape, cout, use_bias, dtype=np.float64):
    params = {"kernel": jnp.asarray(rng.normal(size=kernel_shape).astype(dtype))}
    if use_bias:
        params["bias"] = jnp.asarray(rng.normal(size=(cout,)).astype(dtype))
    return params


def max_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ------------------------------------------------------------------------- Conv vs NumPy loop

CONV_CASES = {
    "valid": dict(k=3),
    "same_odd": dict(k=3, padding="SAME"),
    "same_even_s2": dict(k=4, stride=2, padding="SAME"),
    "same_odd_s2": dict(k=3, stride=2, padding="SAME"),
    "same_dilated": dict(k=2, padding="SAME", dilation=2),
    "full": dict(k=3, padding="FULL"),
    "full_d2": dict(k=2, padding="FULL", dilation=2),
    "int_s2": dict(k=3, stride=2, padding=2),
    "asym": dict(k=3, padding=[(1, 2), (0, 3), (2, 0)]),
    "crop": dict(k=2, padding=[(-1, 1), (1, -1), (-1, 0)]),
    "mixed": dict(k=(3, 2, 1), stride=(1, 2, 3), dilation=(2, 1, 1), padding="SAME"),
    "dilated": dict(k=2, dilation=(2, 3, 1)),
    "groups2": dict(k=2, groups=2, cin=4, cout=6),
    "depthwise_m2": dict(k=3, groups=3, cin=3, cout=6, padding=1),
    "nobias": dict(k=3, stride=2, bias=False),
    "whole_input": dict(k=None),
}


CONV_3D = ["valid", "same_even_s2", "full_d2", "crop", "mixed", "groups2", "depthwise_m2"]


@pytest.mark.parametrize(
    ("case", "rank"),
    [(c, r) for c in CONV_CASES for r in (1, 2)] + [(c, 3) for c in CONV_3D],
)
def test_conv_matches_numpy_loop(case, rank, rng, x64) -> None:
    c = CONV_CASES[case]
    spatial = SPATIAL[rank]
    window = spatial if c["k"] is None else jcnn.shapes.as_tuple(per_dim(c["k"], rank), rank)
    strides = jcnn.shapes.as_tuple(per_dim(c.get("stride", 1), rank), rank)
    dilations = jcnn.shapes.as_tuple(per_dim(c.get("dilation", 1), rank), rank)
    padding = per_dim(c.get("padding", "VALID"), rank)
    groups, cin, cout, bias = (
        c.get("groups", 1),
        c.get("cin", 3),
        c.get("cout", 4),
        c.get("bias", True),
    )

    layer = L.Conv(
        cout,
        window,
        stride=strides,
        padding=padding,
        dilation=dilations,
        groups=groups,
        use_bias=bias,
    )
    out_shape, abstract, _ = jcnn.init_shapes(layer, (*spatial, cin))
    params = random_params(rng, abstract["kernel"].shape, cout, bias)
    x = rng.normal(size=(*spatial, cin))
    y = run(layer, params, jnp.asarray(x))

    pads = independent_pads(padding, spatial, window, strides, dilations)
    expected = np_conv(x, np.asarray(params["kernel"]), strides, pads, dilations, groups)
    if bias:
        expected = expected + np.asarray(params["bias"])
    assert y.dtype == jnp.float64
    assert y.shape == out_shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=EXACT, rtol=0)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("mode", ["valid", "full"])
def test_conv_single_channel_matches_scipy_correlate(rank, mode, rng, x64) -> None:
    spatial = SPATIAL[rank]
    window = (3, 2, 4)[:rank]
    x = rng.normal(size=spatial)
    w = rng.normal(size=window)
    layer = L.Conv(1, window, padding=mode.upper(), use_bias=False)
    y = run(layer, {"kernel": jnp.asarray(w[..., None, None])}, jnp.asarray(x[..., None]))
    expected = scipy.signal.correlate(x, w, mode=mode, method="direct")
    assert y.shape == (*expected.shape, 1)
    np.testing.assert_allclose(y[..., 0], expected, atol=EXACT, rtol=0)


def test_conv_float32_matches_numpy_loop(rng) -> None:
    layer = L.Conv(5, (3, 3), stride=2, padding="SAME")
    x = rng.normal(size=(8, 8, 3)).astype(np.float32)
    params = random_params(rng, (3, 3, 3, 5), 5, True, np.float32)
    y = run(layer, params, jnp.asarray(x))
    assert y.dtype == jnp.float32
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    expected = np_conv(x, kernel, (2, 2), ((0, 1), (0, 1)), (1, 1)) + bias
    np.testing.assert_allclose(y, expected, atol=TOL, rtol=TOL)


def test_conv_ones_kernel_hand_worked() -> None:
    # 1-D, x = 1..5, ones kernel of 3, SAME: window sums [1+2, 1+2+3, 2+3+4, 3+4+5, 4+5]
    layer = L.Conv(1, (3,), padding="SAME", use_bias=False)
    params = {"kernel": jnp.ones((3, 1, 1))}
    y = layer.apply(params, {}, jnp.arange(1.0, 6.0)[:, None])[0]
    np.testing.assert_array_equal(y[:, 0], [3.0, 6.0, 9.0, 12.0, 9.0])
    # arange kernel is not flipped (cross-correlation): y[o] = sum_t x[o+t] * t
    params = {"kernel": jnp.arange(3.0).reshape(3, 1, 1)}
    y = L.Conv(1, (3,), use_bias=False).apply(params, {}, jnp.arange(1.0, 6.0)[:, None])[0]
    np.testing.assert_array_equal(y[:, 0], [2 + 6, 3 + 8, 4 + 10])


# ---------------------------------------------------------------- ConvTranspose vs scatter loop

TRANSPOSE_CASES = {
    "k3_s2_p1_op1": dict(k=3, s=2, p=1, op=1),
    "k4_s2_p1": dict(k=4, s=2, p=1),
    "k3_s1_d2": dict(k=3, d=2),
    "k2_s2": dict(k=2, s=2),
    "k3_s2_d2_op1": dict(k=3, s=2, d=2, op=1),
    "k3_s1_d3_op2": dict(k=3, s=1, d=3, op=2),  # op < max(s, d)
    "k5_s3_p2_op2": dict(k=5, s=3, p=2, op=2),
    "asym": dict(k=3, s=2, p=[(0, 2), (1, 0), (2, 1)]),
    "negative": dict(k=3, s=2, p=-1),
    "mixed": dict(k=(3, 2, 4), s=(2, 1, 3), p=(1, 0, 2), op=(1, 0, 2)),
    "nobias": dict(k=3, s=2, p=1, bias=False),
}


TRANSPOSE_3D = ["k3_s2_p1_op1", "k3_s1_d3_op2", "asym", "mixed"]


@pytest.mark.parametrize(
    ("case", "rank"),
    [(c, r) for c in TRANSPOSE_CASES for r in (1, 2)] + [(c, 3) for c in TRANSPOSE_3D],
)
def test_conv_transpose_matches_scatter_definition(case, rank, rng, x64) -> None:
    c = TRANSPOSE_CASES[case]
    spatial = T_SPATIAL[rank]
    window = jcnn.shapes.as_tuple(per_dim(c["k"], rank), rank)
    strides = jcnn.shapes.as_tuple(per_dim(c.get("s", 1), rank), rank)
    dilations = jcnn.shapes.as_tuple(per_dim(c.get("d", 1), rank), rank)
    output_padding = jcnn.shapes.as_tuple(per_dim(c.get("op", 0), rank), rank)
    padding = per_dim(c.get("p", 0), rank)
    padding = list(padding) if isinstance(padding, tuple) else padding
    bias, cin, cout = c.get("bias", True), 3, 2

    layer = L.ConvTranspose(
        cout,
        window,
        stride=strides,
        padding=padding,
        output_padding=output_padding,
        dilation=dilations,
        use_bias=bias,
    )
    out_shape, abstract, _ = jcnn.init_shapes(layer, (*spatial, cin))
    assert abstract["kernel"].shape == (*window, cin, cout)
    params = random_params(rng, (*window, cin, cout), cout, bias)
    x = rng.normal(size=(*spatial, cin))
    y = run(layer, params, jnp.asarray(x))

    crop = independent_pads(padding, spatial, window, strides, dilations)
    expected = np_conv_transpose(
        x, np.asarray(params["kernel"]), strides, crop, dilations, output_padding
    )
    if bias:
        expected = expected + np.asarray(params["bias"])
    assert y.shape == out_shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=EXACT, rtol=0)


# (k, s, d) per spatial dim; each 2-D case checks two combinations, the 1-D cases one
LAX_TRANSPOSE = [
    ((1, 2), (1, 2), (1, 1)),
    ((3, 4), (2, 2), (1, 1)),
    ((3, 5), (3, 2), (1, 1)),
    ((3, 2), (1, 3), (2, 2)),
    ((4, 2), (3, 2), (2, 1)),
    ((2,), (2,), (3,)),
    ((5,), (3,), (1,)),
]


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize(("window", "strides", "dilations"), LAX_TRANSPOSE)
def test_conv_transpose_same_valid_match_lax(window, strides, dilations, padding, rng, x64) -> None:
    rank = len(window)
    spatial = T_SPATIAL[rank]
    layer = L.ConvTranspose(
        2, window, stride=strides, padding=padding, dilation=dilations, use_bias=False
    )
    out_shape = jcnn.output_shape(layer, (*spatial, 3))
    kernel = jnp.asarray(rng.normal(size=(*window, 3, 2)))
    x = jnp.asarray(rng.normal(size=(*spatial, 3)))
    y = run(layer, {"kernel": kernel}, x)
    # lax.conv_transpose(transpose_kernel=True) takes the FORWARD conv's kernel (*k, out, in): it
    # flips it and swaps its channel axes. jcnn's kernel (*k, in, out) scatters without a flip,
    # which is that forward kernel with in/out swapped.
    dn = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}[rank]
    expected = jax.jit(
        lambda v, w: lax.conv_transpose(
            v[None],
            jnp.swapaxes(w, -1, -2),
            strides,
            padding,
            rhs_dilation=dilations,
            dimension_numbers=dn,
            transpose_kernel=True,
        )[0]
    )(x, kernel)
    assert y.shape == out_shape == expected.shape
    np.testing.assert_allclose(y, expected, atol=EXACT, rtol=0)


ADJOINT_CASES = [
    (1, 3, 0, 1),
    (1, 4, 1, 1),
    (1, 3, 2, 2),
    (2, 3, 1, 1),
    (2, 4, 2, 1),
    (2, 3, 0, 2),
    (3, 3, 1, 1),
]


@pytest.mark.parametrize(("rank", "k", "p", "d"), ADJOINT_CASES)
def test_conv_transpose_is_adjoint_of_conv(rank, k, p, d, rng, x64) -> None:
    s, cx, cz = 2, 3, 2
    spatial = {1: (9,), 2: (7, 8), 3: (5, 6, 5)}[rank]
    kd = d * (k - 1) + 1
    output_padding = tuple((n + 2 * p - kd) % s for n in spatial)
    conv = L.Conv(cz, (k,) * rank, stride=s, padding=p, dilation=d, use_bias=False)
    convt = L.ConvTranspose(
        cx,
        (k,) * rank,
        stride=s,
        padding=p,
        output_padding=output_padding,
        dilation=d,
        use_bias=False,
    )
    z_shape = jcnn.output_shape(conv, (*spatial, cx))
    x_shape = jcnn.output_shape(convt, z_shape)
    assert x_shape == (*spatial, cx)

    w = jnp.asarray(rng.normal(size=((k,) * rank + (cx, cz))))
    x = jnp.asarray(rng.normal(size=(*spatial, cx)))
    y = jnp.asarray(rng.normal(size=z_shape))
    forward = np.asarray(run(conv, {"kernel": w}, x))
    backward = np.asarray(run(convt, {"kernel": jnp.swapaxes(w, -1, -2)}, y))
    lhs, rhs = np.vdot(forward, y), np.vdot(x, backward)
    assert lhs == pytest.approx(rhs, rel=EXACT, abs=EXACT)
    # the same statement through JAX's own transpose of the linear map x -> Conv(x)
    transpose = jax.jit(
        lambda w, y: jax.linear_transpose(lambda v: conv.apply({"kernel": w}, {}, v)[0], x)(y)[0]
    )
    np.testing.assert_allclose(backward, transpose(w, y), atol=EXACT, rtol=0)


# ----------------------------------------------------------------- shapes, jit, vmap, grads

LAYERS = {
    "conv1d_same_s2": (L.Conv(4, (3,), stride=2, padding="SAME"), (9, 2)),
    "conv2d_groups": (L.Conv(6, (3, 2), groups=2, padding=[(1, 0), 2]), (6, 5, 4)),
    "conv3d_full_d2": (L.Conv(2, (2, 2, 2), dilation=2, padding="FULL"), (3, 4, 3, 1)),
    "convt1d_same": (L.ConvTranspose(3, (4,), stride=2, padding="SAME"), (5, 2)),
    "convt2d_torch": (L.ConvTranspose(3, (3, 3), stride=2, padding=1, output_padding=1), (4, 3, 2)),
    "convt3d_valid": (L.ConvTranspose(2, 2, stride=(1, 2), padding="VALID"), (3, 2, 1)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_shape_agreement_init_apply_eval_shape(name, rng) -> None:
    layer, in_shape = LAYERS[name]
    out_shape, params, state = shaped(layer, in_shape, rng)
    assert state == {}
    x = jnp.asarray(rng.normal(size=in_shape).astype(np.float32))
    y, new_state = layer.apply(params, state, x)
    traced = jax.eval_shape(lambda p, v: layer.apply(p, {}, v)[0], params, x)
    assert out_shape == y.shape == traced.shape
    assert new_state == {}
    assert y.dtype == traced.dtype == jnp.float32


@pytest.mark.parametrize("name", list(LAYERS))
def test_jit_equals_eager(name, rng) -> None:
    layer, in_shape = LAYERS[name]
    _, params, _ = shaped(layer, in_shape, rng)
    x = jnp.asarray(rng.normal(size=in_shape).astype(np.float32))
    eager = layer.apply(params, {}, x)[0]
    np.testing.assert_allclose(run(layer, params, x), eager, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name", list(LAYERS))
def test_batched_equals_loop_over_examples(name, rng) -> None:
    layer, in_shape = LAYERS[name]
    _, params, _ = shaped(layer, in_shape, rng)
    xs = jnp.asarray(rng.normal(size=(3, *in_shape)).astype(np.float32))
    ys, state = jax.jit(jcnn.batched(layer.apply))(params, {}, xs)
    one = jax.jit(lambda v: layer.apply(params, {}, v)[0])
    looped = jnp.stack([one(x) for x in xs])
    assert state == {}
    assert ys.shape == (3, *jcnn.output_shape(layer, in_shape))
    np.testing.assert_allclose(ys, looped, atol=TOL, rtol=TOL)


GRAD_LAYERS = {
    "conv2d": (L.Conv(2, (2, 3), stride=2, padding="SAME"), (4, 3, 2), 2),
    "conv1d_groups_dilated": (L.Conv(4, (2,), groups=2, dilation=2, padding=1), (5, 2), 1),
    "convt2d": (L.ConvTranspose(2, (3, 2), stride=2, padding=1, output_padding=1), (3, 2, 2), 2),
    "convt1d_same": (L.ConvTranspose(2, (3,), stride=2, padding="SAME"), (3, 2), 1),
}


@pytest.mark.parametrize("name", list(GRAD_LAYERS))
def test_gradients_numerically(name, rng, x64) -> None:
    layer, in_shape, order = GRAD_LAYERS[name]
    _, params, _ = jcnn.init_shapes(layer, in_shape)
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), params)
    x = jnp.asarray(rng.normal(size=in_shape))

    def f(p, v):
        return jnp.tanh(layer.apply(p, {}, v)[0])  # nonlinear so order 2 is not trivially 0

    # order 1 compiles faster jitted; order 2 differentiates the VJP, cheaper left eager
    check_grads(jax.jit(f) if order == 1 else f, (params, x), order=order, modes=("rev",))


# ------------------------------------------------------------------------------ initialisers


def test_he_normal_kernel_std(rng) -> None:
    in_shape = (5, 5, 64)
    fan_in = 5 * 5 * 64
    _, default, _ = init(L.Conv(64, (5, 5)), in_shape)
    _, he, _ = init(L.Conv(64, (5, 5), kernel_init=jcnn.initializers.he_normal()), in_shape)
    # 102400 samples: the relative standard error of a std estimate is ~ 1/sqrt(2N) = 0.2%
    assert float(jnp.std(default["kernel"])) == pytest.approx(math.sqrt(1 / fan_in), rel=0.02)
    assert float(jnp.std(he["kernel"])) == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert float(jnp.mean(he["kernel"])) == pytest.approx(0.0, abs=3 * math.sqrt(2 / fan_in) / 320)
    np.testing.assert_array_equal(default["bias"], np.zeros(64))


@pytest.mark.parametrize(
    ("make", "in_shape", "fan_in"),
    [
        (lambda **kw: L.Conv(64, (3,), **kw), (10, 16), 3 * 16),
        (lambda **kw: L.Conv(32, (3, 3, 3), groups=4, **kw), (4, 4, 4, 16), 27 * 4),
        (lambda **kw: L.Conv(48, (2, 2), groups=16, **kw), (4, 4, 16), 4),
    ],
    ids=["conv1d", "conv3d_groups", "depthwise"],
)
def test_torch_initialiser_bounds_conv(make, in_shape, fan_in) -> None:
    # torch's fan_in for a weight (C_out, C_in // groups, *k) is C_in // groups * prod(k)
    inits = jcnn.initializers
    layer = make(kernel_init=inits.torch_kernel(), bias_init=inits.torch_bias())
    _, params, _ = init(layer, in_shape, seed=3)
    bound = fan_in**-0.5
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.95 * bound
    assert np.abs(bias).max() <= bound
    assert np.abs(bias).max() > 0.5 * bound


def test_torch_initialiser_bounds_conv_transpose() -> None:
    # torch.nn.ConvTranspose2d(16, 4, 3): weight (16, 4, 3, 3), torch's fan_in = 4 * 3 * 3 = 36 for
    # weight and bias. jcnn's kernel is (3, 3, 16, 4): torch_bias() is passed 36 by the layer;
    # torch's weight fan-in is this kernel's fan-OUT (docs/pytorch.md), while torch_kernel()
    # takes the fan-in 16 * 3 * 3 = 144.
    inits = jcnn.initializers
    torch_like = jax.nn.initializers.variance_scaling(1 / 3, "fan_out", "uniform")
    bounds = {inits.torch_kernel(): 144**-0.5, torch_like: 36**-0.5}
    for kernel_init, bound in bounds.items():
        layer = L.ConvTranspose(
            4, (3, 3), stride=2, kernel_init=kernel_init, bias_init=inits.torch_bias()
        )
        _, params, _ = init(layer, (5, 5, 16))
        kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
        assert kernel.shape == (3, 3, 16, 4)
        assert bound * 0.95 < np.abs(kernel).max() <= bound
        assert 36**-0.5 * 0.5 < np.abs(bias).max() <= 36**-0.5


@pytest.mark.parametrize(
    ("layer", "in_shape", "expected"),
    [
        (L.Conv(6, (3, 3), groups=2), (5, 5, 4), {"kernel": (3, 3, 2, 6), "bias": (6,)}),
        (L.Conv(6, (3,), groups=3), (8, 3), {"kernel": (3, 1, 6), "bias": (6,)}),
        (L.Conv(4, (1, 2, 3), use_bias=False), (4, 4, 4, 8), {"kernel": (1, 2, 3, 8, 4)}),
        (L.Conv(8, 5), (28, 28, 1), {"kernel": (5, 5, 1, 8), "bias": (8,)}),
        (L.ConvTranspose(2, (3, 4), stride=2), (4, 4, 5), {"kernel": (3, 4, 5, 2), "bias": (2,)}),
    ],
    ids=["groups2", "depthwise_m2", "nobias3d", "int_kernel_is_2d", "transpose"],
)
def test_param_shapes(layer, in_shape, expected) -> None:
    _, params, _ = jcnn.init_shapes(layer, in_shape)
    assert {k: v.shape for k, v in params.items()} == expected
    assert all(v.dtype == jnp.float32 for v in params.values())


# ------------------------------------------------------------------------ bad input catalogue


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: L.Conv(2, 3, stride=0), "Conv stride must be >= 1"),
        (lambda: L.Conv(2, (3, 3), stride=(1, -1)), "Conv stride must be >= 1"),
        (lambda: L.Conv(2, 3, dilation=0), "Conv dilation must be >= 1"),
        (lambda: L.Conv(2, 0), "Conv kernel_size must be >= 1"),
        (lambda: L.Conv(2, (3, 3), stride=(1, 1, 1)), "Conv stride must be an int or a sequence"),
        (lambda: L.Conv(0, 3), "out_channels must be a positive int"),
        (lambda: L.Conv(5, 3, groups=2), "groups=2 must be a positive int dividing out_chan"),
        (lambda: L.Conv(4, 3, groups=0), "Conv groups must be a positive int, got 0"),
        (lambda: L.Conv(2, 3, padding=[1]), "accepted"),
        (lambda: L.Conv(2, 3, padding=[(1, 2, 3), 0]), "accepted"),
        (lambda: L.Conv(2, 3, padding=1.5), "accepted"),
        (lambda: L.ConvTranspose(2, 3, stride=0), "ConvTranspose stride must be >= 1"),
        (lambda: L.ConvTranspose(2, 3, dilation=(1, 0)), "ConvTranspose dilation must be >= 1"),
        (lambda: L.ConvTranspose(2, 3, stride=2, output_padding=2), "output_padding"),
        (lambda: L.ConvTranspose(2, 3, output_padding=1), "output_padding"),
        (lambda: L.ConvTranspose(2, 3, stride=2, output_padding=-1), "output_padding"),
        (lambda: L.ConvTranspose(2, 3, stride=2, padding="SAME", output_padding=1), "torch-style"),
        (lambda: L.ConvTranspose(2, 3, padding="FULL"), "accepted are 'SAME', 'VALID'"),
        (lambda: L.ConvTranspose(2, 3, padding=[1, 2, 3]), "accepted"),
        (lambda: L.ConvTranspose(0, 3), "out_channels must be a positive int"),
    ],
)
def test_bad_hyper_parameters_fail_at_construction(make, match) -> None:
    with pytest.raises(ShapeError, match=re.escape(match)):
        make()


def _accepted_forms(message: str) -> None:
    for form in ('"VALID"', '"SAME"', '"FULL"', "an int", "(lo, hi)"):
        assert form in message


def test_unknown_padding_string_fails_at_init_listing_forms() -> None:
    with pytest.raises(ShapeError) as err:
        L.Conv(2, 3, padding="HALF").init(jax.random.key(0), (5, 5, 1))
    _accepted_forms(str(err.value))


# (layer, input shape at init, input shape at apply, error type, message fragments)
TRACE_ERRORS = {
    "kernel_too_big": (
        L.Conv(2, (5, 5)), (8, 8, 1), (3, 3, 1), ShapeError,
        ["Conv: input shape (3, 3, 1)", "spatial dim 0",
         "floor((3 + 0 + 0 - 1*(5-1) - 1) / 1) + 1"],
    ),
    "kernel_too_big_after_crop_1d": (
        L.Conv(2, (3,), padding=-1, dilation=2), (9, 1), (5, 1), ShapeError,
        ["Conv: input shape (5, 1)", "floor((5 + -1 + -1 - 2*(3-1) - 1) / 1) + 1"],
    ),
    "kernel_too_big_3d_second_dim": (
        L.Conv(2, (1, 4, 1), stride=2), (4, 4, 4, 1), (4, 3, 4, 1), ShapeError,
        ["Conv: input shape (4, 3, 4, 1)", "spatial dim 1",
         "floor((3 + 0 + 0 - 1*(4-1) - 1) / 2)"],
    ),
    "batch_to_per_example_apply": (
        L.Conv(2, (3, 3)), (8, 8, 1), (4, 8, 8, 1), ShapeError,
        ["Conv: input shape (4, 8, 8, 1)", "expected rank 3", "jcnn.batched"],
    ),
    "missing_channel_axis": (
        L.Conv(2, (3, 3)), (8, 8, 1), (8, 8), ShapeError, ["expected rank 3", "got rank 2"],
    ),
    "groups_do_not_divide_c_in": (
        L.Conv(4, (3,), groups=2), (8, 2), (8, 3), ShapeError,
        ["Conv: input shape (8, 3)", "groups=2 does not divide C_in=3"],
    ),
    "channel_mismatch_with_params": (
        L.Conv(2, (3, 3)), (8, 8, 3), (8, 8, 2), ValueError,  # at apply only
        ["Conv: input shape (8, 8, 2)", "the input has 2 channels", "made for 3", "(3, 3, 3, 2)"],
    ),
    "transpose_too_much_crop": (
        L.ConvTranspose(2, (3,), padding=3), (9, 1), (2, 1), ShapeError,
        ["ConvTranspose: input shape (2, 1)", "(2-1)*1 - 3 - 3 + 1*(3-1) + 0 + 1 = -2", "padding=3"],
    ),
    "transpose_batch": (
        L.ConvTranspose(2, (3, 3), stride=2), (4, 4, 1), (2, 4, 4, 1), ShapeError,
        ["ConvTranspose: input shape (2, 4, 4, 1)", "expected rank 3"],
    ),
    "transpose_channel_mismatch": (
        L.ConvTranspose(2, 3), (4, 4, 3), (4, 4, 1), ValueError,  # at apply only
        ["ConvTranspose: input shape (4, 4, 1)", "has 1 channels", "made for 3", "(3, 3, 3, 2)"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(TRACE_ERRORS))
def test_bad_inputs_fail_at_init_and_trace_time(name) -> None:
    layer, init_shape, bad_shape, error, fragments = TRACE_ERRORS[name]
    _, params, _ = shaped(layer, init_shape, np.random.default_rng(0))
    x = jnp.zeros(bad_shape)
    if error is ShapeError:  # the same check runs at init, on the shape alone
        with pytest.raises(ShapeError) as err:
            layer.init(jax.random.key(0), bad_shape)
        for fragment in fragments:
            assert fragment in str(err.value), (fragment, str(err.value))
    for apply in (layer.apply, jax.jit(layer.apply)):
        with pytest.raises(error) as err:
            apply(params, {}, x)
        for fragment in fragments:
            assert fragment in str(err.value), (fragment, str(err.value))


@pytest.mark.parametrize("transpose", [False, True])
def test_params_from_another_architecture(transpose) -> None:
    make = L.ConvTranspose if transpose else L.Conv
    layer = make(4, (3, 3))
    rng = np.random.default_rng(0)
    _, params, _ = shaped(layer, (6, 6, 2), rng)
    x = jnp.zeros((6, 6, 2))
    cases = [
        ({"kernel": params["kernel"]}, "expected keys ['bias', 'kernel'], got ['kernel']"),
        ({**params, "scale": params["bias"]}, "got ['bias', 'kernel', 'scale']"),
        (shaped(make(4, (5, 5)), (6, 6, 2), rng)[1], "'kernel' has shape (5, 5,"),
        (shaped(make(3, (3, 3)), (6, 6, 2), rng)[1], "'kernel' has shape"),
        ((params["kernel"], params["bias"]), "got tuple"),
    ]
    for bad, fragment in cases:
        for apply in (layer.apply, jax.jit(layer.apply)):
            with pytest.raises(ValueError, match=re.escape(fragment)):
                apply(bad, {}, x)
    # and a layer without bias refuses a bias
    with pytest.raises(ValueError, match=re.escape("expected keys ['kernel']")):
        make(4, (3, 3), use_bias=False).apply(params, {}, x)
