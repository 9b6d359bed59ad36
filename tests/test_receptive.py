"""Analytic receptive fields against the empirical support of one output unit's input dependence.

Gradient support: with positive weights and positive inputs no path can cancel another, so the
input pixels with a nonzero gradient of output unit ``n`` are exactly the pixels it depends on;
their bounding box must equal the analytic field ``start + n*j -+ (r-1)/2`` clipped to the
input. Max-pooling passes gradient to the arg-max only, so stacks with max-pools are checked by
perturbation instead: a large spike at one input pixel changes unit ``n`` iff the pixel is in
its field (with positive weights the spike wins every max it takes part in).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jcnn import layers as L
from jcnn import models
from jcnn.tools.receptive import (
    RFSpec,
    layer_specs,
    network_receptive_field,
    receptive_field,
    receptive_table,
    rows_as_dicts,
)


def _positive_net(net, input_shape, seed=0):
    """``x -> net(x)`` (inference) with every weight uniform in [0.1, 1.1]: no path cancels."""
    shapes_tree = jax.eval_shape(lambda key: net.init(key, input_shape)[1:], jax.random.key(0))
    rng = np.random.default_rng(seed)
    params, state = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.uniform(0.1, 1.1, s.shape), s.dtype), shapes_tree
    )

    def f(x):
        # Under jit, AvgPool / SumPool build their reduce_window init value with jnp.zeros,
        # which is then a tracer and makes the pooling non-differentiable; evaluating constants
        # at trace time keeps it a literal (see the report on jcnn/layers/pool.py).
        with jax.ensure_compile_time_eval():
            return net.apply(params, state, x, train=False)[0]

    return f


def _bbox(mask):
    """Per-dim (first, last) index where ``mask`` (spatial dims only) is True."""
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        out.append((int(hit[0]), int(hit[-1])))
    return tuple(out)


def _compare(row, supports, spatial):
    """Every unit's support lies in its analytic field; interior units fill it exactly.

    A unit whose analytic field lies inside the input depends on every intermediate unit of its
    window tree (a missing unit, past either end of a map, always has a field reaching outside
    the input), so its support's bounding box IS the field. Units at the border see less: the
    padding, and on the high side the pixels a stride never reaches, are not in the support.
    Returns the number of interior units.
    """
    interior = 0
    for index, support in supports:
        field = row.field(index)
        got = _bbox(support)
        inside = all(lo >= 0 and hi <= n - 1 for (lo, hi), n in zip(field, spatial))
        if inside:
            interior += 1
            assert got == tuple((int(lo), int(hi)) for lo, hi in field), index
        else:
            assert all(lo <= a and b <= hi for (a, b), (lo, hi) in zip(got, field)), index
    return interior


def _check_gradient_support(net, input_shape, seed=0):
    f = _positive_net(net, input_shape, seed)
    x = jnp.asarray(np.random.default_rng(seed).uniform(0.5, 1.5, input_shape), jnp.float32)
    y_shape = jax.eval_shape(f, x).shape
    jac = np.asarray(jax.jit(jax.jacrev(lambda v: f(v)[..., 0]))(x))  # (*out, *in, C_in)
    row = network_receptive_field(net, input_shape)[-1]
    assert tuple(row.spec.out_size) == y_shape[:-1]
    units = list(np.ndindex(*y_shape[:-1]))
    support = np.abs(jac).sum(axis=-1).reshape(len(units), *input_shape[:-1]) > 0
    return row, _compare(row, list(zip(units, support)), input_shape[:-1])


def _check_perturbation_support(net, input_shape, seed=0):
    f = _positive_net(net, input_shape, seed)
    x = jnp.asarray(np.random.default_rng(seed).uniform(0.5, 1.5, input_shape), jnp.float32)
    base = np.asarray(f(x))
    spatial = input_shape[:-1]
    spikes = np.zeros((int(np.prod(spatial)), *input_shape), np.float32)
    for i, pos in enumerate(np.ndindex(*spatial)):
        spikes[(i, *pos)] = 1e3
    outs = np.asarray(jax.jit(jax.vmap(f))(x[None] + jnp.asarray(spikes)))  # (P, *out_spatial, C)
    changed = np.abs(outs - base[None]).max(axis=-1) > 1e-3 * np.abs(base).max()
    changed = changed.reshape(*spatial, *changed.shape[1:])  # (*in, *out)
    row = network_receptive_field(net, input_shape)[-1]
    rank = len(spatial)
    supports = [(i, changed[(Ellipsis, *i)]) for i in np.ndindex(*changed.shape[rank:])]
    return row, _compare(row, supports, spatial)


# ---------------------------------------------------------------------------------------------
# Hand-derived numbers
# ---------------------------------------------------------------------------------------------


def test_tuple_specs_hand_derived():
    # conv 3 -> r 3, start 1; pool 2/2 -> r 4, j 2, start 1.5; conv 3 pad 1 -> r 8, start 1.5;
    # dilated conv 3 (k' 5) stride 2 pad 2 -> r 16, j 4, start 1.5 + (2 - 2) * 2 = 1.5.
    rows = receptive_field(
        [
            ("conv", 3, 1, 0, 1),
            ("pool", 2, 2, "VALID", 1),
            ("conv", 3, 1, 1, 1),
            ("dilated", 3, 2, 2, 2),
        ]
    )
    assert [(r.rf, r.jump, r.start) for r in rows] == [
        ((3,), (1,), (1.0,)),
        ((4,), (2,), (1.5,)),
        ((8,), (2,), (1.5,)),
        ((16,), (4,), (1.5,)),
    ]


def test_per_dim_and_pair_padding():
    rows = receptive_field(
        [("conv", (3, 5), (1, 2), ((1, 0), (0, 4)), 1), ("pool", 2, 2, 0, (1, 1))]
    )
    assert rows[0].rf == (3, 5) and rows[0].jump == (1, 2) and rows[0].start == (0.0, 2.0)
    # pool: r += 1 * j = (4, 7); start += 0.5 * j = (0.5, 3.0); j *= 2 = (2, 4)
    assert rows[1].rf == (4, 7) and rows[1].jump == (2, 4) and rows[1].start == (0.5, 3.0)


def test_same_padding_needs_input_size():
    with pytest.raises(ValueError, match="depends on the input size"):
        receptive_field([("conv", 3, 1, "SAME", 1)])
    # Through a network it is resolved: SAME for k=4, n=10 pads (1, 2); low side 1.
    (spec,) = layer_specs(L.serial(L.Conv(2, 4, padding="SAME")), (10, 10, 1))
    assert spec.padding == (1, 1) and spec.out_size == (10, 10)


def test_course_cnn_alexnet_vgg19_resnet18():
    cnn = network_receptive_field(models.cnn(), (28, 28, 1))
    # 5x5 -> 5; pool -> 6 (j 2); 3x3 -> 6 + 2*2 = 10; pool -> 12 (j 4).
    assert [r.rf[0] for r in cnn] == [5, 6, 10, 12] and cnn[-1].jump == (4, 4)
    alex = network_receptive_field(models.alexnet(), (224, 224, 3))
    # 11 (j4); 11+2*4=19 (j8); 19+4*8=51; 51+2*8=67 (j16); +32 three times = 163; 163+32 = 195.
    assert [r.rf[0] for r in alex] == [11, 19, 51, 67, 99, 131, 163, 195]
    assert alex[-1].jump == (32, 32) and alex[-1].start == (31.0, 31.0)
    vgg = network_receptive_field(models.vgg19(), (224, 224, 3))
    # Block b (j = 2^b) adds 2*j per conv and j per pool: 6, 16, 52, 124, 268.
    pools = [r.rf[0] for r in vgg if r.spec.kind == "MaxPool"]
    assert pools == [6, 16, 52, 124, 268] and vgg[-1].jump == (32, 32)
    res = network_receptive_field(models.resnet18(), (224, 224, 3))
    assert res[-1].rf == (435, 435) and res[-1].jump == (32, 32)


def test_table_and_json():
    table = receptive_table(models.cnn(), (28, 28, 1))
    lines = table.splitlines()
    assert lines[0].split() == ["layer", "kind", "k", "s", "p", "d", "out", "r", "j", "start"]
    assert lines[-1].split() == ["MaxPool_1", "MaxPool", "2", "2", "0", "1", "5", "12", "4", "5.5"]
    rows = rows_as_dicts(network_receptive_field(models.cnn(), (28, 28, 1)))
    assert rows[0]["rf"] == [5, 5] and rows[-1]["start"] == [5.5, 5.5]


def test_stops_at_global_and_rejects_transposed():
    specs = layer_specs(L.serial(L.Conv(2, 3), L.Flatten(), L.Dense(3)), (8, 8, 1))
    assert [s.kind for s in specs] == ["Conv"]
    with pytest.raises(ValueError, match="ConvTranspose"):
        layer_specs(L.serial(L.ConvTranspose(2, 3, stride=2)), (8, 8, 1))
    assert isinstance(layer_specs(L.serial(L.Conv(2, 3)), (8, 8, 1))[0], RFSpec)


def test_a_new_activation_needs_no_registration():
    """An activation made with ``elementwise`` states that it is pointwise: the walk passes it."""
    net = L.serial(L.Conv(4, (3, 3)), L.elementwise(jnp.sin, "Sine"), L.MaxPool((2, 2)))
    rows = network_receptive_field(net, (28, 28, 1))
    assert [r.spec.kind for r in rows] == ["Conv", "MaxPool"]
    assert rows[-1].rf == (4, 4) and rows[-1].jump == (2, 2)


def test_a_layer_that_mixes_positions_stops_the_walk():
    """``pointwise=False`` (here a softmax over the rows) means every unit sees every row."""
    rows_softmax = L.elementwise(jax.nn.softmax, "RowSoftmax", axis=0, pointwise=False)
    net = L.serial(L.Conv(2, 3), rows_softmax, L.Conv(2, 3))
    assert [s.kind for s in layer_specs(net, (8, 8, 1))] == ["Conv"]
    assert L.Softmax().pointwise and not L.Softmax(axis=0).pointwise


# ---------------------------------------------------------------------------------------------
# Analytic == empirical
# ---------------------------------------------------------------------------------------------

CONV_POOL_NETS = {
    "strided_asymmetric": lambda: L.serial(
        L.Conv(3, (3, 5), stride=(1, 2), padding=((1, 0), (2, 1))),
        L.Relu(),
        L.AvgPool((2, 3), stride=(2, 1), padding=1),
        L.Conv(2, (3, 3), dilation=(2, 1), padding="SAME"),
        L.BatchNorm(),
        L.SumPool((2, 2)),
        L.Conv(2, (1, 1)),
    ),
    "dilated_stride3": lambda: L.serial(
        L.Conv(2, (4, 2), stride=(3, 1), padding=((2, 1), (0, 0))),
        L.Elu(),  # not Tanh: it saturates at these positive activations (zero gradient)
        L.Conv(2, (3, 3), dilation=(3, 2), padding=(3, 1)),
        L.AvgPool((3, 2), stride=(1, 2)),
    ),
    "residual_concat": lambda: L.serial(
        L.Conv(3, (3, 3), padding=1),
        L.residual(
            L.serial(L.Conv(3, (3, 3), padding=1), L.Relu(), L.Conv(3, (1, 5), padding=(0, 2)))
        ),
        L.concat(
            L.Conv(2, (3, 3), padding=((2, 0), (0, 2))),
            L.serial(L.AvgPool((3, 3), stride=1, padding=1), L.Conv(2, (1, 1))),
            L.Conv(2, (3, 3), padding=((0, 2), (2, 0))),
        ),
        L.residual(
            L.serial(L.Conv(3, (3, 3), stride=2, padding=1), L.Conv(3, (3, 3), padding=1)),
            L.Conv(3, (1, 1), stride=2),
        ),
        L.Conv(1, (2, 3), stride=(1, 2)),
    ),
}


@pytest.mark.parametrize("name", sorted(CONV_POOL_NETS))
def test_gradient_support_equals_analytic_field(name):
    row, interior = _check_gradient_support(CONV_POOL_NETS[name](), (44, 40, 2), seed=1)
    assert interior >= 4 and all(r > 1 for r in row.rf)


def test_gradient_support_random_1d_chains():
    rng = np.random.default_rng(0)
    for trial in range(5):
        layers = []
        for _ in range(rng.integers(2, 5)):
            k, s, d = int(rng.integers(1, 5)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
            pad = (int(rng.integers(0, k)), int(rng.integers(0, k)))
            if rng.random() < 0.3:
                layers.append(L.AvgPool((k,), stride=s, padding=(pad,)))
            else:
                layers.append(L.Conv(2, (k,), stride=s, padding=(pad,), dilation=d))
        _, interior = _check_gradient_support(L.serial(*layers), (60, 1), seed=trial)
        assert interior >= 1


def test_max_pool_stack_by_perturbation():
    net = L.serial(
        L.Conv(2, (3, 3), padding=1),
        L.Relu(),
        L.MaxPool((3, 3), stride=2, padding=((1, 0), (0, 1))),
        L.Conv(2, (3, 2), stride=(1, 2)),
        L.MaxPool((2, 2)),
    )
    row, interior = _check_perturbation_support(net, (27, 35, 1), seed=3)
    assert interior >= 4
    assert row.rf == (11, 11) and row.jump == (4, 8)  # (3+2+4, 3+2+2) + (2, 4)


def test_gate_is_the_union_of_identity_and_its_chain_or_stops_when_pooled():
    """``x * chain(x)``: a same-size windowed chain widens the field like a residual branch; a
    pooled chain (squeeze-excitation) makes every unit see the whole input."""
    gated = L.serial(L.gate(L.Conv(2, 3, padding=1), L.Sigmoid()), L.Conv(2, 3))
    residual = L.serial(L.residual(L.Conv(2, 3, padding=1)), L.Conv(2, 3))
    as_gate = network_receptive_field(gated, (9, 9, 2))
    as_sum = network_receptive_field(residual, (9, 9, 2))
    assert [(r.rf, r.jump, r.start) for r in as_gate] == [(r.rf, r.jump, r.start) for r in as_sum]
    assert as_gate[-1].rf == (5, 5)
    se = L.serial(L.Conv(2, 3), models.squeeze_excitation(2, 1), L.Conv(2, 3))
    assert [s.kind for s in layer_specs(se, (9, 9, 1))] == ["Conv"]


def test_steps_are_named_by_walk_paths_in_a_zoo_model():
    """resnet18's blocks have inlined bodies: each block is one step named by its params path."""
    net, shape = models.resnet18(num_classes=10), (64, 64, 3)
    specs = layer_specs(net, shape)
    assert {s.name for s in specs} <= {v.path for v in net.walk(shape)}
    assert [s.name for s in specs][:4] == ["conv1", "maxpool", "layer1/0", "layer1/1"]
