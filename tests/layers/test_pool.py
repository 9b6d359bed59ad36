"""Pooling layers against NumPy window loops written here: values, shapes, gradients, errors."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn import layers as L
from jcnn.layers.shapes import FORMULA, ShapeError

MAX_ERR: dict[str, float] = {}


@pytest.fixture(autouse=True, scope="module")
def _print_max_errors():
    yield
    if MAX_ERR:
        print("\n[test_pool] max abs errors:", {k: f"{v:.1e}" for k, v in MAX_ERR.items()})


def _record(name: str, got, want) -> float:
    err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    MAX_ERR[name] = max(MAX_ERR.get(name, 0.0), err)
    return err


# ---------------------------------------------------------------------------------------------
# NumPy references
# ---------------------------------------------------------------------------------------------


def _np_pads(padding, spatial, window, stride):
    """Explicit (lo, hi) pairs, resolved independently of jcnn.shapes."""
    rank = len(window)
    if isinstance(padding, str):
        if padding == "VALID":
            return [(0, 0)] * rank
        assert padding == "SAME"
        pads = []
        for n, k, s in zip(spatial, window, stride):
            out = -(-n // s)
            total = max((out - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def np_pool(x, window, stride, padding, kind, count_include_pad=True):
    """Window loop over ``x: (*spatial, C)``; padded cells are left out of max and sum."""
    spatial = x.shape[:-1]
    stride = window if stride is None else stride
    pads = _np_pads(padding, spatial, window, stride)
    out = [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(spatial, window, stride, pads)]
    y = np.empty((*out, x.shape[-1]), np.float64)
    for idx in np.ndindex(*out):
        starts = [i * s - lo for i, s, (lo, _) in zip(idx, stride, pads)]
        cells = x[
            tuple(slice(max(a, 0), min(a + k, n)) for a, k, n in zip(starts, window, spatial))
        ].reshape(-1, x.shape[-1])
        if kind == "max":
            y[idx] = cells.max(axis=0)
        elif kind == "sum":
            y[idx] = cells.sum(axis=0)
        else:
            y[idx] = cells.sum(axis=0) / (math.prod(window) if count_include_pad else len(cells))
    return y


def np_maxpool_grad(x, g, window, stride, padding):
    """d/dx of sum(maxpool(x) * g): each window's cotangent goes to its argmax cell."""
    spatial = x.shape[:-1]
    pads = _np_pads(padding, spatial, window, stride)
    dx = np.zeros_like(x)
    for idx in np.ndindex(*g.shape[:-1]):
        starts = [i * s - lo for i, s, (lo, _) in zip(idx, stride, pads)]
        lows = [max(a, 0) for a in starts]
        sub = x[
            tuple(slice(lo, min(a + k, n)) for lo, a, k, n in zip(lows, starts, window, spatial))
        ]
        for c in range(x.shape[-1]):
            arg = np.unravel_index(np.argmax(sub[..., c]), sub.shape[:-1])
            dx[(*[lo + a for lo, a in zip(lows, arg)], c)] += g[(*idx, c)]
    return dx


# ---------------------------------------------------------------------------------------------
# Values vs the window loop, 1-D / 2-D / 3-D
# ---------------------------------------------------------------------------------------------

CASES = [
    # (spatial, window, stride, padding)
    ((10,), (3,), (2,), "SAME"),
    ((9,), (4,), (1,), [(1, 2)]),
    ((11,), (2,), (3,), 1),
    ((7, 6), (2, 2), None, "VALID"),
    ((7, 8), (3, 3), (2, 2), "SAME"),
    ((6, 5), (3, 2), (1, 2), [(1, 0), (1, 1)]),
    ((5, 6), (3, 3), (2, 1), 1),
    ((4, 5, 4), (2, 2, 2), None, "VALID"),
    ((4, 5, 3), (2, 3, 2), (1, 2, 2), [(0, 1), 1, (1, 0)]),
]
KINDS = ["max", "sum", "avg_incl", "avg_excl"]


