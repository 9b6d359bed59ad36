"""count_macs and the summary's multiply-adds against PyTorch's FlopCounterMode (fixtures made
once by tests/fixtures/make_macs_fixtures.py; exact integers) and against hand counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import jcnn
from jcnn import layers as L
from jcnn import models
from jcnn.tools.flops import count_macs, counts

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "zoo_macs.json").read_text()
)


def test_the_fixture_covers_the_zoo():
    assert set(FIXTURE) - {"_", "layers"} == set(models.SUPPORTED)


@pytest.mark.parametrize("name", models.SUPPORTED)
def test_zoo_macs_equal_pytorchs_flop_counter(name):
    net = getattr(models, name)()
    assert count_macs(net, (224, 224, 3)) == FIXTURE[name]["macs"]
    gflops = FIXTURE[name]["torchvision_gflops"]  # torchvision's table, 3 decimals
    assert gflops is None or round(FIXTURE[name]["macs"] / 1e9, 3) == pytest.approx(gflops)


def _nhwc(nchw: list[int]) -> tuple[int, ...]:
    """One example's shape, channels last, of torch's ``(1, C, *spatial)``."""
    return (*nchw[2:], nchw[1])


LAYERS = {
    "conv1d_k5_s2_d2": L.Conv(7, (5,), stride=2, dilation=2, padding=3),
    "conv2d_g4_s2": L.Conv(12, 3, stride=2, padding=1, groups=4),
    "conv3d_k3": L.Conv(5, (3, 2, 3), padding=((1, 1), (0, 0), (1, 1))),
    "convtranspose2d_s2": L.ConvTranspose(6, 3, stride=2, padding=1, output_padding=1),
    "convtranspose1d_k4": L.ConvTranspose(5, (4,), stride=3),
    "linear_over_positions": L.Dense(10),
}


@pytest.mark.parametrize("key", sorted(LAYERS))
def test_single_layers_equal_pytorchs_flop_counter(key):
    case = FIXTURE["layers"][key]
    shape = (*case["input"][1:],) if key.startswith("linear") else _nhwc(case["input"])
    assert count_macs(LAYERS[key], shape) == case["macs"]


def test_hand_counts_repeats_and_the_summary():
    block = L.residual(L.serial(L.Conv(8, 3, padding=1), L.Relu()))
    # one block: 16*16 positions * 8 filters * 8 channels * 9
    one = 16 * 16 * 8 * 8 * 9
    assert count_macs(block, (16, 16, 8)) == one
    assert count_macs(L.repeat(block, 5), (16, 16, 8)) == 5 * one
    assert count_macs(L.serial(*[block] * 3), (16, 16, 8)) == 3 * one
    net = L.serial(L.Conv(4, 3), L.BatchNorm(), L.MaxPool(2), L.Flatten(), L.Dense(2))
    rows = {v.path: (m, o) for v, m, o in counts(net, (6, 6, 1))}
    assert rows == {
        "": (576 + 32, 4 * 4 * 4 + 16 * 4),
        "Conv_0": (576, 0),
        "BatchNorm_0": (0, 4 * 4 * 4),  # normalisation: one op per value, apart
        "MaxPool_0": (0, 16 * 4),  # pooling: out values * window, apart
        "Flatten_0": (0, 0),
        "Dense_0": (32, 0),
    }
    table = jcnn.summary(net, (6, 6, 1))
    assert "MACs" in table and "608" in table.splitlines()[2]
    assert "total multiply-adds 608" in table
