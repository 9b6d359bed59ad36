"""``jcnn.porting.from_torch`` / ``to_torch``: whole networks, against a PyTorch fixture.

The fixture (``tests/fixtures/make_torch_fixtures.py``, case ``sequential/0``) is a
``torch.nn.Sequential`` in eval mode: conv, BatchNorm with running statistics, max-pool, a
transposed conv, a strided conv without bias, BatchNorm, Flatten, Dropout, Linear, ReLU, Linear.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

import jcnn
from jcnn import layers as L
from jcnn import porting

FIXTURE = Path(__file__).parent / "fixtures" / "torch_parity.npz"
PREFIX = "sequential/0/state_dict/"

with np.load(FIXTURE, allow_pickle=False) as _f:
    STATE_DICT = {k[len(PREFIX) : -len("/value")]: _f[k] for k in _f.files if k.startswith(PREFIX)}
    X, Y = _f["sequential/0/x"], _f["sequential/0/y"]


def net() -> L.Layer:
    return L.serial(
        L.Conv(4, 3, padding=1),
        L.BatchNorm(),
        L.Relu(),
        L.MaxPool(2),
        L.ConvTranspose(3, 3, stride=2, padding=1, output_padding=1),
        L.Conv(5, 3, stride=2, use_bias=False),
        L.BatchNorm(),
        L.Flatten(),
        L.Dropout(0.5),
        L.Dense(6),
        L.Relu(),
        L.Dense(3),
    )


#: jcnn leaf path -> index of the module in the torch Sequential.
TORCH_MODULES = {
    "Conv_0": "0", "BatchNorm_0": "1", "ConvTranspose_0": "4", "Conv_1": "5",
    "BatchNorm_1": "6", "Dense_0": "9", "Dense_1": "11",
}  # fmt: skip


@pytest.mark.parametrize("by", ["order", "name"])
def test_from_torch_reproduces_torch_outputs(by):
    prefixes = TORCH_MODULES if by == "name" else None
    params, state = porting.from_torch(net(), (8, 8, 2), STATE_DICT, prefixes=prefixes)
    x = porting.nchw_to_nhwc(X)
    with jax.default_matmul_precision("highest"):
        y, _ = jcnn.batched(net().apply)(params, state, x)
    np.testing.assert_allclose(np.asarray(y), Y, rtol=1e-5, atol=1e-5)
    assert np.abs(Y).max() > 0.1  # a real signal, not zeros


def test_paths_follow_the_layers_facts():
    leaves = porting.torch_leaves(net(), (8, 8, 2))
    assert [leaf.path for leaf in leaves] == list(TORCH_MODULES)
    # Through Dropout (pointwise) the first Dense still reads the flattened (3, 3, 5) map.
    assert [leaf.flattened_from for leaf in leaves][-2:] == [(3, 3, 5), None]


def test_any_row_major_flatten_is_recognised_by_its_facts():
    """Reshape((-1,)) flattens like Flatten: the Dense after it gets torch's column order."""
    layers = [c for _, c in net().children]
    reshaped = L.serial(*layers[:7], L.Reshape((-1,)), *layers[8:])
    params, state = porting.from_torch(reshaped, (8, 8, 2), STATE_DICT)
    with jax.default_matmul_precision("highest"):
        y, _ = jcnn.batched(reshaped.apply)(params, state, porting.nchw_to_nhwc(X))
    np.testing.assert_allclose(np.asarray(y), Y, rtol=1e-5, atol=1e-5)


def test_to_torch_is_the_exact_inverse():
    params, state = porting.from_torch(net(), (8, 8, 2), STATE_DICT)
    back = porting.to_torch(net(), (8, 8, 2), params, state, prefixes=TORCH_MODULES)
    assert sorted(back) == sorted(STATE_DICT)
    for key, value in STATE_DICT.items():
        if key.endswith("num_batches_tracked"):
            continue  # a step counter jcnn does not keep
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_missing_extra_and_misshaped_keys_name_the_key_and_the_path():
    sd = {k: v for k, v in STATE_DICT.items() if k != "5.weight"}
    with pytest.raises(ValueError, match=r"'5.weight'.*Conv_1.*missing"):
        porting.from_torch(net(), (8, 8, 2), sd, prefixes=TORCH_MODULES)
    sd = dict(STATE_DICT, **{"5.weight": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match=r"'5.weight' for jcnn Conv_1.*at least 3 dims"):
        porting.from_torch(net(), (8, 8, 2), sd)
    sd = dict(STATE_DICT, **{"9.extra": np.zeros(3)})
    with pytest.raises(ValueError, match=r"no jcnn counterpart.*9.extra"):
        porting.from_torch(net(), (8, 8, 2), sd)
    sd = dict(STATE_DICT, **{"0.weight": np.zeros((4, 2, 5, 5), np.float32)})
    with pytest.raises(
        ValueError, match=r"'0.weight' of shape \(4, 2, 5, 5\).*Conv_0.*\(3, 3, 2, 4\)"
    ):
        porting.from_torch(net(), (8, 8, 2), sd)
    short = {k: v for k, v in STATE_DICT.items() if not k.startswith("11.")}
    with pytest.raises(ValueError, match="6 modules with tensors.*7 layers with params"):
        porting.from_torch(net(), (8, 8, 2), short)


def test_a_repeat_has_no_torch_layout():
    block = L.residual(L.serial(L.Conv(2, 3, padding=1), L.Relu()))
    with pytest.raises(ValueError, match="repeat"):
        porting.torch_leaves(L.serial(L.repeat(block, 2)), (4, 4, 2))


def test_every_name_stays_importable_from_porting():
    from jcnn.interop import layouts, safetensors

    for name in porting.__all__:
        assert getattr(porting, name) is not None, name
    assert porting.conv_kernel_from_torch is layouts.conv_kernel_from_torch
    assert porting.nchw_to_nhwc is layouts.nchw_to_nhwc
    assert porting.save_safetensors is safetensors.save_safetensors
    assert porting.load_safetensors is safetensors.load_safetensors


def test_an_inlined_block_ports_at_its_flat_torch_names():
    """torchvision's ``layer1.0.conv1``: a block whose body serial is inlined."""
    body = L.serial(L.Conv(2, 3, padding=1).named("conv1"), L.BatchNorm().named("bn1"))
    block = L.residual(body.inlined(), name="0").named("0")
    net = L.serial(L.serial(block, name="layer1"))
    _, params, state = net.init(jax.random.key(0), (4, 4, 2))
    sd = porting.to_torch(net, (4, 4, 2), params, state)
    assert sorted(sd) == [
        "layer1.0.bn1.bias", "layer1.0.bn1.num_batches_tracked", "layer1.0.bn1.running_mean",
        "layer1.0.bn1.running_var", "layer1.0.bn1.weight", "layer1.0.conv1.bias",
        "layer1.0.conv1.weight",
    ]  # fmt: skip
    back, back_state = porting.from_torch(net, (4, 4, 2), sd)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    np.testing.assert_array_equal(
        back["layer1"]["0"]["conv1"]["kernel"], params["layer1"]["0"]["conv1"]["kernel"]
    )
    np.testing.assert_array_equal(
        back_state["layer1"]["0"]["bn1"]["var"], state["layer1"]["0"]["bn1"]["var"]
    )
