"""Output-size arithmetic: hand-worked cases, lax's own padding rules, and what XLA computes."""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax import lax

from jcnn import shapes
from jcnn.layers.shapes import ShapeError

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# ------------------------------------------------------------------ conv_output_size by hand


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # the course's LeNet-style walk through MNIST
        ((28, 3), 26),
        ((26, 2, 2), 13),
        ((28, 5), 24),
        ((24, 2, 2), 12),
        ((12, 3), 10),
        ((10, 2, 2), 5),
        # the course's 1-D example: length 9, kernel 3
        ((9, 3, 1, 2), 11),
        ((9, 3, 1, 0), 7),
        ((9, 3, 2, 1), 5),
        ((32, 2, 2), 16),
        # more, worked out from floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1
        ((7, 3, 2, (1, 0)), 3),  # (7+1-2-1)/2 = 2.5 -> 2, +1
        ((7, 3, 1, "FULL", 2), 11),  # p = 2*(3-1) = 4 each side: 7+8-4-1 = 10, +1
        ((5, 1), 5),
        ((5, 5), 1),
        ((10, 3, 3, "SAME"), 4),  # ceil(10/3)
        ((10, 4, 2, "SAME", 2), 5),  # ceil(10/2)
        ((8, 3, 1, (-1, -1)), 4),  # cropping: 8-2-2-1 = 3, +1
        ((6, 2, 1, 0, 5), 1),  # dilated extent 6 == n
    ],
)
def test_conv_output_size_hand_worked(args, expected) -> None:
    assert shapes.conv_output_size(*args) == expected


def test_same_padding_matches_lax() -> None:
    for n, k, s, d in itertools.product([1, 2, 7, 10, 16], [1, 2, 3, 4], [1, 2, 3], [1, 2]):
        kd = d * (k - 1) + 1
        (expected,) = lax.padtype_to_pads((n,), (kd,), (s,), "SAME")
        assert shapes.same_padding(n, k, s, d) == tuple(expected), (n, k, s, d)
        assert shapes.resolve_padding("SAME", (n,), (k,), (s,), (d,)) == (tuple(expected),)
        assert shapes.conv_output_size(n, k, s, "SAME", d) == -(-n // s)


def test_same_padding_random_against_lax(rng) -> None:
    for _ in range(200):
        n, k, s, d = (int(v) for v in rng.integers(1, [40, 8, 6, 4], endpoint=True))
        (expected,) = lax.padtype_to_pads((n,), (d * (k - 1) + 1,), (s,), "SAME")
        assert shapes.same_padding(n, k, s, d) == tuple(expected), (n, k, s, d)


@pytest.mark.parametrize(("k", "d"), [(1, 1), (3, 1), (4, 1), (3, 2), (5, 3)])
def test_full_padding_is_dilated_kernel_minus_one(k, d) -> None:
    assert shapes.resolve_padding("FULL", (9, 9), (k, 2), (1, 1), (d, 1)) == (
        (d * (k - 1),) * 2,
        (1, 1),
    )
    # FULL gives every partial overlap: n + d*(k-1) outputs at stride 1
    assert shapes.conv_output_size(9, k, 1, "FULL", d) == 9 + d * (k - 1)


# ----------------------------------------------------------------------- resolve_padding


@pytest.mark.parametrize(
    ("padding", "expected"),
    [
        ("VALID", ((0, 0), (0, 0))),
        ("valid", ((0, 0), (0, 0))),
        ("same", ((1, 1), (0, 1))),  # spatial (5, 6), kernel (3, 2)
        ("FULL", ((2, 2), (1, 1))),
        (2, ((2, 2), (2, 2))),
        (0, ((0, 0), (0, 0))),
        (-1, ((-1, -1), (-1, -1))),
        ([1, 2], ((1, 1), (2, 2))),
        (((1, 2), (0, 3)), ((1, 2), (0, 3))),
        ([[1, 2], [0, 3]], ((1, 2), (0, 3))),
        ((1, (0, 3)), ((1, 1), (0, 3))),
        (((-1, 2), 0), ((-1, 2), (0, 0))),
    ],
)
def test_resolve_padding_accepted_forms(padding, expected) -> None:
    assert shapes.resolve_padding(padding, (5, 6), (3, 2), (1, 1), (1, 1)) == expected


@pytest.mark.parametrize(
    "padding",
    [
        "HALF",
        "",
        1.5,
        None,
        True,
        [1],
        [1, 2, 3],
        [(1, 2, 3), 0],
        [(1.0, 2), 0],
        [(1,), 0],
        ["a", 0],
    ],
)
def test_resolve_padding_malformed_lists_accepted_forms(padding) -> None:
    with pytest.raises(ShapeError) as err:
        shapes.resolve_padding(padding, (5, 6), (3, 2), (1, 1), (1, 1))
    message = str(err.value)
    assert "accepted" in message
    for form in ('"VALID"', '"SAME"', '"FULL"', "an int", "(lo, hi)"):
        assert form in message, (form, message)


# ------------------------------------------------------- conv_output_size vs XLA (property)

PADDINGS = st.one_of(
    st.sampled_from(["VALID", "SAME", "FULL"]),
    st.integers(-2, 3),
    st.tuples(st.integers(-2, 3), st.integers(-2, 3)),
)


def _independent_pads(padding, n, k, s, d) -> tuple[int, int]:
    """(lo, hi) worked out without jcnn: lax for SAME, the definitions for the rest."""
    if padding == "VALID":
        return 0, 0
    if padding == "SAME":
        return tuple(lax.padtype_to_pads((n,), (d * (k - 1) + 1,), (s,), "SAME")[0])
    if padding == "FULL":
        return d * (k - 1), d * (k - 1)
    if isinstance(padding, int):
        return padding, padding
    return padding


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _lax_conv_1d(x, w, s, pads, d):
    # jit with static geometry compiles faster than an eager conv_general_dilated per shape
    return lax.conv_general_dilated(
        x, w, (s,), pads, rhs_dilation=(d,), dimension_numbers=("NWC", "WIO", "NWC")
    )


@SETTINGS
@given(
    n=st.integers(1, 12),
    k=st.integers(1, 5),
    s=st.integers(1, 3),
    d=st.integers(1, 3),
    padding=PADDINGS,
)
def test_conv_output_size_equals_xla(n, k, s, d, padding) -> None:
    lo, hi = _independent_pads(padding, n, k, s, d)
    span = n + lo + hi - d * (k - 1) - 1
    if span >= 0:
        y = _lax_conv_1d(jnp.ones((1, n, 1)), jnp.ones((k, 1, 1)), s, ((lo, hi),), d)
        assert shapes.conv_output_size(n, k, s, padding, d) == y.shape[1]
        assert shapes.conv_output_shape((n,), (k,), (s,), ((lo, hi),), (d,)) == (y.shape[1],)
    else:
        with pytest.raises(ShapeError) as err:
            shapes.conv_output_size(n, k, s, padding, d)
        message = str(err.value)
        assert shapes.FORMULA in message
        assert f"floor(({n} + {lo} + {hi} - {d}*({k}-1) - 1) / {s}) + 1" in message
        with pytest.raises(ShapeError, match="spatial dim 0"):
            shapes.conv_output_shape((n,), (k,), (s,), ((lo, hi),), (d,))


def test_conv_output_shape_names_failing_dim() -> None:
    with pytest.raises(ShapeError, match=r"spatial dim 1: window does not fit"):
        shapes.conv_output_shape((8, 2), (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 0}, "stride must be >= 1"),
        ({"stride": -1}, "stride must be >= 1"),
        ({"dilation": 0}, "dilation must be >= 1"),
        ({"dilation": -2}, "dilation must be >= 1"),
        ({"kernel": 0}, "kernel size must be >= 1"),
    ],
)
def test_conv_output_size_rejects_nonpositive(kwargs, match) -> None:
    args = {"n": 8, "kernel": 3, "stride": 1, "dilation": 1} | kwargs
    with pytest.raises(ShapeError, match=match):
        shapes.conv_output_size(**args)


