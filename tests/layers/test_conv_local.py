"""ConvLocal against Flax's ``nn.ConvLocal`` (same params) and a NumPy loop over positions."""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn.layers import shapes
from jcnn.tools import flops

TOL = 1e-5

CASES = [
    # spatial, C_in, C_out, kernel, stride, padding, dilation
    ((9,), 3, 4, (3,), (1,), "VALID", (1,)),
    ((10,), 2, 3, (4,), (2,), "SAME", (1,)),
    ((11,), 2, 2, (3,), (3,), [(2, 1)], (2,)),
    ((6, 7), 3, 4, (3, 2), (1, 2), "VALID", (1, 1)),
    ((7, 8), 2, 3, (3, 3), (2, 1), "SAME", (1, 2)),
    ((5, 6), 2, 2, (2, 3), (1, 1), [(1, 0), (2, 2)], (2, 1)),
]


def _loop(x, kernel, bias, window, stride, pads, dilation, out_shape, circular=False):
    """y[o, f] = sum_{c, t} x[o*s + t*d - lo, c] * kernel[o, c*T + t, f] + bias[o, f]; cells
    outside ``x`` are zeros, or with ``circular`` the cell at that position modulo the size."""
    c_in = x.shape[-1]
    taps = list(itertools.product(*(range(k) for k in window)))
    y = np.zeros(out_shape)
    for o in itertools.product(*(range(n) for n in out_shape[:-1])):
        acc = bias[o].astype(np.float64).copy()
        for ti, t in enumerate(taps):
            pos = [
                oo * s + tt * d - lo for oo, tt, s, d, (lo, _) in zip(o, t, stride, dilation, pads)
            ]
            if circular:
                pos = [p % n for p, n in zip(pos, x.shape[:-1])]
            elif not all(0 <= p < n for p, n in zip(pos, x.shape[:-1])):
                continue
            for c in range(c_in):
                acc += x[(*pos, c)] * kernel[(*o, c * len(taps) + ti)].astype(np.float64)
        y[o] = acc
    return y


@pytest.mark.parametrize("case", range(len(CASES)))
def test_conv_local_matches_flax_and_a_loop(case: int) -> None:
    spatial, c_in, c_out, window, stride, padding, dilation = CASES[case]
    rng = np.random.default_rng(case)
    x = rng.standard_normal((2, *spatial, c_in)).astype(np.float32)
    layer = L.ConvLocal(c_out, window, stride=stride, padding=padding, dilation=dilation)
    out_shape, params, state = layer.init(jax.random.key(0), x.shape[1:])
    flax_layer = nn.ConvLocal(
        c_out, window, strides=stride, padding=padding, kernel_dilation=dilation
    )
    flax_vars = flax_layer.init(jax.random.key(1), jnp.asarray(x))
    # the same param shapes, so weights move across unchanged
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, flax_vars["params"])
    params = {
        "kernel": jnp.asarray(rng.standard_normal(params["kernel"].shape), jnp.float32),
        "bias": jnp.asarray(rng.standard_normal(params["bias"].shape), jnp.float32),
    }
    got, _ = jcnn.batched(layer.apply)(params, state, jnp.asarray(x))
    want = flax_layer.apply({"params": params}, jnp.asarray(x))
    assert got.shape == (2, *out_shape)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=TOL, rtol=TOL)
    pads = shapes.resolve_padding(padding, spatial, window, stride, dilation)
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    for b in range(2):
        loop = _loop(x[b], kernel, bias, window, stride, pads, dilation, out_shape)
        np.testing.assert_allclose(np.asarray(got[b]), loop, atol=TOL, rtol=TOL)
    # multiply-adds: those of a Conv with the same geometry
    assert flops.count_macs(layer, x.shape[1:]) == flops.count_macs(
        L.Conv(c_out, window, stride=stride, padding=padding, dilation=dilation), x.shape[1:]
    )


