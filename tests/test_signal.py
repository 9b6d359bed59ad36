"""jcnn.signal against scipy.signal and NumPy loops, and the course's worked examples
("5 Convolutional Neural Networks": moving average with padding/stride, dice, polynomials, LTI)."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jcnn import layers as L
from jcnn import signal
from jcnn.layers.shapes import ShapeError

MAX_ERR: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _print_max_errors():
    yield
    if MAX_ERR:
        print("\n[test_signal] max abs errors:", {k: f"{v:.1e}" for k, v in MAX_ERR.items()})


def _record(name: str, got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    MAX_ERR[name] = max(MAX_ERR.get(name, 0.0), err)
    return err


# ---------------------------------------------------------------------------------------------
# correlate / convolve vs scipy.signal
# ---------------------------------------------------------------------------------------------

SIZES = [((11,), (3,)), ((10,), (4,)), ((9, 8), (3, 3)), ((8, 9), (2, 4))]


@pytest.mark.parametrize("mode", ["full", "valid", "same"])
@pytest.mark.parametrize(("n", "k"), SIZES, ids=[f"{n}x{k}" for n, k in SIZES])
def test_correlate_and_convolve_match_scipy(n, k, mode):
    rng = np.random.default_rng(len(n) * 10 + k[0])
    x, h = rng.standard_normal(n), rng.standard_normal(k)
    corr = signal.correlate(x, h, mode)
    conv = signal.convolve(x, h, mode)
    assert corr.dtype == jnp.float64
    want_corr = scipy.signal.correlate(x, h, mode=mode, method="direct")
    want_conv = scipy.signal.convolve(x, h, mode=mode, method="direct")
    assert _record(f"correlate {len(n)}-D", corr, want_corr) < 1e-10
    assert _record(f"convolve {len(n)}-D", conv, want_conv) < 1e-10


def test_correlate_is_what_conv_layers_compute():
    rng = np.random.default_rng(1)
    x, h = rng.standard_normal((9, 8)), rng.standard_normal((3, 3))
    y, _ = L.Conv(1, (3, 3), use_bias=False).apply(
        {"kernel": jnp.asarray(h)[:, :, None, None]}, {}, jnp.asarray(x)[:, :, None]
    )
    assert _record("Conv == correlate", y[:, :, 0], signal.correlate(x, h, "valid")) < 1e-12


def test_convolve_is_commutative_in_full_mode():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(7), rng.standard_normal(4)
    assert _record("convolve commutes", signal.convolve(a, b), signal.convolve(b, a)) < 1e-12


def test_signal_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        signal.correlate(np.ones(5) * 0.5, np.ones(3) * 0.5, "circular")
    with pytest.raises(ValueError, match="must both be 1-D or both 2-D"):
        signal.correlate(np.ones((5, 5)) * 0.5, np.ones(3) * 0.5)
    with pytest.raises(ShapeError, match="larger than input"):
        signal.convolve(np.ones(3) * 0.5, np.ones(5) * 0.5, "valid")
    with pytest.raises(ValueError, match="kernel must be 1-D"):
        signal.conv_matrix(np.ones((2, 2)), 5)


# ---------------------------------------------------------------------------------------------
# conv_matrix vs a NumPy loop
# ---------------------------------------------------------------------------------------------


def np_conv1d(x, h, stride, pads, dilation, flip):
    """y[i] = sum_a xpad[i*stride + a*dilation] * h[a] (h reversed for true convolution)."""
    h = h[::-1] if flip else h
    lo, hi = pads
    xp = np.concatenate([np.zeros(lo), x, np.zeros(hi)])
    span = dilation * (len(h) - 1) + 1
    out = (len(xp) - span) // stride + 1
    return np.array(
        [sum(xp[i * stride + a * dilation] * h[a] for a in range(len(h))) for i in range(out)]
    )


def _pads(padding, n, k, stride, dilation):
    span = dilation * (k - 1) + 1
    if padding == "VALID":
        return 0, 0
    if padding == "FULL":
        return span - 1, span - 1
    if padding == "SAME":
        total = max((-(-n // stride) - 1) * stride + span - n, 0)
        return total // 2, total - total // 2
    return (padding, padding) if isinstance(padding, int) else tuple(padding)


MATRIX_CASES = [
    # (n, k, stride, padding, dilation, flip)
    (9, 3, 1, 0, 1, False),
    (9, 3, 1, 2, 1, True),
    (10, 4, 2, 1, 1, False),
    (12, 3, 3, (2, 0), 2, False),
    (11, 2, 2, "SAME", 1, True),
    (8, 3, 1, "SAME", 2, False),
    (7, 4, 1, "FULL", 1, True),
    (9, 5, 2, "VALID", 1, True),
    (13, 3, 4, (0, 3), 3, True),
]


@pytest.mark.parametrize(("n", "k", "stride", "padding", "dilation", "flip"), MATRIX_CASES)
def test_conv_matrix_matches_loop(n, k, stride, padding, dilation, flip):
    rng = np.random.default_rng(n * 7 + k)
    x, h = rng.standard_normal(n), rng.standard_normal(k)
    t = signal.conv_matrix(h, n, stride=stride, padding=padding, dilation=dilation, flip=flip)
    want = np_conv1d(x, h, stride, _pads(padding, n, k, stride, dilation), dilation, flip)
    assert t.shape == (len(want), n)
    assert _record("conv_matrix @ x", t @ x, want) < 1e-12


def test_conv_matrix_is_toeplitz():
    h = np.random.default_rng(3).standard_normal(3)
    t = signal.conv_matrix(h, 6, padding="FULL", flip=True)
    assert t.shape == (8, 6)
    for d in range(-t.shape[0] + 1, t.shape[1]):
        diag = np.diagonal(t, d)
        np.testing.assert_array_equal(diag, np.full_like(diag, diag[0]))
    np.testing.assert_array_equal(t[:3, 0], h)  # first column: x_0, x_1, x_2 (course's T(x))


# ---------------------------------------------------------------------------------------------
# The course's worked examples
# ---------------------------------------------------------------------------------------------

X_COURSE = np.array([1, 2, 3, 1, 2, 3, 1, 2, 3], float)
H_COURSE = np.array([1, 1, 1], float) / 3


@pytest.mark.parametrize(
    ("padding", "stride", "want"),
    [
        (2, 1, [1 / 3, 1, 2, 2, 2, 2, 2, 2, 2, 5 / 3, 1]),  # 11 = (9 + 4 - 3)/1 + 1
        (0, 1, [2, 2, 2, 2, 2, 2, 2]),  # 7 = (9 - 3)/1 + 1
        (1, 2, [1, 2, 2, 2, 5 / 3]),  # 5 = (9 + 2 - 3)/2 + 1
    ],
)
def test_course_moving_average(padding, stride, want):
    t = signal.conv_matrix(H_COURSE, 9, stride=stride, padding=padding)
    assert t.shape == (len(want), 9)
    assert _record("course moving average", t @ X_COURSE, want) < 1e-12
    # The same numbers through a Conv layer with the kernel 1/3 [1 1 1].
    layer = L.Conv(1, (3,), stride=stride, padding=padding, use_bias=False)
    y, _ = layer.apply({"kernel": jnp.asarray(H_COURSE)[:, None, None]}, {}, X_COURSE[:, None])
    assert _record("course moving average", y[:, 0], want) < 1e-12


def test_course_moving_average_full_mode_is_padding_2():
    want = [1 / 3, 1, 2, 2, 2, 2, 2, 2, 2, 5 / 3, 1]
    assert _record("course moving average", signal.convolve(X_COURSE, H_COURSE), want) < 1e-12
    assert (
        _record("course moving average", signal.correlate(X_COURSE, H_COURSE, "full"), want) < 1e-12
    )


def test_course_dice_distribution():
    """X in {1, 2, 3} with probabilities 1/4, 1/2, 1/4; Y a fair die; Z = X + Y on {2..9}.

    The course works out p_Z(2) = 1/24, p_Z(4) = 1/6 and p_Z(9) = 1/24.
    """
    p_x = np.array([0, 1 / 4, 1 / 2, 1 / 4])  # index = value
    p_y = np.array([0] + [1 / 6] * 6)
    p_z = np.asarray(signal.convolve(p_x, p_y, "full"))  # index = value of X + Y
    assert p_z.shape == (10,)
    np.testing.assert_allclose(p_z[2], 1 / 24, rtol=1e-12)
    np.testing.assert_allclose(p_z[4], 1 / 6, rtol=1e-12)
    np.testing.assert_allclose(p_z[9], 1 / 24, rtol=1e-12)
    np.testing.assert_allclose(p_z[:2], 0.0, atol=1e-15)
    np.testing.assert_allclose(p_z.sum(), 1.0, rtol=1e-12)
    # The whole pmf (the course's exercise), by exact enumeration.
    exact = [Fraction(0)] * 10
    for x, px in [(1, Fraction(1, 4)), (2, Fraction(1, 2)), (3, Fraction(1, 4))]:
        for y in range(1, 7):
            exact[x + y] += px * Fraction(1, 6)
    assert (
        exact[2] == Fraction(1, 24) and exact[4] == Fraction(1, 6) and exact[9] == Fraction(1, 24)
    )
    assert _record("dice pmf", p_z, [float(f) for f in exact]) < 1e-15


def test_polynomial_product():
    """Course: x(t) of degree 2 times y(t) of degree 5 is z(t) of degree 7, z = T(x) y = T(y) x."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(3), rng.standard_normal(6)
    z = np.polymul(x, y)  # coefficient order does not matter for a convolution
    assert z.shape == (8,)
    t_x = signal.conv_matrix(x, 6, padding="FULL", flip=True)
    t_y = signal.conv_matrix(y, 3, padding="FULL", flip=True)
    assert t_x.shape == (8, 6) and t_y.shape == (8, 3)
    assert _record("polynomial product", t_x @ y, z) < 1e-12
    assert _record("polynomial product", t_y @ x, z) < 1e-12
    assert _record("polynomial product", signal.convolve(x, y), z) < 1e-12
    # The course's listed coefficients: z_2 = x0 y2 + x1 y1 + x2 y0, z_7 = x2 y5.
    zc = np.asarray(signal.convolve(x, y))
    np.testing.assert_allclose(zc[2], x[0] * y[2] + x[1] * y[1] + x[2] * y[0], rtol=1e-12)
    np.testing.assert_allclose(zc[7], x[2] * y[5], rtol=1e-12)