def test_as_tuple_and_check_positive() -> None:
    assert shapes.as_tuple(3, 2) == (3, 3)
    assert shapes.as_tuple((1, 2, 3), 3) == (1, 2, 3)
    for bad in [(1, 2), (1.0, 2.0, 3.0), True, "abc", None]:
        with pytest.raises(ShapeError, match="stride must be an int or a sequence of 3 ints"):
            shapes.as_tuple(bad, 3, "stride")
    shapes.check_positive((1, 2), "window")
    with pytest.raises(ShapeError, match=r"window must be >= 1 in every dimension, got \(1, 0\)"):
        shapes.check_positive((1, 0), "window")
    assert shapes.dilated_size(3, 2) == 5
    assert shapes.flat_size((5, 5, 3)) == 75


# ------------------------------------------------------------------- transposed convolution


def _lax_transpose_size(n, k, s, d, padding) -> int:
    x = jax.ShapeDtypeStruct((1, n, 1), jnp.float32)
    w = jax.ShapeDtypeStruct((k, 1, 1), jnp.float32)
    y = jax.eval_shape(
        lambda a, b: lax.conv_transpose(
            a, b, (s,), padding, rhs_dilation=(d,), dimension_numbers=("NWC", "WIO", "NWC")
        ),
        x,
        w,
    )
    return y.shape[1]


@pytest.mark.parametrize("padding", ["SAME", "VALID", "same"])
def test_conv_transpose_sizes_match_lax(padding) -> None:
    for n, k, s, d in itertools.product([1, 4, 7], [1, 2, 3, 5], [1, 2, 3], [1, 2]):
        pads = shapes.conv_transpose_padding(padding, (k,), (s,), (d,), (0,))
        out = shapes.conv_transpose_output_shape((n,), (k,), (s,), pads, (d,))
        assert out == (_lax_transpose_size(n, k, s, d, padding.upper()),), (n, k, s, d)
        kd = d * (k - 1) + 1
        expected = n * s if padding.upper() == "SAME" else n * s + max(kd - s, 0)
        assert out == (expected,), (n, k, s, d)


