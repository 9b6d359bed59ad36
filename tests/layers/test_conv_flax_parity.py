"""Parity with ``flax.linen``: Conv, MaxPool and AvgPool with the same weights on the same batch.

Flax layers take a batch, so jcnn's per-example apply is batched with ``jcnn.batched``. Flax's
conv kernel layout is jcnn's, ``(*window, C_in // groups, C_out)``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import np_pool

import jcnn
from jcnn import layers as L

TOL = 1e-5
BATCH = 2


def pairs(padding, rank):
    """jcnn's int padding as the explicit pairs Flax takes; strings and pairs pass through."""
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    return padding


CONV_CASES = {
    "valid": dict(k=(3, 3)),
    "same_even_s2": dict(k=(4, 4), stride=2, padding="SAME"),
    "strided_int_pad": dict(k=(3, 2), stride=(2, 3), padding=1),
    "dilated_same": dict(k=(3, 3), dilation=2, padding="SAME"),
    "dilated_per_dim": dict(k=(2, 3), dilation=(3, 1)),
    "grouped": dict(k=(3, 3), groups=2, cin=4, cout=6),
    "depthwise_m2": dict(k=(3, 3), groups=3, cin=3, cout=6, padding="SAME"),
    "asym": dict(k=(3, 3), padding=[(1, 2), (0, 3)]),
    "conv1d_same_s2": dict(k=(3,), stride=2, padding="SAME"),
    "conv3d_valid": dict(k=(2, 2, 2), cin=2),
    "nobias": dict(k=(2, 2), stride=2, bias=False),
}
SPATIAL = {1: (10,), 2: (9, 8), 3: (4, 5, 4)}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_matches_flax(case, rng) -> None:
    c = CONV_CASES[case]
    window = c["k"]
    rank = len(window)
    stride, padding, dilation = c.get("stride", 1), c.get("padding", "VALID"), c.get("dilation", 1)
    groups, cin, cout, bias = (
        c.get("groups", 1),
        c.get("cin", 3),
        c.get("cout", 4),
        c.get("bias", True),
    )
    layer = L.Conv(
        cout,
        window,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        use_bias=bias,
    )
    module = nn.Conv(
        cout,
        window,
        strides=stride,
        padding=pairs(padding, rank),
        kernel_dilation=dilation,
        feature_group_count=groups,
        use_bias=bias,
    )

    spatial = SPATIAL[rank]
    out_shape, abstract, _ = jcnn.init_shapes(layer, (*spatial, cin))
    flax_params = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((BATCH, *spatial, cin)))
    assert jax.tree.map(lambda a: a.shape, abstract) == jax.tree.map(
        lambda a: a.shape, flax_params["params"]
    )
    params = jax.tree.map(
        lambda a: jnp.asarray(rng.normal(size=a.shape).astype(np.float32)), abstract
    )
    xs = jnp.asarray(rng.normal(size=(BATCH, *spatial, cin)).astype(np.float32))

    ys, _ = jax.jit(jcnn.batched(layer.apply))(params, {}, xs)
    expected = jax.jit(module.apply)({"params": params}, xs)
    assert ys.shape == expected.shape == (BATCH, *out_shape)
    np.testing.assert_allclose(ys, expected, atol=TOL, rtol=TOL)


POOL_CASES = {
    "valid_2": dict(window=(2, 2)),
    "valid_3_s2": dict(window=(3, 3), stride=2),
    "same_3_s2": dict(window=(3, 3), stride=2, padding="SAME"),
    "same_2_s1": dict(window=(2, 2), stride=1, padding="SAME"),
    "int_pad_1": dict(window=(3, 3), stride=(1, 2), padding=1),
    "asym": dict(window=(2, 3), stride=2, padding=[(1, 0), (0, 2)]),
    "pool1d_same": dict(window=(3,), stride=2, padding="SAME"),
    "pool3d": dict(window=(2, 2, 2), padding=[(0, 1), (1, 0), (0, 0)]),
}


def _pool_pads(padding, spatial, window, strides):
    """Explicit pairs, from lax's own SAME rule (independent of jcnn.shapes)."""
    if padding == "VALID":
        return [(0, 0)] * len(window)
    if padding == "SAME":
        return jax.lax.padtype_to_pads(spatial, window, strides, "SAME")
    return pairs(padding, len(window))


@pytest.mark.parametrize("case", list(POOL_CASES))
@pytest.mark.parametrize("kind", ["max", "avg", "avg_exclude"])
def test_pool_matches_flax_and_window_loop(case, kind, rng) -> None:
    c = POOL_CASES[case]
    window = c["window"]
    rank = len(window)
    strides = jcnn.shapes.as_tuple(c.get("stride", window), rank)
    padding = c.get("padding", "VALID")
    spatial = SPATIAL[rank]
    xs = rng.normal(size=(BATCH, *spatial, 3)).astype(np.float32)

    if kind == "max":
        layer = L.MaxPool(window, stride=strides, padding=padding)
        expected = nn.max_pool(jnp.asarray(xs), window, strides, pairs(padding, rank))
    else:
        include = kind == "avg"
        layer = L.AvgPool(window, stride=strides, padding=padding, count_include_pad=include)
        expected = nn.avg_pool(
            jnp.asarray(xs), window, strides, pairs(padding, rank), count_include_pad=include
        )
    ys, _ = jax.jit(jcnn.batched(layer.apply))({}, {}, jnp.asarray(xs))
    assert ys.shape == expected.shape == (BATCH, *jcnn.output_shape(layer, xs.shape[1:]))
    np.testing.assert_allclose(ys, expected, atol=TOL, rtol=TOL)

    pads = _pool_pads(padding, spatial, window, strides)
    loop = np.stack([np_pool(x, window, strides, pads, kind) for x in xs])
    np.testing.assert_allclose(ys, loop, atol=TOL, rtol=TOL)