def test_lti_impulse_response():
    rng = np.random.default_rng(5)
    h = rng.standard_normal(5)
    delta = np.zeros(7)
    delta[0] = 1.0
    out = np.asarray(signal.convolve(delta, h))
    assert _record("delta * h", out[:5], h) < 1e-15
    np.testing.assert_array_equal(out[5:], 0.0)
    shifted = np.zeros(7)
    shifted[3] = 1.0  # time invariance: a shifted impulse gives the shifted response
    out = np.asarray(signal.convolve(shifted, h))
    assert _record("delta * h", out[3:8], h) < 1e-15
    # Linearity: O(a x1 + b x2) = a O(x1) + b O(x2).
    x1, x2 = rng.standard_normal(8), rng.standard_normal(8)
    lhs = signal.convolve(2.0 * x1 - 3.0 * x2, h)
    rhs = 2.0 * np.asarray(signal.convolve(x1, h)) - 3.0 * np.asarray(signal.convolve(x2, h))
    assert _record("LTI linearity", lhs, rhs) < 1e-12


# ---------------------------------------------------------------------------------------------
# Composing two linear convolutions
# ---------------------------------------------------------------------------------------------


def _two_convs(window1, window2, c_in, c_mid, c_out, bias, seed):
    rng = np.random.default_rng(seed)
    p1 = {"kernel": rng.standard_normal((*window1, c_in, c_mid))}
    p2 = {"kernel": rng.standard_normal((*window2, c_mid, c_out))}
    if bias:
        p1["bias"], p2["bias"] = rng.standard_normal(c_mid), rng.standard_normal(c_out)
    conv1 = L.Conv(c_mid, window1, use_bias=bias)
    conv2 = L.Conv(c_out, window2, use_bias=bias)
    return conv1, conv2, p1, p2


