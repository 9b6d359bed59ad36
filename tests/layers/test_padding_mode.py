"""Conv(padding_mode=...): values against a NumPy reference (index-formula padding + a loop
correlation), every padding form, errors, gradients, jit and vmap.

The torch parity of the modes is in tests/test_torch_parity.py (``test_conv_padding_mode``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from reference import independent_pads, np_conv, per_dim

import jcnn
from jcnn import layers as L
from jcnn.layers.shapes import ShapeError

EXACT = 1e-10  # float64 against a float64 reference
MODES = ("reflect", "replicate", "circular")
SPATIAL = {1: (9,), 2: (7, 6), 3: (5, 4, 5)}


def source_index(i: int, n: int, mode: str) -> int:
    """The input cell that padded position ``i`` (``-lo <= i < n + hi``) copies, by definition."""
    if 0 <= i < n:
        return i
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "circular":
        return i % n
    assert mode == "reflect" and -n < i < 2 * n - 1, (i, n)  # mirror about the edge cell
    return -i if i < 0 else 2 * (n - 1) - i


def np_mode_pad(x: np.ndarray, pads, mode: str) -> np.ndarray:
    """Pads the spatial axes of ``x (*spatial, C)`` by copying cells (no np.pad modes)."""
    for axis, (lo, hi) in enumerate(pads):
        n = x.shape[axis]
        index = [source_index(i, n, mode) for i in range(-lo, n + hi)]
        x = np.take(x, index, axis=axis)
    return x


def run(layer, params, x):
    return jax.jit(lambda p, v: layer.apply(p, {}, v)[0])(params, x)


def random_params(layer, in_shape, rng, dtype=np.float64):
    _, abstract, _ = jcnn.init_shapes(layer, in_shape)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape).astype(dtype)), abstract)


# ------------------------------------------------------------------------------ values


def test_hand_worked_1d() -> None:
    x = jnp.arange(1.0, 5.0)[:, None]  # a b c d = 1 2 3 4
    pick_first = {"kernel": jnp.asarray([1.0, 0.0, 0.0, 0.0, 0.0]).reshape(5, 1, 1)}
    expected = {  # the first cell of each window: the padded input without its last 4 cells
        "zeros": [0, 0, 1, 2],
        "reflect": [3, 2, 1, 2],  # [c b | a b c d | c b]
        "replicate": [1, 1, 1, 2],  # [a a | a b c d | d d]
        "circular": [3, 4, 1, 2],  # [c d | a b c d | a b]
    }
    for mode, want in expected.items():
        layer = L.Conv(1, (5,), padding=2, padding_mode=mode, use_bias=False)
        y = layer.apply(pick_first, {}, x)[0]
        np.testing.assert_array_equal(y[:, 0], np.asarray(want, np.float32), err_msg=mode)


CASES = {
    "int": dict(k=3, padding=1),
    "int_s2_d2": dict(k=3, stride=2, dilation=2, padding=3),
    "asym_pairs": dict(k=3, padding=[(1, 2), (0, 3), (2, 0)]),
    "per_dim_ints": dict(k=(3, 2, 3), stride=(1, 2, 1), padding=[2, 1, 0]),
    "same_even": dict(k=4, padding="SAME"),
    "same_s2_dilated": dict(k=(3, 2, 2), stride=2, dilation=(1, 2, 1), padding="SAME"),
    "full": dict(k=2, padding="FULL", dilation=(2, 1, 1)),
    "groups2": dict(k=3, groups=2, cin=4, cout=6, padding=[(2, 0), (1, 1), (0, 2)]),
    "depthwise_m2": dict(k=3, groups=3, cin=3, cout=6, padding=1, bias=False),
    "valid": dict(k=3, padding="VALID"),
}
CASES_3D = ["asym_pairs", "same_s2_dilated", "groups2"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("case", "rank"), [(c, r) for c in CASES for r in (1, 2)] + [(c, 3) for c in CASES_3D]
)
def test_matches_numpy_reference(case, rank, mode, rng, x64) -> None:
    c = CASES[case]
    spatial = SPATIAL[rank]
    window = jcnn.shapes.as_tuple(per_dim(c["k"], rank), rank)
    strides = jcnn.shapes.as_tuple(per_dim(c.get("stride", 1), rank), rank)
    dilations = jcnn.shapes.as_tuple(per_dim(c.get("dilation", 1), rank), rank)
    padding = per_dim(c["padding"], rank)
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
        padding_mode=mode,
    )
    params = random_params(layer, (*spatial, cin), rng)
    x = rng.normal(size=(*spatial, cin))
    y = run(layer, params, jnp.asarray(x))

    pads = independent_pads(padding, spatial, window, strides, dilations)
    xp = np_mode_pad(x, pads, mode)
    no_pads = ((0, 0),) * rank
    expected = np_conv(xp, np.asarray(params["kernel"]), strides, no_pads, dilations, groups)
    if bias:
        expected = expected + np.asarray(params["bias"])
    assert y.dtype == jnp.float64
    assert y.shape == layer.output_shape((*spatial, cin)) == expected.shape
    np.testing.assert_allclose(y, expected, atol=EXACT, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_valid_padding_is_the_zeros_conv(mode, rng) -> None:
    x = jnp.asarray(rng.normal(size=(7, 6, 3)).astype(np.float32))
    layer = L.Conv(4, 3, stride=2, padding_mode=mode)
    params = random_params(layer, x.shape, rng, np.float32)
    np.testing.assert_array_equal(run(layer, params, x), run(L.Conv(4, 3, stride=2), params, x))


@pytest.mark.parametrize("lowering", ["native", "patches"])
@pytest.mark.parametrize("mode", MODES)
def test_float32_and_lowerings(mode, lowering, rng) -> None:
    x = rng.normal(size=(7, 6, 2)).astype(np.float32)
    layer = L.Conv(
        3, (3, 2), stride=(2, 1), padding=[(2, 1), (0, 1)], padding_mode=mode, lowering=lowering
    )
    params = random_params(layer, x.shape, rng, np.float32)
    y = run(layer, params, jnp.asarray(x))
    pads = ((2, 1), (0, 1))
    expected = np_conv(np_mode_pad(x, pads, mode), np.asarray(params["kernel"]), (2, 1),
                       ((0, 0), (0, 0)), (1, 1)) + np.asarray(params["bias"])  # fmt: skip
    np.testing.assert_allclose(y, expected, atol=2e-5, rtol=0)


# --------------------------------------------------------------- facts, zeros unchanged


def test_zeros_is_the_default_layer_unchanged() -> None:
    default = L.Conv(8, 3, padding=1)
    explicit = L.Conv(8, 3, padding=1, padding_mode="zeros")
    assert explicit == default and hash(explicit) == hash(default)
    assert default.hparams["padding_mode"] == "zeros"  # a stated fact, hidden in the repr
    assert "padding_mode" not in repr(default) and repr(default) == repr(explicit)
    x = jnp.ones((6, 5, 2))
    _, params, _ = default.init(jax.random.key(0), x.shape)
    jaxpr = jax.make_jaxpr(lambda p, v: explicit.apply(p, {}, v)[0])(params, x)
    assert "pad[" not in str(jaxpr) and "conv_general_dilated[" in str(jaxpr)


@pytest.mark.parametrize("mode", MODES)
def test_mode_is_a_stated_fact(mode) -> None:
    layer = L.Conv(8, (3, 3), padding=((1, 2), 1), padding_mode=mode)
    assert layer.hparams["padding_mode"] == mode
    assert f"padding_mode={mode!r}" in repr(layer) and f"padding_mode={mode!r}" in layer.describe()
    assert layer.window.padding == ((1, 2), 1) == layer.hparams["padding"]
    assert layer != L.Conv(8, (3, 3), padding=((1, 2), 1))
    # output sizes do not depend on the mode
    zeros = L.Conv(8, (3, 3), padding=((1, 2), 1))
    assert layer.output_shape((9, 7, 3)) == zeros.output_shape((9, 7, 3)) == (10, 7, 8)
    # the params are a zero-padded Conv's: same tree, same torch layout
    shapes = jax.tree.map(lambda a: a.shape, jcnn.init_shapes(layer, (9, 7, 3))[1])
    assert shapes == jax.tree.map(lambda a: a.shape, jcnn.init_shapes(zeros, (9, 7, 3))[1])


def test_limits_accepted_at_the_boundary() -> None:
    # torch: reflect pads < n per side, circular <= n, replicate any amount
    assert L.Conv(2, (3,), padding=4, padding_mode="reflect").output_shape((5, 1)) == (11, 2)
    assert L.Conv(2, (3,), padding=5, padding_mode="circular").output_shape((5, 1)) == (13, 2)
    assert L.Conv(2, (2,), padding=9, padding_mode="replicate").output_shape((1, 1)) == (18, 2)
    assert L.Conv(2, (3,), padding="SAME", padding_mode="reflect").output_shape((2, 1)) == (2, 2)


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad", ["reflection", "Reflect", "constant", None, 0])
def test_unknown_mode_fails_at_construction_listing_modes(bad) -> None:
    with pytest.raises(ValueError, match="Conv: unknown padding_mode") as info:
        L.Conv(4, 3, padding=1, padding_mode=bad)
    for mode in ("'zeros'", "'reflect'", "'replicate'", "'circular'"):
        assert mode in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_negative_padding_only_with_zeros(mode) -> None:
    with pytest.raises(ShapeError, match="Conv: padding=.*negative.*padding_mode='zeros'"):
        L.Conv(4, (3,), padding=[(-1, 2)], padding_mode=mode)
    L.Conv(4, (3,), padding=[(-1, 2)])  # zeros: crops as before


@pytest.mark.parametrize(
    ("mode", "padding", "in_shape", "says"),
    [
        ("reflect", 3, (3, 8, 1), "spatial dim 0: padding_mode='reflect' needs padding < input"),
        ("reflect", [(0, 0), (0, 8)], (9, 8, 1), "(lo, hi) = (0, 8) on a dim of size 8"),
        ("reflect", "SAME", (1, 4, 2), "padding='SAME' pads (lo, hi) = (1, 1) on a dim of size 1"),
        ("circular", [3, (1, 6)], (4, 5, 1), "spatial dim 1: padding_mode='circular' needs"),
    ],
)
def test_too_small_input_fails_with_the_shapes(mode, padding, in_shape, says) -> None:
    layer = L.Conv(2, (3, 3), padding=padding, padding_mode=mode)
    head = f"Conv: input shape {in_shape}: "
    for call in (
        lambda: layer.output_shape(in_shape),
        lambda: layer.init(jax.random.key(0), in_shape),
        lambda: layer.apply({}, {}, jnp.ones(in_shape)),
        lambda: L.serial(layer).init(jax.random.key(0), in_shape),
    ):
        with pytest.raises(ShapeError) as info:
            call()
        message = str(info.value)
        assert says in message and "PyTorch's rule" in message, message
        assert message.startswith(head) or message.startswith("serial/Conv_0: input shape")


def test_conv_transpose_refuses_reflect_padding() -> None:
    # torch's ConvTranspose*d defines only zeros and Flax's ConvTranspose adds circular;
    # neither defines reflect for a transposed convolution.
    with pytest.raises(ValueError, match="padding_mode"):
        L.ConvTranspose(4, 3, padding=1, padding_mode="reflect")


# --------------------------------------------------------- gradients, jit, vmap, batching


GRAD_CASES = {
    "reflect_2d_same_s2": (dict(k=(2, 3), stride=2, padding="SAME"), (4, 5, 2), 2),
    "replicate_1d_groups": (dict(k=(3,), groups=2, dilation=2, padding=[(3, 1)]), (5, 2), 1),
    "circular_2d_asym": (dict(k=(3, 2), padding=[(2, 1), (1, 2)]), (3, 4, 2), 1),
    "reflect_3d": (dict(k=(2, 2, 2), padding=1), (3, 2, 3, 1), 1),
}


@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_gradients_numerically(name, rng, x64) -> None:
    c, in_shape, order = GRAD_CASES[name]
    mode = name.split("_")[0]
    layer = L.Conv(
        4 if c.get("groups") else 2,
        c["k"],
        stride=c.get("stride", 1),
        padding=c["padding"],
        dilation=c.get("dilation", 1),
        groups=c.get("groups", 1),
        padding_mode=mode,
    )
    params = random_params(layer, in_shape, rng)
    x = jnp.asarray(rng.normal(size=in_shape))

    def f(p, v):
        return jnp.tanh(layer.apply(p, {}, v)[0])

    check_grads(jax.jit(f) if order == 1 else f, (params, x), order=order, modes=("rev",))


@pytest.mark.parametrize("mode", MODES)
def test_input_gradient_folds_the_copies_back(mode, x64) -> None:
    # d(sum y)/dx of a ones 1-D kernel counts how often each cell is read, copies included.
    layer = L.Conv(1, (3,), padding=2, padding_mode=mode, use_bias=False)
    params = {"kernel": jnp.ones((3, 1, 1))}
    g = jax.grad(lambda v: layer.apply(params, {}, v)[0].sum())(jnp.zeros((4, 1)))[:, 0]
    reads = np.zeros(4)
    for i in range(-2, 6):  # padded position i is read by every window covering it
        windows = sum(1 for o in range(6) if o - 2 <= i <= o)  # 6 outputs, window [o-2, o]
        reads[source_index(i, 4, mode)] += windows
    np.testing.assert_allclose(g, reads, atol=EXACT, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_jit_vmap_batched_equal_eager_per_example(mode, rng) -> None:
    layer = L.Conv(3, (3, 2), stride=(1, 2), padding="SAME", padding_mode=mode)
    xs = jnp.asarray(rng.normal(size=(4, 6, 5, 2)).astype(np.float32))
    params = random_params(layer, xs.shape[1:], rng, np.float32)
    eager = np.stack([layer.apply(params, {}, x)[0] for x in xs])
    mapped = jax.jit(jax.vmap(lambda x: layer.apply(params, {}, x)[0]))(xs)
    batched, _ = jax.jit(jcnn.batched(layer.apply))(params, {}, xs)
    np.testing.assert_allclose(mapped, eager, atol=1e-6, rtol=0)
    np.testing.assert_allclose(batched, eager, atol=1e-6, rtol=0)
