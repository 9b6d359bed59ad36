"""ConvTranspose's ``groups`` (torch references) and ``padding_mode="circular"`` (Flax's
``nn.ConvTranspose(padding="CIRCULAR")`` and a NumPy scatter loop as references).

The torch references are in ``tests/fixtures/layer_parity.npz``, written once by
``tests/fixtures/make_layer_fixtures.py``; this module never imports torch.
"""

from __future__ import annotations

import itertools
import math
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn import porting
from jcnn.layers import shapes
from jcnn.tools import flops

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "layer_parity.npz"
TOL = 1e-5

with np.load(FIXTURE, allow_pickle=False) as _f:
    DATA = {k: _f[k] for k in _f.files}
CASES = sorted({int(k.split("/")[1]) for k in DATA if k.startswith("conv_transpose_groups/")})


def _get(i: int, field: str) -> np.ndarray:
    return DATA[f"conv_transpose_groups/{i}/{field}"]


def _ints(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(a).reshape(-1))


@pytest.mark.parametrize("i", CASES)
def test_grouped_conv_transpose_matches_torch(i: int) -> None:
    x, w, b, y = (_get(i, f) for f in ("x", "w", "b", "y"))
    groups = int(_get(i, "groups"))
    rank = x.ndim - 2
    layer = L.ConvTranspose(
        y.shape[1],
        w.shape[2:],
        stride=_ints(_get(i, "stride")),
        padding=_ints(_get(i, "padding")),
        output_padding=_ints(_get(i, "output_padding")),
        dilation=_ints(_get(i, "dilation")),
        groups=groups,
    )
    kernel = porting.conv_transpose_kernel_from_torch(w)
    x_last = np.moveaxis(x, 1, -1)
    out_shape, params, _ = layer.init(jax.random.key(0), x_last.shape[1:])
    assert params["kernel"].shape == kernel.shape == (*w.shape[2:], w.shape[0], w.shape[1])
    assert out_shape == np.moveaxis(y, 1, -1).shape[1:]
    params = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(b)}
    got, _ = jcnn.batched(layer.apply)(params, {}, jnp.asarray(x_last))
    np.testing.assert_allclose(np.moveaxis(np.asarray(got), -1, 1), y, atol=TOL, rtol=TOL)
    # a whole network ports from a torch state_dict the same way
    ported, _ = porting.from_torch(L.serial(layer), x_last.shape[1:], {"0.weight": w, "0.bias": b})
    np.testing.assert_array_equal(ported["ConvTranspose_0"]["kernel"], kernel)
    # the kernel converts back to torch's layout unchanged
    np.testing.assert_array_equal(porting.conv_transpose_kernel_to_torch(kernel), w)
    # multiply-adds: every input position through C_out // groups filters of C_in... per channel
    macs = flops.count_macs(layer, x_last.shape[1:])
    expected = math.prod(x.shape[2:]) * x.shape[1] * w.shape[1] * math.prod(w.shape[2:])
    assert macs == expected
    assert rank in (1, 2)


def _scatter(x, kernel, stride, crop, out_shape, dilation, groups, circular):
    """NumPy loop: every input cell times every kernel tap, added at ``i*s + j*d - p_lo`` (torch's
    transposed conv); circular wraps that index mod the output size, zeros drops it."""
    *spatial, c_in = x.shape
    window = kernel.shape[:-2]
    c_out_g = kernel.shape[-1]
    cg = c_in // groups
    y = np.zeros((*out_shape, groups * c_out_g))
    for pos in itertools.product(*(range(n) for n in spatial)):
        for tap in itertools.product(*(range(k) for k in window)):
            idx = []
            for p, t, s, d, (lo, _), o in zip(pos, tap, stride, dilation, crop, out_shape):
                q = p * s + t * d - lo
                idx.append(q % o if circular else q)
            if not circular and not all(0 <= q < o for q, o in zip(idx, out_shape)):
                continue
            for g in range(groups):
                xs = x[(*pos, slice(g * cg, (g + 1) * cg))].astype(np.float64)
                ks = kernel[(*tap, slice(g * cg, (g + 1) * cg))].astype(np.float64)
                y[(*idx, slice(g * c_out_g, (g + 1) * c_out_g))] += xs @ ks
    return y


LOOP_CASES = [
    # spatial, C_in, C_out, k, groups, stride, padding, output_padding, dilation
    ((6,), 4, 6, (3,), 2, (2,), [(1, 1)], (1,), (1,)),
    ((5,), 4, 4, (4,), 4, (1,), [(2, 3)], (0,), (2,)),
    ((7,), 2, 2, (5,), 1, (3,), [(6, 0)], (2,), (1,)),
    ((4, 5), 4, 8, (3, 2), 2, (2, 1), [(1, 2), (0, 1)], (1, 0), (1, 2)),
    ((3, 4), 2, 2, (4, 3), 1, (2, 2), "SAME", (0, 0), (1, 1)),
]