def _make(kind, window, stride, padding):
    if kind == "max":
        return L.MaxPool(window, stride=stride, padding=padding)
    if kind == "sum":
        return L.SumPool(window, stride=stride, padding=padding)
    return L.AvgPool(window, stride=stride, padding=padding, count_include_pad=kind == "avg_incl")


@pytest.mark.parametrize(("spatial", "window", "stride", "padding"), CASES)
def test_pool_matches_window_loop(spatial, window, stride, padding):
    rng = np.random.default_rng(len(spatial) * 100 + sum(window))
    x = rng.standard_normal((*spatial, 3))
    layers = {kind: _make(kind, window, stride, padding) for kind in KINDS}
    with jax.enable_x64(True):
        inits = {kind: layer.init(jax.random.key(0), x.shape) for kind, layer in layers.items()}
        apply_all = jax.jit(lambda v: {k: lay.apply({}, {}, v) for k, lay in layers.items()})
        outs = apply_all(jnp.asarray(x))
        abstract = jax.eval_shape(apply_all, jnp.asarray(x))
    for kind in KINDS:
        out_shape, params, state = inits[kind]
        y, new_state = outs[kind]
        want = np_pool(x, window, stride, padding, kind.split("_")[0], kind != "avg_excl")
        assert params == {} and state == {} and new_state == {}, kind
        assert out_shape == y.shape == abstract[kind][0].shape == want.shape, kind
        assert y.dtype == jnp.float64, kind
        assert _record(f"{kind} pool", y, want) < 1e-12, kind


def test_avgpool_count_include_pad_differs_only_at_borders():
    x = np.random.default_rng(1).uniform(1.0, 2.0, (5, 5, 2)).astype(np.float32)
    incl = L.AvgPool((3, 3), stride=(1, 1), padding="SAME", count_include_pad=True)
    excl = L.AvgPool((3, 3), stride=(1, 1), padding="SAME", count_include_pad=False)
    y_in = np.asarray(incl.apply({}, {}, jnp.asarray(x))[0])
    y_ex = np.asarray(excl.apply({}, {}, jnp.asarray(x))[0])
    np.testing.assert_allclose(y_in[1:-1, 1:-1], y_ex[1:-1, 1:-1], rtol=1e-6)
    # Corner: 4 real cells of 9. Including the padded zeros shrinks it by 4/9.
    np.testing.assert_allclose(y_in[0, 0], y_ex[0, 0] * 4 / 9, rtol=1e-6)
    np.testing.assert_allclose(y_ex[0, 0], x[:2, :2].mean(axis=(0, 1)), rtol=1e-6)