CIRCULAR_CASES = [
    # spatial, C_in, C_out, kernel, stride, dilation
    ((9,), 2, 3, (3,), (1,), (1,)),
    ((5,), 1, 2, (3,), (3,), (1,)),
    ((5,), 2, 2, (3,), (1,), (3,)),  # dilated extent 7 > 5 cells
    ((2,), 2, 2, (5,), (1,), (1,)),  # pads (2, 2) on 2 cells: wraps more than once
    ((6, 7), 3, 4, (3, 2), (2, 1), (1, 2)),
]


@pytest.mark.parametrize("case", range(len(CIRCULAR_CASES)))
def test_circular_conv_local_matches_flax_and_a_modular_loop(case: int) -> None:
    """``padding_mode="circular"`` with Flax's CIRCULAR widths is ``nn.ConvLocal(padding=
    "CIRCULAR")``, and a loop reading position ``p`` as ``p mod n``."""
    spatial, c_in, c_out, window, stride, dilation = CIRCULAR_CASES[case]
    extents = [(k - 1) * d + 1 for k, d in zip(window, dilation)]
    pads = [((e - 1) // 2, e // 2) for e in extents]
    rng = np.random.default_rng(100 + case)
    x = rng.standard_normal((2, *spatial, c_in)).astype(np.float32)
    layer = L.ConvLocal(
        c_out, window, stride=stride, padding=pads, dilation=dilation, padding_mode="circular"
    )
    out_shape, params, state = layer.init(jax.random.key(0), x.shape[1:])
    params = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32), params)
    got, _ = jcnn.batched(layer.apply)(params, state, jnp.asarray(x))
    flax_layer = nn.ConvLocal(
        c_out, window, strides=stride, padding="CIRCULAR", kernel_dilation=dilation
    )
    want = flax_layer.apply({"params": params}, jnp.asarray(x))
    assert got.shape == want.shape == (2, *out_shape)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=TOL, rtol=TOL)
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    for b in range(2):
        loop = _loop(x[b], kernel, bias, window, stride, pads, dilation, out_shape, circular=True)
        np.testing.assert_allclose(np.asarray(got[b]), loop, atol=TOL, rtol=TOL)


def test_conv_local_padding_mode_errors() -> None:
    with pytest.raises(ValueError, match="ConvLocal: unknown padding_mode 'reflect'.*'circular'"):
        L.ConvLocal(2, 3, padding=1, padding_mode="reflect")
    with pytest.raises(shapes.ShapeError, match="ConvLocal: padding=.*negative.*'zeros'"):
        L.ConvLocal(2, (3,), padding=[(-1, 1)], padding_mode="circular")


def test_conv_local_init_and_gradients() -> None:
    layer = L.ConvLocal(4, (3, 3), padding="SAME", use_bias=False)
    out_shape, params, _ = layer.init(jax.random.key(0), (6, 6, 5))
    assert out_shape == (6, 6, 4) and set(params) == {"kernel"}
    std = float(jnp.std(params["kernel"]))
    assert 0.5 / np.sqrt(45) < std < 1.5 / np.sqrt(45)  # fan-in 3*3*5 per position
    x = jnp.ones((6, 6, 5))
    grad = jax.grad(lambda p: jnp.sum(layer.apply(p, {}, x)[0] ** 2))(params)
    assert grad["kernel"].shape == params["kernel"].shape
    assert bool(jnp.all(jnp.isfinite(grad["kernel"])))


def test_conv_local_errors_name_the_layer() -> None:
    layer = L.ConvLocal(4, (5, 5))
    with pytest.raises(shapes.ShapeError, match="ConvLocal.*window does not fit"):
        layer.init(jax.random.key(0), (3, 3, 1))
    with pytest.raises(shapes.ShapeError, match="ConvLocal stride"):
        L.ConvLocal(4, 3, stride=0)
    _, params, _ = layer.init(jax.random.key(0), (8, 8, 2))
    with pytest.raises(ValueError, match="ConvLocal: params from another architecture"):
        layer.apply(params, {}, jnp.ones((9, 9, 2)))
    assert repr(L.ConvLocal(4, 3)) == "ConvLocal(out_channels=4, kernel_size=(3, 3))"