@pytest.mark.parametrize("circular", [False, True])
@pytest.mark.parametrize("case", range(len(LOOP_CASES)))
def test_conv_transpose_matches_numpy_loop(case: int, circular: bool) -> None:
    spatial, c_in, c_out, k, groups, stride, padding, out_pad, dilation = LOOP_CASES[case]
    layer = L.ConvTranspose(
        c_out,
        k,
        stride=stride,
        padding=padding,
        output_padding=out_pad,
        dilation=dilation,
        groups=groups,
        padding_mode="circular" if circular else "zeros",
        use_bias=False,
    )
    rng = np.random.default_rng(case)
    x = rng.standard_normal((*spatial, c_in)).astype(np.float32)
    kernel = rng.standard_normal((*k, c_in, c_out // groups)).astype(np.float32)
    pads = shapes.conv_transpose_padding(padding, k, stride, dilation, out_pad)
    crop = tuple(
        (d * (kk - 1) - lo, d * (kk - 1) - hi) for (lo, hi), kk, d in zip(pads, k, dilation)
    )
    out_shape = layer.output_shape(x.shape)[:-1]
    want = _scatter(x, kernel, stride, crop, out_shape, dilation, groups, circular)
    got, _ = layer.apply({"kernel": jnp.asarray(kernel)}, {}, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), want, atol=TOL, rtol=TOL)


FLAX_CASES = [
    # spatial, C_in, C_out, k, stride, dilation
    ((6,), 3, 4, (3,), (1,), (1,)),
    ((5,), 2, 3, (4,), (2,), (1,)),
    ((4,), 2, 2, (2,), (3,), (1,)),
    ((5,), 3, 2, (3,), (2,), (2,)),
    ((4, 5), 3, 2, (3, 4), (2, 1), (1, 1)),
    ((3, 4), 2, 3, (5, 2), (1, 2), (2, 1)),
]


@pytest.mark.parametrize("transpose_kernel", [False, True])
@pytest.mark.parametrize("case", range(len(FLAX_CASES)))
def test_circular_matches_flax(case: int, transpose_kernel: bool) -> None:
    spatial, c_in, c_out, k, stride, dilation = FLAX_CASES[case]
    rng = np.random.default_rng(100 + case)
    x = rng.standard_normal((2, *spatial, c_in)).astype(np.float32)
    bias = rng.standard_normal((c_out,)).astype(np.float32)
    flax_layer = nn.ConvTranspose(
        c_out,
        k,
        strides=stride,
        padding="CIRCULAR",
        kernel_dilation=dilation,
        transpose_kernel=transpose_kernel,
    )
    variables = flax_layer.init(jax.random.key(0), jnp.asarray(x))
    flax_kernel = rng.standard_normal(variables["params"]["kernel"].shape).astype(np.float32)
    want = flax_layer.apply(
        {"params": {"kernel": jnp.asarray(flax_kernel), "bias": jnp.asarray(bias)}}, jnp.asarray(x)
    )
    rank = len(k)
    if transpose_kernel:  # flax flips and swaps (out, in): torch's semantics, axes swapped
        kernel = np.swapaxes(flax_kernel, -1, -2)
        extents = [d * (kk - 1) + 1 for kk, d in zip(k, dilation)]
        excess = [max(e - s, 0) for e, s in zip(extents, stride)]
        padding = [(-(-e // 2), e // 2) for e in excess]
        out_pad = tuple(max(s - e, 0) for e, s in zip(extents, stride))
    else:  # flax correlates with the kernel unflipped; jcnn flips: flip it first
        kernel = np.flip(flax_kernel, tuple(range(rank)))
        padding, out_pad = "SAME", (0,) * rank
    layer = L.ConvTranspose(
        c_out,
        k,
        stride=stride,
        padding=padding,
        output_padding=out_pad,
        dilation=dilation,
        padding_mode="circular",
    )
    params = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
    got, _ = jcnn.batched(layer.apply)(params, {}, jnp.asarray(x))
    assert got.shape == want.shape == (2, *(n * s for n, s in zip(spatial, stride)), c_out)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=TOL, rtol=TOL)


def test_circular_is_the_adjoint_of_circular_conv() -> None:
    """<Conv_circ(x), y> == <x, ConvTranspose_circ(y)> for the same kernel and padding."""
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((8, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 2)), jnp.float32)
    conv = L.Conv(2, (3,), stride=2, padding=1, padding_mode="circular", use_bias=False)
    y = jnp.asarray(rng.standard_normal(conv.output_shape(x.shape)), jnp.float32)
    up = L.ConvTranspose(
        3, (3,), stride=2, padding=1, output_padding=1, padding_mode="circular", use_bias=False
    )
    cy, _ = conv.apply({"kernel": kernel}, {}, x)
    ty, _ = up.apply({"kernel": jnp.swapaxes(kernel, -1, -2)}, {}, y)
    assert ty.shape == x.shape
    np.testing.assert_allclose(float(jnp.vdot(cy, y)), float(jnp.vdot(x, ty)), rtol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "wrap"])
def test_undefined_padding_modes_are_refused(mode: str) -> None:
    with pytest.raises(
        ValueError, match=rf"ConvTranspose: padding_mode='{mode}'.*'zeros', 'circular'"
    ):
        L.ConvTranspose(4, 3, padding_mode=mode)


def test_bad_groups_are_refused() -> None:
    with pytest.raises(
        shapes.ShapeError, match="ConvTranspose groups=4 must divide out_channels=6"
    ):
        L.ConvTranspose(6, 3, groups=4)
    with pytest.raises(shapes.ShapeError, match="groups=2 does not divide C_in=3"):
        L.ConvTranspose(4, 3, groups=2).init(jax.random.key(0), (5, 5, 3))
    with pytest.raises(shapes.ShapeError, match="negative entries"):
        L.ConvTranspose(4, 3, padding=-1, padding_mode="circular")


def test_repr_shows_only_non_defaults() -> None:
    assert (
        repr(L.ConvTranspose(4, 3))
        == "ConvTranspose(out_channels=4, kernel_size=(3, 3), padding=0)"
    )
    assert "groups=2" in repr(L.ConvTranspose(4, 3, groups=2, padding_mode="circular"))