@pytest.mark.parametrize("window", [2, (3, 3), (2,), (2, 2, 2)])
def test_stride_defaults_to_window(window):
    rank = 2 if isinstance(window, int) else len(window)
    win = (window,) * 2 if isinstance(window, int) else window
    x = jnp.asarray(np.random.default_rng(2).standard_normal((*([6] * rank), 2)))
    default = L.MaxPool(window)
    explicit = L.MaxPool(window, stride=win)
    np.testing.assert_array_equal(default.apply({}, {}, x)[0], explicit.apply({}, {}, x)[0])
    assert default.init(None, x.shape)[0] == (*[6 // w for w in win], 2)


def test_int_window_means_2d_and_maxpool_docstring_example():
    assert L.MaxPool(2).init(None, (26, 26, 8))[0] == (13, 13, 8)
    assert L.AvgPool(3, stride=1, padding="SAME").init(None, (7, 9, 4))[0] == (7, 9, 4)


def test_maxpool_ignores_padding_on_negative_inputs():
    """Padded cells are -inf for max: an all-negative input never returns a padded 0."""
    x = -np.random.default_rng(3).uniform(1.0, 2.0, (4, 4, 1)).astype(np.float32)
    y = L.MaxPool((3, 3), stride=(2, 2), padding=1).apply({}, {}, jnp.asarray(x))[0]
    assert float(jnp.max(y)) < 0
    np.testing.assert_array_equal(y, np_pool(x, (3, 3), (2, 2), 1, "max").astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Global pools
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [(7,), (4, 5), (3, 4, 2)])
def test_global_pools(spatial):
    x = np.random.default_rng(4).standard_normal((*spatial, 5))
    axes = tuple(range(len(spatial)))
    with jax.enable_x64(True):
        for layer, ref in [(L.GlobalAvgPool(), x.mean(axes)), (L.GlobalMaxPool(), x.max(axes))]:
            out_shape, params, state = layer.init(None, x.shape)
            y, _ = layer.apply(params, state, jnp.asarray(x))
            assert out_shape == y.shape == (5,)
            assert _record(f"{layer.kind}", y, ref) < 1e-12


@pytest.mark.parametrize("layer", [L.GlobalAvgPool(), L.GlobalMaxPool()], ids=repr)
def test_global_pools_reject_rank_1(layer):
    with pytest.raises(ShapeError, match=r"input shape \(5,\)"):
        layer.init(None, (5,))
    with pytest.raises(ShapeError, match=layer.kind):
        layer.apply({}, {}, jnp.ones(5) * 0.5)


# ---------------------------------------------------------------------------------------------
# Gradient of MaxPool routes to the argmax
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spatial", "window", "stride", "padding"),
    [
        ((6, 6), (2, 2), (2, 2), "VALID"),  # disjoint windows
        ((7, 6), (3, 3), (2, 2), 1),  # overlapping windows: cotangents accumulate
    ],
)
def test_maxpool_gradient_routes_to_argmax(spatial, window, stride, padding):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((*spatial, 2))
    layer = L.MaxPool(window, stride=stride, padding=padding)
    with jax.enable_x64(True):
        out_shape = layer.init(None, x.shape)[0]
        g = rng.standard_normal(out_shape)
        dx = jax.jit(jax.grad(lambda v: jnp.sum(layer.apply({}, {}, v)[0] * jnp.asarray(g))))(
            jnp.asarray(x)
        )
    want = np_maxpool_grad(x, g, window, stride, padding)
    assert _record("maxpool grad", dx, want) < 1e-12
    if stride == window:
        assert np.count_nonzero(np.asarray(dx)) == g.size  # exactly one cell per window


def np_sum_pool_grad(x, g, window, stride, padding, divisor):
    """d/dx of sum(pool(x) * g) for sum/average pools: g / divisor spread over each window."""
    spatial = x.shape[:-1]
    pads = _np_pads(padding, spatial, window, stride)
    dx = np.zeros_like(x)
    for idx in np.ndindex(*g.shape[:-1]):
        starts = [i * s - lo for i, s, (lo, _) in zip(idx, stride, pads)]
        cells = tuple(slice(max(a, 0), min(a + k, n)) for a, k, n in zip(starts, window, spatial))
        n_real = math.prod(c.stop - c.start for c in cells)
        dx[cells] += g[idx] / (divisor if divisor is not None else n_real)
    return dx


@pytest.mark.parametrize(("kind", "divisor"), [("sum", 1), ("avg_incl", 9), ("avg_excl", None)])
def test_sum_and_avg_pool_gradient_under_jit(kind, divisor):
    # BUG (jcnn/layers/pool.py:94 SumPool and :119/:123 AvgPool): the reduce_window init value
    # `jnp.zeros((), x.dtype)` is a tracer under jit, so lax.reduce_window falls back to its
    # generic form, which has no reverse-mode rule: jax.jit(jax.grad(loss)) raises "Linearization
    # failed to produce known values for all output primals". Eager grad works; MaxPool's
    # `-jnp.inf` (a Python float) works. A Python 0 / np.zeros((), dtype) init value fixes it.
    x = np.random.default_rng(6).standard_normal((6, 6, 2))
    layer = _make(kind, (3, 3), (2, 2), 1)
    with jax.enable_x64(True):

        def loss(v):
            return jnp.sum(jnp.sin(layer.apply({}, {}, v)[0]))

        dx = jax.jit(jax.grad(loss))(jnp.asarray(x))
    y = np_pool(x, (3, 3), (2, 2), 1, kind.split("_")[0], kind != "avg_excl")
    want = np_sum_pool_grad(x, np.cos(y), (3, 3), (2, 2), 1, divisor)
    assert _record(f"{kind} pool grad", dx, want) < 1e-12


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_window_larger_than_padded_input_names_layer_shape_and_formula():
    with pytest.raises(ShapeError) as info:
        L.MaxPool((5, 5)).init(None, (3, 3, 1))
    msg = str(info.value)
    assert msg.startswith("MaxPool")
    assert "(3, 3, 1)" in msg
    assert FORMULA in msg
    with pytest.raises(ShapeError, match="AvgPool.*input shape \\(2, 2, 4\\)"):
        L.AvgPool((5, 5), padding=1).init(None, (2, 2, 4))
    with pytest.raises(ShapeError, match="SumPool"):
        L.SumPool((4,)).apply({}, {}, jnp.ones((3, 2)) * 0.5)


@pytest.mark.parametrize("stride", [0, -1, (1, 0), (2, -2)])
def test_nonpositive_stride_errors(stride):
    with pytest.raises(ShapeError, match="stride"):
        L.MaxPool((2, 2), stride=stride)


@pytest.mark.parametrize("window", [0, (2, 0), (-1,)])
def test_nonpositive_window_errors(window):
    with pytest.raises(ShapeError, match="window"):
        L.AvgPool(window)


@pytest.mark.parametrize(
    "padding",
    ["FOO", [(1, 2, 3), (0, 0)], [1], [1, 1, 1], (1.5, 1), [(1,), 2], [(1, 1.0), 0]],
)
def test_malformed_padding_errors(padding):
    # Either at construction or, at the latest, at init.
    with pytest.raises(ShapeError, match="padding"):
        L.MaxPool((2, 2), padding=padding).init(None, (6, 6, 1))


def test_window_or_stride_with_wrong_length_errors():
    with pytest.raises(ShapeError, match="stride"):
        L.MaxPool((2, 2), stride=(1, 1, 1))


@pytest.mark.parametrize(
    ("layer", "shape", "rank"),
    [(L.MaxPool(2), (4, 4), 3), (L.MaxPool(2), (2, 4, 4, 1), 3), (L.AvgPool((2,)), (4, 4, 1), 2)],
)
def test_wrong_rank_errors(layer, shape, rank):
    with pytest.raises(ShapeError, match=rf"expected rank {rank} .*ONE example"):
        layer.init(None, shape)
    with pytest.raises(ShapeError, match="ONE example"):
        layer.apply({}, {}, jnp.full(shape, 0.25))


# ---------------------------------------------------------------------------------------------
# Adaptive pooling vs a window loop written here from PyTorch's definition
# ---------------------------------------------------------------------------------------------


def _np_adaptive_windows(n, o):
    """PyTorch's windows, by float arithmetic: [floor(i*n/o), ceil((i+1)*n/o))."""
    return [(math.floor(i * n / o), math.ceil((i + 1) * n / o)) for i in range(o)]


def np_adaptive_pool(x, output_size, kind):
    """``(*spatial, C) -> (*output_size, C)``: mean / max of every window box."""
    windows = [_np_adaptive_windows(n, o) for n, o in zip(x.shape[:-1], output_size)]
    y = np.empty((*output_size, x.shape[-1]), np.float64)
    for idx in np.ndindex(*output_size):
        box = x[tuple(slice(*windows[d][i]) for d, i in enumerate(idx))].reshape(-1, x.shape[-1])
        y[idx] = box.max(axis=0) if kind == "max" else box.mean(axis=0)
    return y


def np_adaptive_pool_grad(x, g, output_size, kind):
    """d/dx of sum(pool(x) * g): g / |box| over each box (avg), or to the box's first max in
    row-major order (max, as PyTorch's CPU kernel scans it)."""
    windows = [_np_adaptive_windows(n, o) for n, o in zip(x.shape[:-1], output_size)]
    dx = np.zeros_like(x)
    for idx in np.ndindex(*output_size):
        box = tuple(slice(*windows[d][i]) for d, i in enumerate(idx))
        if kind == "avg":
            dx[box] += g[idx] / math.prod(s.stop - s.start for s in box)
            continue
        sub = x[box]
        for c in range(x.shape[-1]):
            arg = np.unravel_index(np.argmax(sub[..., c]), sub.shape[:-1])
            dx[(*[s.start + a for s, a in zip(box, arg)], c)] += g[(*idx, c)]
    return dx


ADAPTIVE_CASES = [
    # (spatial, output_size)
    ((12,), (4,)),  # equal windows
    ((7,), (3,)),  # n not a multiple of o: unequal, overlapping windows
    ((3,), (5,)),  # o > n: cells repeat
    ((6, 9), (2, 3)),  # equal windows, 2-D
    ((7, 5), (3, 4)),
    ((13, 13), (6, 6)),  # AlexNet's features at 256x256 input
    ((2, 3), (7, 7)),  # VGG's features at 64x96 input: o > n
    ((5, 6), (5, 6)),  # o == n: the identity
    ((4, 5, 6), (3, 2, 4)),  # 3-D
    ((3, 4, 2), (5, 4, 1)),  # 3-D mixed: o > n, o == n, o < n
]


def _adaptive(kind, output_size):
    return L.AdaptiveMaxPool(output_size) if kind == "max" else L.AdaptiveAvgPool(output_size)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize(("spatial", "output_size"), ADAPTIVE_CASES)
def test_adaptive_pool_matches_window_loop(spatial, output_size, kind):
    rng = np.random.default_rng(math.prod(spatial) + sum(output_size))
    x = rng.standard_normal((*spatial, 3))
    layer = _adaptive(kind, output_size)
    with jax.enable_x64(True):
        out_shape, params, state = layer.init(None, x.shape)
        jitted = jax.jit(lambda v: layer.apply({}, {}, v)[0])
        y, eager = jitted(jnp.asarray(x)), layer.apply({}, {}, jnp.asarray(x))[0]
        abstract = jax.eval_shape(jitted, jnp.asarray(x))
        g = rng.standard_normal(out_shape)
        dx = jax.jit(jax.grad(lambda v: jnp.sum(layer.apply({}, {}, v)[0] * jnp.asarray(g))))(
            jnp.asarray(x)
        )
    want = np_adaptive_pool(x, output_size, kind)
    assert params == {} and state == {}
    assert out_shape == layer.output_shape(x.shape) == y.shape == abstract.shape == want.shape
    assert out_shape == (*output_size, 3) and y.dtype == jnp.float64
    assert _record(f"adaptive {kind}", y, want) < 1e-12
    np.testing.assert_allclose(np.asarray(eager), np.asarray(y), rtol=1e-13, atol=1e-13)
    assert np.isfinite(np.asarray(dx)).all()
    assert (
        _record(f"adaptive {kind} grad", dx, np_adaptive_pool_grad(x, g, output_size, kind)) < 1e-12
    )


def test_adaptive_max_pool_ties_route_to_the_first_maximum():
    """Integer data with many ties: each box's cotangent goes to its row-major first max."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 2, (7, 5, 2)).astype(np.float64)
    layer = L.AdaptiveMaxPool((3, 4))  # overlapping boxes along both dims
    with jax.enable_x64(True):
        g = rng.standard_normal((3, 4, 2))
        dx = jax.grad(lambda v: jnp.sum(layer.apply({}, {}, v)[0] * jnp.asarray(g)))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(dx), np_adaptive_pool_grad(x, g, (3, 4), "max"), 1e-12)


def test_adaptive_pools_batched_and_float32():
    x = np.random.default_rng(12).standard_normal((4, 9, 11, 3)).astype(np.float32)
    for kind in ("avg", "max"):
        layer = _adaptive(kind, (4, 3))
        ys = jax.jit(jax.vmap(lambda v, layer=layer: layer.apply({}, {}, v)[0]))(jnp.asarray(x))
        assert ys.shape == (4, 4, 3, 3) and ys.dtype == jnp.float32
        want = np.stack([np_adaptive_pool(v.astype(np.float64), (4, 3), kind) for v in x])
        np.testing.assert_allclose(np.asarray(ys), want, rtol=1e-5, atol=1e-6)


def test_adaptive_pool_facts_and_int_output_size():
    pool = L.AdaptiveAvgPool(7)  # an int means 2-D
    assert pool.hparams["output_size"] == (7, 7) and pool.kind == "AdaptiveAvgPool"
    assert pool == L.AdaptiveAvgPool((7, 7)) and pool != L.AdaptiveMaxPool((7, 7))
    assert not pool.pointwise and pool.window is None  # windows depend on the input
    assert repr(pool) == "AdaptiveAvgPool(output_size=(7, 7))"
    assert pool.output_shape((2, 2, 512)) == pool.output_shape((15, 33, 512)) == (7, 7, 512)
    assert L.AdaptiveMaxPool((3,)).output_shape((1, 4)) == (3, 4)


@pytest.mark.parametrize("make", [L.AdaptiveAvgPool, L.AdaptiveMaxPool])
def test_adaptive_pool_errors(make):
    kind = make(1).kind
    with pytest.raises(ShapeError, match=rf"{kind}: input shape \(10, 3\): expected rank 3 "):
        make(5).init(None, (10, 3))  # int: 2-D; a 1-D input needs output_size=(5,)
    with pytest.raises(ShapeError, match=r"ONE example, as output_size \(5,\) is 1-D.*got rank 3"):
        make((5,)).apply({}, {}, jnp.ones((2, 10, 3)) * 0.5)
    with pytest.raises(ShapeError, match=rf"{kind}: input shape \(0, 4, 2\).*>= 1"):
        make((2, 2)).output_shape((0, 4, 2))
    for bad in (0, (3, 0), (-1,)):
        with pytest.raises(ShapeError, match=f"{kind} output_size must be >= 1"):
            make(bad)
    for bad in ((2.5, 2), 7.0, "7"):
        with pytest.raises(ShapeError, match=f"{kind} output_size must be an int or a sequence"):
            make(bad)
    with pytest.raises(ShapeError, match="at least one spatial dim"):
        make(())


TORCH_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "torch_parity.npz"


def _torch_adaptive_cases() -> list[str]:
    with np.load(TORCH_FIXTURE) as data:
        return sorted({k.rsplit("/", 1)[0] for k in data.files if k.startswith("adaptive_")})


@pytest.mark.parametrize("case", _torch_adaptive_cases())
def test_adaptive_pool_matches_stored_torch_outputs(case):
    """``F.adaptive_{avg,max}_pool2d`` outputs stored by tests/fixtures/make_torch_fixtures.py."""
    with np.load(TORCH_FIXTURE) as data:
        x, y, size = (data[f"{case}/{f}"] for f in ("x", "y", "output_size"))
    x, y = np.moveaxis(x, 1, -1), np.moveaxis(y, 1, -1)  # NCHW -> NHWC
    size = tuple(int(v) for v in size)
    layer = _adaptive("max" if case.startswith("adaptive_max") else "avg", size)
    ys = jax.vmap(lambda v: layer.apply({}, {}, v)[0])(jnp.asarray(x, jnp.float32))
    assert ys.shape == y.shape
    assert _record("adaptive vs torch", ys, y) < 1e-5
