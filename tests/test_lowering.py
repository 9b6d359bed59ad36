"""Every conv / max-pool lowering gives the native values AND derivatives (jcnn/layers/lowering.py)."""

from __future__ import annotations

import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jcnn
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


@pytest.mark.parametrize("lowering", ["patches", "canonical", "auto"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_patches_conv_matches_native_values_and_gradients(case, lowering, x64):
    spatial, c_in, c_out, window, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(spatial) * 100 + c_in)
    x = jnp.asarray(rng.standard_normal((*spatial, c_in)))
    kernel = jnp.asarray(rng.standard_normal((*window, c_in // groups, c_out)))
    args = (window, stride, padding, dilation, groups)
    y_nat = _conv("native", x, kernel, *args)
    y_pat = _conv(lowering, x, kernel, *args)
    assert y_pat.shape == y_nat.shape
    np.testing.assert_array_equal(np.asarray(y_pat), np.asarray(y_nat))  # same forward op
    g = jnp.asarray(rng.standard_normal(y_nat.shape))

    def loss(lowering):
        return lambda x, k: jnp.sum(jnp.sin(_conv(lowering, x, k, *args)) * g)

    want = jax.grad(loss("native"), argnums=(0, 1))(x, kernel)
    got = jax.jit(jax.grad(loss(lowering), argnums=(0, 1)))(x, kernel)
    eager = jax.grad(loss(lowering), argnums=(0, 1))(x, kernel)
    for a, b, c in zip(got, want, eager):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(np.asarray(c), np.asarray(b), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lowering", ["patches", "canonical", "auto"])
def test_patches_conv_batched_forward_mode_and_second_order(lowering, x64):
    rng = np.random.default_rng(1)
    xs = jnp.asarray(rng.standard_normal((3, 7, 6, 2)))
    kernel = jnp.asarray(rng.standard_normal((3, 3, 2, 4)))
    tk = jnp.asarray(rng.standard_normal(kernel.shape))
    args = ((3, 3), (1, 1), "SAME", (1, 1), 1)

    def f(lowering):
        return lambda k: jnp.sum(jax.vmap(lambda x: _conv(lowering, x, k, *args))(xs) ** 3)

    # jvp (forward mode) and a Hessian-vector product (forward over reverse)
    _, t_nat = jax.jvp(f("native"), (kernel,), (tk,))
    _, t_pat = jax.jvp(f(lowering), (kernel,), (tk,))
    np.testing.assert_allclose(float(t_pat), float(t_nat), rtol=1e-10)
    hvp_nat = jax.jvp(jax.grad(f("native")), (kernel,), (tk,))[1]
    hvp_pat = jax.jit(lambda k, t: jax.jvp(jax.grad(f(lowering)), (k,), (t,))[1])(kernel, tk)
    np.testing.assert_allclose(np.asarray(hvp_pat), np.asarray(hvp_nat), rtol=1e-9, atol=1e-9)
    # Input gradient of a vmapped batch (the x tangent path), under jit.
    g_nat = jax.grad(
        lambda v: jnp.sum(jax.vmap(lambda x: _conv("native", x, kernel, *args))(v) ** 3)
    )
    g_alt = jax.grad(
        lambda v: jnp.sum(jax.vmap(lambda x: _conv(lowering, x, kernel, *args))(v) ** 3)
    )
    np.testing.assert_allclose(
        np.asarray(jax.jit(g_alt)(xs)), np.asarray(g_nat(xs)), rtol=1e-10, atol=1e-10
    )


# Wider variants of CONV_CASES: "auto" picks "canonical" for CPU when C_in / groups > 8.
WIDE_CONV_CASES = [
    ((9, 8), 12, 5, (3, 3), (1, 1), "VALID", (1, 1), 1),
    ((9, 8), 10, 6, (3, 2), (2, 1), "SAME", (1, 1), 1),
    ((10, 9), 9, 3, (3, 3), (1, 2), ((1, 2), (0, 1)), (2, 1), 1),
    ((8, 8), 20, 6, (3, 3), (1, 1), 1, (1, 1), 2),  # grouped, 10 per group
    ((8, 7), 3, 6, (3, 3), (2, 2), "SAME", (1, 1), 3),  # depthwise
    ((9, 9), 9, 3, (3, 3), (1, 1), ((-1, 2), (1, -1)), (1, 1), 1),  # negative pads crop
    ((6, 6), 16, 8, (1, 1), (2, 2), "VALID", (1, 1), 1),  # strided 1x1 (a ResNet shortcut)
    ((11,), 9, 3, (4,), (3,), "FULL", (2,), 1),  # 1-D
    ((5, 6, 4), 9, 3, (2, 3, 2), (1, 2, 1), "SAME", (1, 1, 2), 1),  # 3-D
]


@pytest.mark.parametrize("lowering", ["canonical", "auto"])
@pytest.mark.parametrize("case", WIDE_CONV_CASES)
def test_canonical_conv_float32_gradients_match_native(case, lowering):
    spatial, c_in, c_out, window, stride, padding, dilation, groups = case
    rng = np.random.default_rng(len(spatial) * 100 + c_in)
    xs = jnp.asarray(rng.standard_normal((3, *spatial, c_in)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((*window, c_in // groups, c_out)), jnp.float32)
    args = (window, stride, padding, dilation, groups)

    def apply(lowering, k, v):
        return jax.vmap(lambda x: _conv(lowering, x, k, *args))(v)

    y_nat = jax.jit(partial(apply, "native"))(kernel, xs)
    y_alt = jax.jit(partial(apply, lowering))(kernel, xs)
    np.testing.assert_array_equal(np.asarray(y_alt), np.asarray(y_nat))  # bit for bit
    g = jnp.asarray(rng.standard_normal(y_nat.shape), jnp.float32)

    def loss(lowering):
        return lambda k, v: jnp.sum(jnp.tanh(apply(lowering, k, v)) * g)

    def close(a, b):
        scale = float(np.max(np.abs(np.asarray(b))))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * scale)

    want = jax.jit(jax.grad(loss("native"), argnums=(0, 1)))(kernel, xs)
    got = jax.jit(jax.grad(loss(lowering), argnums=(0, 1)))(kernel, xs)
    for a, b in zip(got, want):
        close(a, b)
    # Inside a loop (the case the lowering exists for): the same gradients.
    in_scan = jax.jit(
        lambda k, v: lax.scan(lambda c, _: (c, jax.grad(loss(lowering), (0, 1))(k, v)), 0, None, 2)
    )(kernel, xs)[1]
    for a, b in zip(in_scan, want):
        close(a[1], b)
    # Per-example kernel gradients (vmap of grad: the kernel tangent is batched too).
    per_ex = jax.jit(
        jax.vmap(
            lambda x, gg: jax.grad(lambda k: jnp.sum(_conv(lowering, x, k, *args) * gg))(kernel)
        )
    )(xs, g)
    per_ex_nat = jax.vmap(
        lambda x, gg: jax.grad(lambda k: jnp.sum(_conv("native", x, k, *args) * gg))(kernel)
    )(xs, g)
    close(per_ex, per_ex_nat)
    # Forward mode: jvp in both arguments.
    tk, tx = jnp.ones_like(kernel), jnp.ones_like(xs)
    _, t_nat = jax.jvp(partial(apply, "native"), (kernel, xs), (tk, tx))
    _, t_alt = jax.jit(lambda k, v: jax.jvp(partial(apply, lowering), (k, v), (tk, tx)))(kernel, xs)
    close(t_alt, t_nat)


_CANONICAL_LABELS = {1: "b0f_0io->b0f", 2: "b01f_01io->b01f", 3: "b012f_012io->b012f"}


def _loop_conv_labels(lowering: str, rank: int) -> list[str]:
    """``dim_labels`` of every convolution in the compiled ``lax.scan`` of a training step."""
    spatial = (7, 6, 5)[:rank]
    net = L.serial(
        L.Conv(20, (3,) * rank, padding="SAME", lowering=lowering),  # C_in = 9: "canonical"
        L.Relu(),
        # strided, grouped: 10 input channels per group ("canonical"; one filter gradient each)
        L.Conv(10, (2,) * rank, stride=(2,) * rank, groups=2, lowering=lowering),
        L.Flatten(),
        L.Dense(3),
    )
    _, params, state = jcnn.init_shapes(net, (*spatial, 9))
    params = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    xs = jnp.ones((2, *spatial, 9), jnp.float32)

    def step(p, _):
        g = jax.grad(lambda p: jnp.sum(jcnn.batched(net.apply)(p, state, xs)[0] ** 2))(p)
        return jax.tree_util.tree_map(lambda a, b: a - 0.1 * b, p, g), None

    text = jax.jit(lambda p: lax.scan(step, p, None, 2)[0]).lower(params).compile().as_text()
    assert " while(" in text  # the steps stay a loop
    return re.findall(r" convolution\(.*?dim_labels=([^,\s]+)", text)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU layout rule")
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_auto_gradients_in_loops_are_canonical_convolutions(rank):
    # XLA:CPU canonicalizes convolutions in the entry computation only; in a while body a
    # non-canonical conv (the native gradients: f01b_i01o->01bf, b01f_01oi->b01f) runs as a
    # generic loop, 10-35x slower. "auto" must leave only canonical ones there.
    labels = _loop_conv_labels("auto", rank)
    assert len(labels) == 6  # 2 forward, 1 + 2 filter gradients, the 2nd conv's input gradient
    assert set(labels) == {_CANONICAL_LABELS[rank]}, labels
    # The check can fail: the native gradients in the same loop are not canonical.
    assert set(_loop_conv_labels("native", rank)) != {_CANONICAL_LABELS[rank]}


POOL_CASES = [
    # (spatial, window, padding)
    ((6, 6), (2, 2), "VALID"),
    ((7, 5), (2, 2), "VALID"),  # remainder rows/cols dropped
    ((7, 7), (3, 3), "SAME"),
    ((5, 6), (2, 3), ((1, 0), (2, 1))),
    ((9,), (3,), 1),  # 1-D
    ((4, 6, 4), (2, 3, 2), "VALID"),  # 3-D
]


@pytest.mark.parametrize("lowering", ["mask", "auto"])
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_mask_max_pool_matches_native_values_and_gradients(case, ties, lowering, x64):
    spatial, window, padding = case
    rng = np.random.default_rng(7)
    data = rng.integers(-2, 2, (*spatial, 3)) if ties else rng.standard_normal((*spatial, 3))
    x = jnp.asarray(data.astype(np.float64))
    pads = shapes.resolve_padding(padding, spatial, window, window, (1,) * len(window))

    def pool(lowering):
        return lambda v: lw.max_pool(v, window, window, pads, lowering=lowering)

    y_nat, y_mask = pool("native")(x), jax.jit(pool(lowering))(x)
    np.testing.assert_array_equal(np.asarray(y_mask), np.asarray(y_nat))
    g = jnp.asarray(rng.standard_normal(y_nat.shape))
    want = jax.grad(lambda v: jnp.sum(pool("native")(v) * g))(x)
    got = jax.jit(jax.grad(lambda v: jnp.sum(pool(lowering)(v) * g)))(x)
    eager = jax.grad(lambda v: jnp.sum(pool(lowering)(v) * g))(x)
    # Exactly the same cells receive exactly the same cotangents, ties included.
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(want))
    _, t_nat = jax.jvp(pool("native"), (x,), (x * 0.5,))
    _, t_mask = jax.jvp(pool(lowering), (x,), (x * 0.5,))
    np.testing.assert_array_equal(np.asarray(t_mask), np.asarray(t_nat))
    # vmap over a batch: the same per-example cotangents.
    xs = jnp.stack([x, -x])
    gb_nat = jax.grad(lambda v: jnp.sum(jax.vmap(pool("native"))(v) ** 2))(xs)
    gb_alt = jax.jit(jax.grad(lambda v: jnp.sum(jax.vmap(pool(lowering))(v) ** 2)))(xs)
    np.testing.assert_array_equal(np.asarray(gb_alt), np.asarray(gb_nat))


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

    nat, alt, auto = net("native", "native"), net("patches", "mask"), net("auto", "auto")
    _, params, state = nat.init(jax.random.key(0), (12, 12, 1))

    def loss(layer):
        def f(p):
            logits = jax.vmap(lambda x: layer.apply(p, state, x)[0])(xs)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), ys])

        return jax.jit(jax.value_and_grad(f))

    (l_nat, g_nat), (l_alt, g_alt) = loss(nat)(params), loss(alt)(params)
    l_auto, g_auto = loss(auto)(params)
    assert float(l_nat) == float(l_alt) == float(l_auto)
    for a, b in zip(jax.tree_util.tree_leaves(g_alt), jax.tree_util.tree_leaves(g_nat)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
    # "auto" is exactly one of the two: the CPU lowerings on CPU, the native ones elsewhere.
    same = g_alt if jax.default_backend() == "cpu" else g_nat
    for a, b in zip(jax.tree_util.tree_leaves(g_auto), jax.tree_util.tree_leaves(same)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_auto_rule_per_platform_and_shape():
    conv, pool = lw.resolve_conv_lowering, lw.resolve_pool_lowering
    # For CPU: patches for thin convs, mask for non-overlapping pools.
    assert conv("auto", (5, 5), 1, 1, "cpu") == "patches"
    assert conv("auto", (3, 3), 8, 1, "cpu") == "patches"
    assert conv("auto", (3, 3), 64, 1, "cpu") == "canonical"  # wide: canonical-layout gradients
    assert conv("auto", (3, 3), 9, 1, "cpu") == "canonical"
    assert conv("auto", (3, 3), 64, 16, "cpu") == "patches"  # 4 per group
    assert pool("auto", (2, 2), (2, 2), "cpu") == "mask"
    assert pool("auto", (3, 3), (2, 2), "cpu") == "native"  # overlapping
    assert pool("mask", (3, 3), (2, 2)) == "native"  # falls back
    assert conv("native", (5, 5), 1, 1, "cpu") == "native"
    for platform in ("cuda", "rocm", "tpu"):  # GPU / TPU: native stays
        assert conv("auto", (5, 5), 1, 1, platform) == "native"
        assert pool("auto", (2, 2), (2, 2), platform) == "native"
    assert conv("patches", (5, 5), 1, 1, "cuda") == "patches"  # explicit wins
    # While tracing (no platform): "auto" where the platforms differ, else their common choice.
    assert conv("auto", (5, 5), 1, 1) == "auto"
    assert conv("auto", (3, 3), 64, 1) == "auto"  # canonical for CPU, native elsewhere
    assert conv("canonical", (3, 3), 64, 1) == "canonical"
    assert pool("auto", (2, 2), (2, 2)) == "auto"
    assert pool("auto", (3, 3), (2, 2)) == "native"


def test_dimension_numbers_are_channels_last():
    for rank, spec in [(1, ("NWC", "WIO", "NWC")), (2, ("NHWC", "HWIO", "NHWC"))]:
        want = lax.conv_dimension_numbers((1,) * (rank + 2), (1,) * (rank + 2), spec)
        assert lw.dimension_numbers(rank) == want
    want = lax.conv_dimension_numbers((1,) * 5, (1,) * 5, ("NDHWC", "DHWIO", "NDHWC"))
    assert lw.dimension_numbers(3) == want


# ---------------------------------------------------------------------------------------------
# "auto" is decided for the platform the program is lowered for
# ---------------------------------------------------------------------------------------------

#: StableHLO ops that tell the lowerings apart in a conv + max-pool gradient: the patches
#: lowering's im2col gather and matmuls, the native max-pool gradient's select_and_scatter and
#: the native conv gradients' convolutions.
OPS = ("stablehlo.gather", "stablehlo.select_and_scatter", "stablehlo.convolution", "dot_general")


def _grad_program(conv_lowering: str, pool_lowering: str):
    net = L.serial(
        L.Conv(4, 3, lowering=conv_lowering),  # C_in = 1: patches for CPU
        L.Relu(),
        L.MaxPool(2, lowering=pool_lowering),  # stride == window: mask for CPU
        L.Conv(5, 3, lowering=conv_lowering),  # C_in = 4: patches for CPU, input gradient too
        L.Flatten(),
        L.Dense(3),
    )
    _, params, state = jcnn.init_shapes(net, (12, 12, 1))
    xs = jax.ShapeDtypeStruct((2, 12, 12, 1), jnp.float32)

    def loss(p, xs):
        return jnp.sum(jcnn.batched(net.apply)(p, state, xs)[0] ** 2)

    return jax.jit(jax.grad(loss)).trace(params, xs)


def _ops(traced, platform: str) -> dict[str, int]:
    text = traced.lower(lowering_platforms=(platform,)).as_text()
    return {op: text.count(op) for op in OPS}


def test_auto_lowers_only_the_branch_of_the_target_platform():
    auto = _grad_program("auto", "auto")
    cpu, cuda = _ops(auto, "cpu"), _ops(auto, "cuda")
    # For CPU: the gather of the patches lowering, no native max-pool gradient ...
    assert cpu["stablehlo.gather"] > 0 and cpu["stablehlo.select_and_scatter"] == 0
    # ... for CUDA (cross-lowered: StableHLO only, nothing compiled): the native gradients.
    assert cuda["stablehlo.gather"] == 0 and cuda["stablehlo.select_and_scatter"] == 1
    assert cuda["stablehlo.convolution"] > cpu["stablehlo.convolution"] == 2  # forward convs
    # Each program is exactly the one the explicit lowerings give for that platform.
    assert cpu == _ops(_grad_program("patches", "mask"), "cpu")
    assert cuda == _ops(_grad_program("native", "native"), "cuda")
    assert _ops(auto, "tpu") == _ops(_grad_program("native", "native"), "tpu")


def _hlo_ops(compiled_text: str) -> dict[str, int]:
    """Instructions by opcode in compiled HLO text (``%name = type opcode(operands)``)."""
    ops: dict[str, int] = {}
    for op in re.findall(r"= [^ ]+ ([a-z-]+)\(", compiled_text):
        ops[op] = ops.get(op, 0) + 1
    return ops


def test_compiled_auto_program_has_no_conditional():
    # Compiled for this machine's platform: the platform choice leaves no branch at run time.
    compiled = _hlo_ops(_grad_program("auto", "auto").lower().compile().as_text())
    assert "conditional" not in compiled and "convolution" in compiled
    if jax.default_backend() == "cpu":
        # The same instructions as the explicit CPU lowerings: nothing left of the native branch.
        explicit = _hlo_ops(_grad_program("patches", "mask").lower().compile().as_text())
        assert compiled == explicit
        assert "select-and-scatter" not in compiled and "scatter" not in compiled


def test_unknown_lowering_is_rejected_at_construction():
    with pytest.raises(ValueError, match="Conv lowering must be one of"):
        L.Conv(4, 3, lowering="fft")
    with pytest.raises(ValueError, match="MaxPool lowering must be one of"):
        L.MaxPool(2, lowering="patches")
    with pytest.raises(ValueError, match="conv lowering must be one of"):
        lw.conv(
            jnp.ones((4, 4, 1)),
            jnp.ones((2, 2, 1, 1)),
            strides=(1, 1),
            pads=((0, 0),) * 2,
            dilation=(1, 1),
            lowering="fft",
        )
    with pytest.raises(ValueError, match="max_pool lowering must be one of"):
        lw.max_pool(jnp.ones((4, 4, 1)), (2, 2), (2, 2), ((0, 0),) * 2, lowering="patches")