@pytest.mark.parametrize("p", [0, 1, -1, (0, 2), (2, 1)])
def test_conv_transpose_torch_formula(p) -> None:
    lo, hi = (p, p) if isinstance(p, int) else p
    for n, k, s, d in itertools.product([1, 3, 6], [1, 2, 3, 4], [1, 2, 3], [1, 2]):
        for op in range(max(s, d)):
            out = (n - 1) * s - lo - hi + d * (k - 1) + op + 1
            pads = shapes.conv_transpose_padding([p], (k,), (s,), (d,), (op,))
            assert pads == ((d * (k - 1) - lo, d * (k - 1) - hi + op),)
            shape = (n,), (k,), (s,), pads, (d,)
            if out >= 1:
                assert shapes.conv_transpose_output_shape(*shape) == (out,), (n, k, s, d, op)
            else:
                with pytest.raises(ShapeError, match="window does not fit"):
                    shapes.conv_transpose_output_shape(*shape)


def test_conv_transpose_padding_int_applies_to_every_dim() -> None:
    pads = shapes.conv_transpose_padding(1, (3, 4), (2, 2), (1, 1), (1, 0))
    assert pads == ((1, 2), (2, 2))
    # torch: ConvTranspose2d(k=(3, 4), s=2, p=1, op=(1, 0)) on 5x5 -> (10, 10)
    assert shapes.conv_transpose_output_shape((5, 5), (3, 4), (2, 2), pads, (1, 1)) == (10, 10)


@pytest.mark.parametrize(
    ("padding", "stride", "dilation", "output_padding", "match"),
    [
        (0, 2, 1, 2, "output_padding"),  # op must be < max(s, d) = 2
        (0, 1, 1, 1, "output_padding"),
        (0, 2, 3, 3, "output_padding"),
        (0, 2, 1, -1, "output_padding"),
        ("SAME", 2, 1, 1, "output_padding only goes with torch-style"),
        ("VALID", 2, 1, 1, "output_padding only goes with torch-style"),
        ("FULL", 1, 1, 0, "accepted are 'SAME', 'VALID'"),
        ("CAUSAL", 1, 1, 0, "accepted are 'SAME', 'VALID'"),
        ([(1, 2, 3)], 1, 1, 0, "accepted"),
    ],
)
def test_conv_transpose_padding_errors(padding, stride, dilation, output_padding, match) -> None:
    with pytest.raises(ShapeError, match=match):
        shapes.conv_transpose_padding(padding, (3,), (stride,), (dilation,), (output_padding,))


def test_conv_transpose_padding_largest_output_padding_is_accepted() -> None:
    assert shapes.conv_transpose_padding(0, (3,), (2,), (3,), (2,)) == ((6, 8),)
    assert np.all(np.array(shapes.conv_transpose_padding(0, (3,), (3,), (1,), (2,))) >= 0)


# ------------------------------------------------------------------ padded sizes, adaptive windows


def test_padded_shape() -> None:
    assert shapes.padded_shape((28, 9), ((2, 2), (1, 0))) == (32, 10)
    assert shapes.padded_shape((8,), ((-1, -2),)) == (5,)  # negative pads crop
    # What lax.pad produces.
    x = jnp.zeros((5, 7))
    assert lax.pad(x, 0.0, [(1, 2, 0), (-1, 3, 0)]).shape == shapes.padded_shape(
        x.shape, ((1, 2), (-1, 3))
    )


@pytest.mark.parametrize(
    ("n", "o", "expected"),
    [
        (6, 3, ((0, 2), (2, 4), (4, 6))),  # equal windows
        (5, 3, ((0, 2), (1, 4), (3, 5))),  # unequal, overlapping: [0, 5/3), [5/3, 10/3), ...
        (7, 7, tuple((i, i + 1) for i in range(7))),  # identity
        (2, 3, ((0, 1), (0, 2), (1, 2))),  # o > n: cells repeat
        (1, 4, ((0, 1),) * 4),
        (10, 1, ((0, 10),)),  # global pooling
    ],
)
def test_adaptive_windows_hand_worked(n, o, expected) -> None:
    assert shapes.adaptive_windows(n, o) == expected


def test_adaptive_windows_match_pytorch_float_definition_and_cover_the_input() -> None:
    for n, o in itertools.product(range(1, 40), range(1, 20)):
        windows = shapes.adaptive_windows(n, o)
        want = tuple((math.floor(i * n / o), math.ceil((i + 1) * n / o)) for i in range(o))
        assert windows == want, (n, o)
        assert windows[0][0] == 0 and windows[-1][1] == n
        assert all(a < b for a, b in windows)  # never empty
        assert all(b0 >= a1 for (_, b0), (a1, _) in zip(windows, windows[1:]))  # no gap
        if n % o == 0:
            assert windows == tuple((i * (n // o), (i + 1) * (n // o)) for i in range(o))


@pytest.mark.parametrize(("n", "o"), [(0, 3), (5, 0), (-1, 2)])
def test_adaptive_windows_reject_empty_sizes(n, o) -> None:
    with pytest.raises(ShapeError, match=f"n={n}, o={o}"):
        shapes.adaptive_windows(n, o)
