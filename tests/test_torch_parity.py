"""Parity of jcnn layers with PyTorch, against stored reference outputs.

The references live in ``tests/fixtures/torch_parity.npz`` and were produced by
``tests/fixtures/make_torch_fixtures.py`` (the only place that needs torch; see
that script for the entry naming). This module never imports torch.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn import porting

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "torch_parity.npz"
TOL = 1e-5

with np.load(FIXTURE, allow_pickle=False) as _f:
    DATA: dict[str, np.ndarray] = {k: _f[k] for k in _f.files}


def case_ids(op: str) -> list[str]:
    """Case prefixes ``op/i`` stored in the fixture, in numeric order."""
    idx = sorted({int(k.split("/")[1]) for k in DATA if k.split("/")[0] == op})
    return [f"{op}/{i}" for i in idx]


def get(case: str, field: str) -> np.ndarray:
    return DATA[f"{case}/{field}"]


def has(case: str, field: str) -> bool:
    return f"{case}/{field}" in DATA


def ints(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(a).reshape(-1))


def assert_close(actual, expected, tol: float = TOL) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err < tol, f"max abs err {err:.3g} >= {tol:g}"


@pytest.fixture(autouse=True)
def _full_f32_precision():
    # Guard against TF32/bf16 passes on accelerators; a no-op on CPU.
    with jax.default_matmul_precision("float32"):
        yield


def run_layer(
    layer, x_nhwc, overrides: dict | None = None, *, params=None, state=None, train: bool = False
):
    """init on one example, swap in ported weights, apply batched; returns (ys, new_state)."""
    x_nhwc = jnp.asarray(x_nhwc)
    out_shape, p0, s0 = layer.init(jax.random.key(0), tuple(x_nhwc.shape[1:]))
    if params is None:
        params = dict(p0)
        for name, value in (overrides or {}).items():
            assert name in p0, f"layer has no param {name!r}: {sorted(p0)}"
            assert tuple(p0[name].shape) == tuple(value.shape), (name, p0[name].shape, value.shape)
            params[name] = jnp.asarray(value)
    state = s0 if state is None else state
    ys, new_state = jcnn.batched(layer.apply)(params, state, x_nhwc, key=None, train=train)
    assert tuple(ys.shape[1:]) == tuple(out_shape), (ys.shape, out_shape)
    return ys, new_state


# ----------------------------------------------------------------------------- conv

CONV_CASES = case_ids("conv1d") + case_ids("conv2d") + case_ids("conv3d")


def conv_overrides(case: str) -> dict:
    out = {"kernel": porting.conv_kernel_from_torch(get(case, "weight"))}
    if int(get(case, "use_bias")):
        out["bias"] = get(case, "bias")
    return out


def conv_padding_forms(case: str) -> list:
    """The jcnn padding arguments that must reproduce this torch case (zero padding)."""
    pads = [tuple(int(v) for v in p) for p in get(case, "padding")]
    forms: list = [pads]
    if int(get(case, "padding_same")):
        forms.append("SAME")
    if len({p for pair in pads for p in pair}) == 1:
        forms.append(pads[0][0])
        if pads[0][0] == 0:
            forms.append("VALID")
    return forms


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv(case: str) -> None:
    w = get(case, "weight")
    x = porting.nchw_to_nhwc(get(case, "x"))
    y = porting.nchw_to_nhwc(get(case, "y"))
    kernel_size = tuple(w.shape[2:])
    mode = int(get(case, "padding_mode"))
    if mode:
        # torch padding_mode='reflect'/'circular'/'replicate': pad explicitly, then VALID.
        pads = [(0, 0), *(tuple(int(v) for v in p) for p in get(case, "padding")), (0, 0)]
        x = jnp.pad(jnp.asarray(x), pads, mode={1: "reflect", 2: "wrap", 3: "edge"}[mode])
        forms = ["VALID"]
    else:
        forms = conv_padding_forms(case)
    for padding in forms:
        layer = L.Conv(
            w.shape[0],
            kernel_size,
            stride=ints(get(case, "stride")),
            padding=padding,
            dilation=ints(get(case, "dilation")),
            groups=int(get(case, "groups")),
            use_bias=bool(int(get(case, "use_bias"))),
        )
        ys, _ = run_layer(layer, x, conv_overrides(case))
        assert_close(ys, y)


def test_conv_same_even_kernel_pads_high_side() -> None:
    # Recorded by the fixture script after checking torch against F.pad + VALID.
    assert get("conv2d/3", "padding").tolist() == [[1, 2], [1, 2]]  # k=4: extra on the high side
    assert get("conv2d/4", "padding").tolist() == [[0, 1], [2, 2]]  # k=(2,3), dilation (1,2)


def _xla_same_pads(n: int, k: int, s: int, d: int) -> tuple[int, int]:
    total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize(("stride", "dilation"), [((2, 2), (1, 1)), ((2, 3), (2, 1))])
def test_same_padding_formula_strided(stride, dilation) -> None:
    # jcnn SAME for stride > 1 (which torch's 'same' rejects) follows XLA.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    k = rng.standard_normal((4, 3, 3, 5)).astype(np.float32)
    pads = [_xla_same_pads(n, kk, s, d) for n, kk, s, d in zip((9, 8), (4, 3), stride, dilation)]
    outs = []
    for padding in ("SAME", pads):
        layer = L.Conv(5, (4, 3), stride=stride, padding=padding, dilation=dilation)
        ys, _ = run_layer(layer, x, {"kernel": k})
        outs.append(ys)
    assert_close(outs[0], outs[1])


# ------------------------------------------------------------------- conv transpose

CONVT_CASES = case_ids("conv_transpose1d") + case_ids("conv_transpose2d")


@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose(case: str) -> None:
    w = get(case, "weight")
    x = porting.nchw_to_nhwc(get(case, "x"))
    y = porting.nchw_to_nhwc(get(case, "y"))
    pad = ints(get(case, "padding"))
    overrides = {"kernel": porting.conv_transpose_kernel_from_torch(w)}
    if int(get(case, "use_bias")):
        overrides["bias"] = get(case, "bias")
    forms: list = [[(p, p) for p in pad]]
    if len(set(pad)) == 1:
        forms.append(pad[0])
    for padding in forms:
        layer = L.ConvTranspose(
            w.shape[1],
            tuple(w.shape[2:]),
            stride=ints(get(case, "stride")),
            padding=padding,
            output_padding=ints(get(case, "output_padding")),
            dilation=ints(get(case, "dilation")),
            use_bias=bool(int(get(case, "use_bias"))),
        )
        ys, _ = run_layer(layer, x, overrides)
        assert_close(ys, y)


# -------------------------------------------------------------------------- pooling


def ceil_mode_padding(case: str, y_nhwc: np.ndarray) -> list[tuple[int, int]]:
    """torch ceil_mode=True == extra high padding up to the last (partial) window."""
    pads = [tuple(int(v) for v in p) for p in get(case, "padding")]
    if not int(get(case, "ceil_mode")):
        return pads
    x_sp = get(case, "x").shape[2:]
    out = []
    for n, k, s, o, (lo, hi) in zip(
        x_sp, ints(get(case, "window")), ints(get(case, "stride")), y_nhwc.shape[1:-1], pads
    ):
        out.append((lo, hi + max((o - 1) * s + k - (n + lo + hi), 0)))
    return out


@pytest.mark.parametrize("case", case_ids("max_pool2d"))
def test_max_pool(case: str) -> None:
    x = porting.nchw_to_nhwc(get(case, "x"))
    y = porting.nchw_to_nhwc(get(case, "y"))
    layer = L.MaxPool(
        ints(get(case, "window")),
        stride=ints(get(case, "stride")),
        padding=ceil_mode_padding(case, y),
    )
    ys, _ = run_layer(layer, x)
    assert_close(ys, y)


@pytest.mark.parametrize("case", case_ids("avg_pool2d"))
def test_avg_pool(case: str) -> None:
    x = porting.nchw_to_nhwc(get(case, "x"))
    y = porting.nchw_to_nhwc(get(case, "y"))
    window = ints(get(case, "window"))
    divisor = int(get(case, "divisor_override"))
    if int(get(case, "ceil_mode")):
        # With padding=0 torch never counts the ceil overhang, whatever count_include_pad says.
        assert not any(ints(get(case, "padding")))
        count_include_pad = False
    else:
        count_include_pad = bool(int(get(case, "count_include_pad")))
    stride, padding = ints(get(case, "stride")), ceil_mode_padding(case, y)
    if divisor:
        # divisor_override=d: window sum / d.
        ys, _ = run_layer(L.SumPool(window, stride=stride, padding=padding), x)
        ys = ys / divisor
    else:
        layer = L.AvgPool(
            window, stride=stride, padding=padding, count_include_pad=count_include_pad
        )
        ys, _ = run_layer(layer, x)
    assert_close(ys, y)


@pytest.mark.parametrize("case", case_ids("adaptive_avg_pool2d") + case_ids("adaptive_max_pool2d"))
def test_adaptive_pool(case: str) -> None:
    x = porting.nchw_to_nhwc(get(case, "x"))
    y = porting.nchw_to_nhwc(get(case, "y"))
    out_size = ints(get(case, "output_size"))
    is_max = case.startswith("adaptive_max")
    if out_size == (1,) * len(out_size):
        # AdaptiveXxxPool(1) == global pooling; jcnn drops the 1x1 spatial dims.
        layer = L.GlobalMaxPool() if is_max else L.GlobalAvgPool()
        y = y.reshape(y.shape[0], y.shape[-1])
    else:
        # Output size dividing the input: a plain pool with window = stride = n // out.
        window = tuple(n // o for n, o in zip(x.shape[1:-1], out_size))
        assert all(n % o == 0 for n, o in zip(x.shape[1:-1], out_size))
        layer = L.MaxPool(window) if is_max else L.AvgPool(window)
    ys, _ = run_layer(layer, x)
    assert_close(ys, y)


# ---------------------------------------------------------------------------- dense


def test_linear() -> None:
    c = "linear/0"
    w = get(c, "weight")
    ys, _ = run_layer(
        L.Dense(w.shape[0]),
        get(c, "x"),
        {"kernel": porting.dense_kernel_from_torch(w), "bias": get(c, "bias")},
    )
    assert_close(ys, get(c, "y"))


def test_flatten_then_linear() -> None:
    c = "flatten_linear/0"
    x, w = get(c, "x"), get(c, "weight")
    kernel = porting.dense_kernel_after_flatten_from_torch(w, x.shape[1:])
    # Same recipe spelled out (docs/pytorch.md): permute the weight's input columns.
    cc, hh, ww = x.shape[1:]
    manual = w.reshape(-1, cc, hh, ww).transpose(0, 2, 3, 1).reshape(w.shape[0], -1).T
    np.testing.assert_array_equal(kernel, manual)
    x_flat, _ = run_layer(L.Flatten(), porting.nchw_to_nhwc(x))  # jcnn flattens (H, W, C)
    ys, _ = run_layer(L.Dense(w.shape[0]), x_flat, {"kernel": kernel, "bias": get(c, "bias")})
    assert_close(ys, get(c, "y"))


# ----------------------------------------------------------------------- batch norm

BN = "batch_norm2d/0"


def _bn_setup():
    params, state = porting.batchnorm_from_torch(
        get(BN, "weight"), get(BN, "bias"), get(BN, "running_mean"), get(BN, "running_var")
    )
    params = {k: jnp.asarray(v) for k, v in params.items()}
    state = {k: jnp.asarray(v) for k, v in state.items()}
    momentum = 1.0 - float(get(BN, "momentum"))  # torch 0.1 -> jcnn/Flax 0.9
    return params, state, momentum, float(get(BN, "eps"))


def test_batch_norm_train_step_and_eval() -> None:
    params, state, momentum, eps = _bn_setup()
    assert momentum == pytest.approx(0.9)
    layer = L.BatchNorm(momentum=momentum, eps=eps, unbiased_running_var=True)
    x = porting.nchw_to_nhwc(get(BN, "x"))
    ys, new_state = run_layer(layer, x, params=params, state=state, train=True)
    assert_close(ys, porting.nchw_to_nhwc(get(BN, "y_train")))
    assert_close(new_state["mean"], get(BN, "running_mean_after"))
    assert_close(new_state["var"], get(BN, "running_var_after"))
    ys, eval_state = run_layer(
        layer, porting.nchw_to_nhwc(get(BN, "x_eval")), params=params, state=new_state, train=False
    )
    assert_close(ys, porting.nchw_to_nhwc(get(BN, "y_eval")))
    assert_close(eval_state["mean"], new_state["mean"], tol=1e-12)
    assert_close(eval_state["var"], new_state["var"], tol=1e-12)


def test_batch_norm_biased_running_var_default() -> None:
    # jcnn's default (Flax) running var uses the biased batch variance.
    params, state, momentum, eps = _bn_setup()
    x = get(BN, "x")
    m = x.shape[0] * x.shape[2] * x.shape[3]
    rv0, rv1 = get(BN, "running_var").astype(np.float64), get(BN, "running_var_after")
    unbiased = (rv1 - momentum * rv0) / (1.0 - momentum)
    expected = momentum * rv0 + (1.0 - momentum) * unbiased * (m - 1) / m
    layer = L.BatchNorm(momentum=momentum, eps=eps)
    ys, new_state = run_layer(
        layer, porting.nchw_to_nhwc(x), params=params, state=state, train=True
    )
    assert_close(ys, porting.nchw_to_nhwc(get(BN, "y_train")))  # normalisation is biased
    assert_close(new_state["var"], expected)


# ------------------------------------------------- defaults that need no fixture


# torch's fan-in for a ConvTranspose weight (in, out, *k) is out * prod(k): the fan-OUT of
# jcnn's (*k, in, out) kernel, hence a fan_out variance scaling there (docs/pytorch.md).
TORCH_CONV_TRANSPOSE_KERNEL = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


@pytest.mark.parametrize(
    ("make_layer", "input_shape", "fan_in"),
    [
        (lambda ki, bi: L.Conv(64, (3, 3), kernel_init=ki, bias_init=bi), (8, 8, 16), 144),
        (lambda ki, bi: L.Conv(32, 3, groups=4, kernel_init=ki, bias_init=bi), (8, 8, 16), 36),
        (lambda ki, bi: L.Dense(256, kernel_init=ki, bias_init=bi), (100,), 100),
        (
            lambda ki, bi: L.ConvTranspose(
                64, (3, 3), kernel_init=TORCH_CONV_TRANSPOSE_KERNEL, bias_init=bi
            ),
            (8, 8, 4),
            576,
        ),
    ],
    ids=["conv", "conv_groups", "dense", "conv_transpose"],
)
def test_torch_default_initialisers(make_layer, input_shape, fan_in) -> None:
    # torch: kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias likewise.
    bound = fan_in**-0.5
    layer = make_layer(jcnn.initializers.torch_kernel(), jcnn.initializers.torch_bias())
    _, params, _ = layer.init(jax.random.key(0), input_shape)
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.95 * bound
    assert kernel.std() == pytest.approx(bound / math.sqrt(3.0), rel=0.05)
    assert np.abs(bias).max() <= bound
    assert np.abs(bias).max() > 0.5 * bound


def test_dropout_rate_is_torch_p() -> None:
    p = 0.25
    x = np.random.default_rng(4).uniform(1.0, 2.0, (8, 500)).astype(np.float32)
    layer = L.Dropout(p)
    _, params, state = layer.init(jax.random.key(0), x.shape[1:])
    apply = jcnn.batched(layer.apply)
    ys, _ = apply(params, state, jnp.asarray(x), key=jax.random.key(1), train=True)
    ys = np.asarray(ys)
    dropped = ys == 0
    assert dropped.mean() == pytest.approx(p, abs=0.02)  # p is the DROP probability
    np.testing.assert_allclose(ys[~dropped], x[~dropped] / (1 - p), rtol=1e-6)
    ys, _ = apply(params, state, jnp.asarray(x), key=None, train=False)
    np.testing.assert_array_equal(ys, x)


# ------------------------------------------------------------------- porting helpers


@pytest.mark.parametrize("spatial", [(), (7,), (5, 6), (3, 4, 5)])
def test_nchw_nhwc_round_trip(spatial) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, *spatial))
    y = porting.nchw_to_nhwc(x)
    assert y.shape == (2, *spatial, 3)
    for c in range(3):
        np.testing.assert_array_equal(y[..., c], x[:, c])
    np.testing.assert_array_equal(porting.nhwc_to_nchw(y), x)


@pytest.mark.parametrize("k", [(3,), (3, 2), (2, 3, 4)])
def test_kernel_layouts_round_trip(k) -> None:
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 4, *k))  # conv: (out, in/groups, *k)
    kj = porting.conv_kernel_from_torch(w)
    assert kj.shape == (*k, 4, 5)
    idx = tuple(v - 1 for v in k)
    assert kj[(*idx, 1, 2)] == w[(2, 1, *idx)]  # no spatial flip
    np.testing.assert_array_equal(porting.conv_kernel_to_torch(kj), w)

    wt = rng.standard_normal((4, 5, *k))  # conv transpose: (in, out, *k)
    kt = porting.conv_transpose_kernel_from_torch(wt)
    assert kt.shape == (*k, 4, 5)
    assert kt[(*idx, 1, 2)] == wt[(1, 2, *idx)]
    np.testing.assert_array_equal(porting.conv_transpose_kernel_to_torch(kt), wt)


def test_dense_and_batchnorm_helpers() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 7))
    np.testing.assert_array_equal(porting.dense_kernel_from_torch(w), w.T)
    a, b, c, d = (rng.standard_normal(4) for _ in range(4))
    params, state = porting.batchnorm_from_torch(a, b, c, d)
    assert set(params) == {"scale", "offset"} and set(state) == {"mean", "var"}
    np.testing.assert_array_equal(params["scale"], a)
    np.testing.assert_array_equal(params["offset"], b)
    np.testing.assert_array_equal(state["mean"], c)
    np.testing.assert_array_equal(state["var"], d)
    with pytest.raises(ValueError):
        porting.batchnorm_from_torch(a, b, c, d[:3])
    with pytest.raises(ValueError):
        porting.dense_kernel_after_flatten_from_torch(w, (2, 2, 2))


def test_fixture_is_plain_arrays() -> None:
    assert FIXTURE.stat().st_size < 300 * 1024
    for key, arr in DATA.items():
        assert arr.dtype.kind in "fi", key


# ------------------------------------------------------------ conv padding_mode (appended)

MODE_NAMES = {1: "reflect", 2: "circular", 3: "replicate"}  # the fixture's padding_mode codes
MODE_CASES = [c for c in CONV_CASES if int(get(c, "padding_mode"))]


def mode_padding_forms(case: str) -> list:
    """Every jcnn padding argument that means what torch padded in this case."""
    pads = [tuple(int(v) for v in p) for p in get(case, "padding")]
    forms: list = [pads]
    if int(get(case, "padding_same")):
        forms.append("SAME")
    if all(lo == hi for lo, hi in pads):
        forms.append([lo for lo, _ in pads])  # torch's per-dim ints
        if len(set(pads)) == 1:
            forms.append(pads[0][0])
    return forms


def test_padding_mode_cases_cover_every_mode_and_rank() -> None:
    covered = {(c.split("/")[0], MODE_NAMES[int(get(c, "padding_mode"))]) for c in MODE_CASES}
    assert covered == {(f"conv{nd}d", m) for nd in (1, 2, 3) for m in MODE_NAMES.values()}


@pytest.mark.parametrize("case", MODE_CASES)
def test_conv_padding_mode(case: str) -> None:
    # torch.nn.Conv*d(padding_mode=...) itself, against Conv(padding_mode=...): no manual pad.
    w = get(case, "weight")
    x = porting.nchw_to_nhwc(get(case, "x"))
    y = porting.nchw_to_nhwc(get(case, "y"))
    mode = MODE_NAMES[int(get(case, "padding_mode"))]
    for padding in mode_padding_forms(case):
        layer = L.Conv(
            w.shape[0],
            tuple(w.shape[2:]),
            stride=ints(get(case, "stride")),
            padding=padding,
            dilation=ints(get(case, "dilation")),
            groups=int(get(case, "groups")),
            use_bias=bool(int(get(case, "use_bias"))),
            padding_mode=mode,
        )
        assert (
            layer.hparams["padding_mode"] == mode
            and layer.window.padding == layer.hparams["padding"]
        )
        ys, _ = run_layer(layer, x, conv_overrides(case))
        assert_close(ys, y)
        # The zero-padded conv of the same weights differs (the border cells are not zeros).
        zeros = L.Conv(
            w.shape[0],
            tuple(w.shape[2:]),
            stride=ints(get(case, "stride")),
            padding=padding,
            dilation=ints(get(case, "dilation")),
            groups=int(get(case, "groups")),
            use_bias=bool(int(get(case, "use_bias"))),
        )
        yz, _ = run_layer(zeros, x, conv_overrides(case))
        assert float(np.max(np.abs(np.asarray(yz) - y))) > 1e-3
