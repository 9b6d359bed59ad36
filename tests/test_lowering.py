"""Every conv / max-pool lowering gives the native values AND derivatives (jcnn/lowering.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn import layers as L
from jcnn import lowering as lw
from jcnn import shapes

CONV_CASES = [
    # (spatial, C_in, C_out, window, stride, padding, dilation, groups)
    ((9, 8), 1, 4, (3, 3), (1, 1), "VALID", (1, 1), 1),
    ((9, 8), 3, 4, (3, 2), (2, 1), "SAME", (1, 1), 1),
    ((10, 9), 2, 3, (3, 3), (1, 2), ((1, 2), (0, 1)), (2, 1), 1),
    ((8, 8), 4, 6, (3, 3), (1, 1), 1, (1, 1), 2),  # grouped
    ((8, 7), 3, 6, (3, 3), (2, 2), "SAME", (1, 1), 3),  # depthwise, multiplier 2
    ((9, 9), 2, 3, (3, 3), (1, 1), ((-1, 2), (1, -1)), (1, 1), 1),  # negative pads crop
    ((11,), 2, 3, (4,), (3,), "FULL", (2,), 1),  # 1-D
    ((5, 6, 4), 2, 3, (2, 3, 2), (1, 2, 1), "SAME", (1, 1, 2), 1),  # 3-D
]


def _conv(lowering, x, kernel, window, stride, padding, dilation, groups):
    pads = shapes.resolve_padding(padding, x.shape[:-1], window, stride, dilation)
    return lw.conv(
        x,
        kernel,
        strides=stride,
        pads=pads,
        dilation=dilation,
        groups=groups,
        lowering=lowering,
    )


@pytest.mark.parametrize("case", CONV_CASES)
def test_patches_conv_matches_native_values_and_gradients(case, x64):
    spatial, c_in, c_out, window, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(spatial) * 100 + c_in)
    x = jnp.asarray(rng.standard_normal((*spatial, c_in)))
    kernel = jnp.asarray(rng.standard_normal((*window, c_in // groups, c_out)))
    args = (window, stride, padding, dilation, groups)
    y_nat = _conv("native", x, kernel, *args)
    y_pat = _conv("patches", x, kernel, *args)
    assert y_pat.shape == y_nat.shape
    np.testing.assert_array_equal(np.asarray(y_pat), np.asarray(y_nat))  # same forward op
    g = jnp.asarray(rng.standard_normal(y_nat.shape))

    def loss(lowering):
        return lambda x, k: jnp.sum(jnp.sin(_conv(lowering, x, k, *args)) * g)

    want = jax.grad(loss("native"), argnums=(0, 1))(x, kernel)
    got = jax.jit(jax.grad(loss("patches"), argnums=(0, 1)))(x, kernel)
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10)


def test_patches_conv_batched_forward_mode_and_second_order(x64):
    rng = np.random.default_rng(1)
    xs = jnp.asarray(rng.standard_normal((3, 7, 6, 2)))
    kernel = jnp.asarray(rng.standard_normal((3, 3, 2, 4)))
    tk = jnp.asarray(rng.standard_normal(kernel.shape))
    args = ((3, 3), (1, 1), "SAME", (1, 1), 1)

    def f(lowering):
        return lambda k: jnp.sum(jax.vmap(lambda x: _conv(lowering, x, k, *args))(xs) ** 3)

    # jvp (forward mode) and a Hessian-vector product (forward over reverse)
    _, t_nat = jax.jvp(f("native"), (kernel,), (tk,))
    _, t_pat = jax.jvp(f("patches"), (kernel,), (tk,))
    np.testing.assert_allclose(float(t_pat), float(t_nat), rtol=1e-10)
    hvp_nat = jax.jvp(jax.grad(f("native")), (kernel,), (tk,))[1]
    hvp_pat = jax.jvp(jax.grad(f("patches")), (kernel,), (tk,))[1]
    np.testing.assert_allclose(np.asarray(hvp_pat), np.asarray(hvp_nat), rtol=1e-9, atol=1e-9)


POOL_CASES = [
    # (spatial, window, padding)
    ((6, 6), (2, 2), "VALID"),
    ((7, 5), (2, 2), "VALID"),  # remainder rows/cols dropped
    ((7, 7), (3, 3), "SAME"),
    ((5, 6), (2, 3), ((1, 0), (2, 1))),
    ((9,), (3,), 1),  # 1-D
    ((4, 6, 4), (2, 3, 2), "VALID"),  # 3-D
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_mask_max_pool_matches_native_values_and_gradients(case, ties, x64):
    spatial, window, padding = case
    rng = np.random.default_rng(7)
    data = rng.integers(-2, 2, (*spatial, 3)) if ties else rng.standard_normal((*spatial, 3))
    x = jnp.asarray(data.astype(np.float64))
    pads = shapes.resolve_padding(padding, spatial, window, window, (1,) * len(window))

    def pool(lowering):
        return lambda v: lw.max_pool(v, window, window, pads, lowering=lowering)

    y_nat, y_mask = pool("native")(x), jax.jit(pool("mask"))(x)
    np.testing.assert_array_equal(np.asarray(y_mask), np.asarray(y_nat))
    g = jnp.asarray(rng.standard_normal(y_nat.shape))
    want = jax.grad(lambda v: jnp.sum(pool("native")(v) * g))(x)
    got = jax.jit(jax.grad(lambda v: jnp.sum(pool("mask")(v) * g)))(x)
    # Exactly the same cells receive exactly the same cotangents, ties included.
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    _, t_nat = jax.jvp(pool("native"), (x,), (x * 0.5,))
    _, t_mask = jax.jvp(pool("mask"), (x,), (x * 0.5,))
    np.testing.assert_array_equal(np.asarray(t_mask), np.asarray(t_nat))


def test_all_minus_inf_window_keeps_native_value():
    x = jnp.full((4, 4, 1), -jnp.inf).at[0, 0, 0].set(1.0)
    pads = ((2, 0), (0, 0))  # the first output row pools two padding rows: -inf
    y_nat = lw.max_pool(x, (2, 2), (2, 2), pads, lowering="native")
    y_mask = lw.max_pool(x, (2, 2), (2, 2), pads, lowering="mask")
    np.testing.assert_array_equal(np.asarray(y_mask), np.asarray(y_nat))


def test_layers_route_through_lowerings_and_agree():
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.standard_normal((4, 12, 12, 1)), jnp.float32)
    ys = jnp.asarray(rng.integers(0, 5, 4))

    def net(lowering_conv, lowering_pool):
        return L.serial(
            L.Conv(4, 3, lowering=lowering_conv),
            L.Relu(),
            L.MaxPool(2, lowering=lowering_pool),
            L.Conv(6, 3, padding="SAME", lowering=lowering_conv),
            L.Relu(),
            L.MaxPool(2, lowering=lowering_pool),
            L.Flatten(),
            L.Dense(5),
        )

    nat, alt = net("native", "native"), net("patches", "mask")
    _, params, state = nat.init(jax.random.key(0), (12, 12, 1))

    def loss(layer):
        def f(p):
            logits = jax.vmap(lambda x: layer.apply(p, state, x)[0])(xs)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), ys])

        return jax.jit(jax.value_and_grad(f))

    (l_nat, g_nat), (l_alt, g_alt) = loss(nat)(params), loss(alt)(params)
    assert float(l_nat) == float(l_alt)
    for a, b in zip(jax.tree_util.tree_leaves(g_alt), jax.tree_util.tree_leaves(g_nat)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)


def test_auto_rule_per_backend_and_shape(monkeypatch):
    monkeypatch.setattr(lw, "_on_cpu", lambda: True)
    assert lw.resolve_conv_lowering("auto", (5, 5), 1, 1) == "patches"
    assert lw.resolve_conv_lowering("auto", (3, 3), 8, 1) == "patches"
    assert lw.resolve_conv_lowering("auto", (3, 3), 64, 1) == "native"
    assert lw.resolve_conv_lowering("auto", (3, 3), 64, 16) == "patches"  # 4 per group
    assert lw.resolve_pool_lowering("auto", (2, 2), (2, 2)) == "mask"
    assert lw.resolve_pool_lowering("auto", (3, 3), (2, 2)) == "native"  # overlapping
    assert lw.resolve_pool_lowering("mask", (3, 3), (2, 2)) == "native"  # falls back
    assert lw.resolve_conv_lowering("native", (5, 5), 1, 1) == "native"
    monkeypatch.setattr(lw, "_on_cpu", lambda: False)  # GPU / TPU: native stays
    assert lw.resolve_conv_lowering("auto", (5, 5), 1, 1) == "native"
    assert lw.resolve_pool_lowering("auto", (2, 2), (2, 2)) == "native"
    assert lw.resolve_conv_lowering("patches", (5, 5), 1, 1) == "patches"  # explicit wins


def test_unknown_lowering_is_rejected_at_construction():
    with pytest.raises(ValueError, match="Conv lowering must be one of"):
        L.Conv(4, 3, lowering="fft")
    with pytest.raises(ValueError, match="MaxPool lowering must be one of"):
        L.MaxPool(2, lowering="patches")
    with pytest.raises(ValueError, match="conv lowering"):
        lw.conv(
            jnp.ones((4, 4, 1)),
            jnp.ones((2, 2, 1, 1)),
            strides=(1, 1),
            pads=((0, 0),) * 2,
            dilation=(1, 1),
            lowering="auto",
        )