@pytest.mark.parametrize(
    ("spatial", "window1", "window2"),
    [((12,), (3,), (4,)), ((9, 8), (3, 2), (2, 3)), ((6, 5, 7), (2, 2, 3), (3, 2, 2))],
)
def test_compose_kernels_equals_two_stacked_convs(spatial, window1, window2):
    conv1, conv2, p1, p2 = _two_convs(window1, window2, 2, 3, 4, False, len(spatial))
    window = tuple(a + b - 1 for a, b in zip(window1, window2))
    conv = L.Conv(4, window, use_bias=False)

    @jax.jit
    def both(x, p1, p2):
        stacked, _ = conv2.apply(p2, {}, conv1.apply(p1, {}, x)[0])
        k = signal.compose_kernels(p1["kernel"], p2["kernel"])
        return stacked, conv.apply({"kernel": k}, {}, x)[0], k

    x = jnp.asarray(np.random.default_rng(9).standard_normal((*spatial, 2)))
    stacked, single, k = both(x, p1, p2)
    assert k.shape == (*window, 2, 4)
    assert _record("compose_kernels", single, stacked) < 1e-10


@pytest.mark.parametrize("spatial", [(12,), (9, 8)])
def test_compose_conv_with_biases(spatial):
    w = (3,) * len(spatial)
    conv1, conv2, p1, p2 = _two_convs(w, w, 3, 2, 5, True, 7)
    conv = L.Conv(5, (5,) * len(spatial))

    @jax.jit
    def both(x, p1, p2):
        stacked, _ = conv2.apply(p2, {}, conv1.apply(p1, {}, x)[0])
        p = signal.compose_conv(p1, p2)
        return stacked, conv.apply(p, {}, x)[0], p

    x = jnp.asarray(np.random.default_rng(10).standard_normal((*spatial, 3)))
    stacked, single, p = both(x, p1, p2)
    assert p["kernel"].shape == (*(5,) * len(spatial), 3, 5) and p["bias"].shape == (5,)
    assert _record("compose_conv", single, stacked) < 1e-10


def test_relu_between_convs_breaks_composition():
    conv1, conv2, p1, p2 = _two_convs((3, 3), (3, 3), 2, 3, 4, True, 11)
    conv = L.Conv(4, (5, 5))

    @jax.jit
    def both(x, p1, p2):
        h, _ = conv1.apply(p1, {}, x)
        y_relu, _ = conv2.apply(p2, {}, jax.nn.relu(h))
        return h, y_relu, conv.apply(signal.compose_conv(p1, p2), {}, x)[0]

    x = jnp.asarray(np.random.default_rng(12).standard_normal((9, 9, 2)))
    h, y_relu, y_linear = both(x, p1, p2)
    assert 0.2 < float(jnp.mean(h < 0)) < 0.8  # the ReLU really cuts
    assert float(jnp.max(jnp.abs(y_relu - y_linear))) > 1.0


def test_compose_kernels_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="compose_kernels"):
        signal.compose_kernels(np.ones((3, 3, 2, 4)) * 0.5, np.ones((3, 3, 3, 1)) * 0.5)
    with pytest.raises(ValueError, match="compose_kernels"):
        signal.compose_kernels(np.ones((3, 2, 4)) * 0.5, np.ones((3, 3, 4, 1)) * 0.5)
