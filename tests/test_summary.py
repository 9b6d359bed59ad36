"""count_params / output_shape / init_shapes / summary: shape inference without allocation."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

import jcnn
from jcnn import initializers
from jcnn import layers as L


def cnn():
    return L.serial(
        L.Conv(8, (5, 5)), L.Relu(), L.MaxPool((2, 2)),
        L.Conv(16, (3, 3)), L.Relu(), L.MaxPool((2, 2)),
        L.Flatten(), L.Dense(10),
    )  # fmt: skip


def test_count_params_does_not_allocate_a_big_dense():
    """Dense(4096) on a 25,088 input (VGG's first dense layer): 25088*4096 + 4096 params."""
    concrete = []

    def watching_init(key, shape, dtype=jnp.float32):
        out = initializers.lecun_normal()(key, shape, dtype)
        concrete.append(not isinstance(out, jax.core.Tracer))
        return out

    layer = L.Dense(4096, kernel_init=watching_init)
    start = time.perf_counter()
    n = jcnn.count_params(layer, (25088,))
    elapsed = time.perf_counter() - start
    assert n == 25088 * 4096 + 4096 == 102_764_544
    assert concrete == [False]  # the 400 MB kernel only ever existed as an abstract value
    assert elapsed < 2.0


def test_init_shapes_returns_abstract_values():
    out, params, state = jcnn.init_shapes(L.serial(L.Dense(4096), L.BatchNorm()), (25088,))
    assert out == (4096,)
    kernel = params["Dense_0"]["kernel"]
    assert isinstance(kernel, jax.ShapeDtypeStruct)
    assert kernel.shape == (25088, 4096) and kernel.dtype == jnp.float32
    assert isinstance(state["BatchNorm_0"]["var"], jax.ShapeDtypeStruct)


def test_count_params_excludes_state():
    net = L.serial(L.Dense(5), L.BatchNorm())
    assert jcnn.count_params(net, (3,)) == 3 * 5 + 5 + 2 * 5  # BN scale/offset only


def test_output_shape():
    assert jcnn.output_shape(cnn(), (28, 28, 1)) == (10,)
    assert jcnn.output_shape(L.Conv(8, 5), (28, 28, 1)) == (24, 24, 8)
    assert jcnn.output_shape(L.fan_out(2), (4,)) == ((4,), (4,))
    assert jcnn.output_shape(L.parallel(L.Dense(3), L.Flatten()), ((4,), (2, 3))) == ((3,), (6,))


def test_summary_lists_every_layer_shape_count_and_total():
    text = jcnn.summary(cnn(), (28, 28, 1))
    lines = text.splitlines()
    rows = {}
    for line in lines:
        parts = line.split()
        if parts and parts[0] in {"Conv_0", "Relu_0", "MaxPool_0", "Conv_1", "Relu_1",
                                  "MaxPool_1", "Flatten_0", "Dense_0"}:  # fmt: skip
            rows[parts[0]] = line
    assert list(rows) == [
        "Conv_0", "Relu_0", "MaxPool_0", "Conv_1", "Relu_1", "MaxPool_1", "Flatten_0", "Dense_0"
    ]  # fmt: skip
    for key, shape, count, macs in [
        ("Conv_0", "(24, 24, 8)", "208", "115,200"),  # 24*24*8 * 1 * 25
        ("Relu_0", "(24, 24, 8)", "0", "0"),
        ("MaxPool_0", "(12, 12, 8)", "0", "(4,608)"),  # 12*12*8 * 4, apart
        ("Conv_1", "(10, 10, 16)", "1,168", "115,200"),  # 10*10*16 * 8 * 9
        ("MaxPool_1", "(5, 5, 16)", "0", "(1,600)"),
        ("Flatten_0", "(400,)", "0", "0"),
        ("Dense_0", "(10,)", "4,010", "4,000"),
    ]:
        assert shape in rows[key], (key, rows[key])
        assert rows[key].split()[-3] == count, (key, rows[key])
        assert rows[key].split()[-1] == macs, (key, rows[key])
    assert "total params 5,386" in lines[-1]
    assert "input (28, 28, 1)" in lines[-1] and "total multiply-adds 234,400" in lines[-1]
    assert lines[0].split() == ["layer", "kind", "output", "shape", "params", "state", "MACs"]


def test_summary_indents_nested_combinators_and_counts_state():
    net = L.serial(
        L.serial(L.Conv(4, 3), L.BatchNorm(), name="features"),
        L.Flatten(),
        L.Dense(2).named("head"),
    )
    text = jcnn.summary(net, (6, 6, 1))
    assert "\n  features" in text
    assert "\n    Conv_0" in text and "\n    BatchNorm_0" in text
    assert "\n  head" in text
    total = (3 * 3 * 1 * 4 + 4) + 2 * 4 + (4 * 4 * 4 * 2 + 2)
    assert f"total params {total:,}; state 8" in text
    assert jcnn.count_params(net, (6, 6, 1)) == total


def test_summary_of_vgg_sized_dense_is_fast():
    head = L.serial(L.Dense(4096), L.Relu(), L.Dropout(0.5), L.Dense(4096), L.Relu(), L.Dense(1000))
    start = time.perf_counter()
    text = jcnn.summary(head, (25088,))
    assert time.perf_counter() - start < 5.0
    want = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert f"total params {want:,}" in text
    assert "102,764,544" in text


def test_summary_rows_are_the_walks_visits_of_a_zoo_model():
    """resnet18's blocks keep their bodies inlined (torchvision's layer1.0.conv1): every row is a
    walk visit at its params address, and the leaves' counts add up to the total."""
    from jcnn import models
    from jcnn.tools.summary import summary_rows

    net, shape = models.resnet18(num_classes=10), (32, 32, 3)
    rows = summary_rows(net, shape)
    assert [r.path for r in rows] == [v.path for v in net.walk(shape)]
    leaves = [r for r, v in zip(rows, net.walk(shape)) if not v.layer.children]
    assert sum(r.params for r in leaves) == rows[0].params == jcnn.count_params(net, shape)
    assert "layer1/0/conv1" in {r.path for r in rows}
