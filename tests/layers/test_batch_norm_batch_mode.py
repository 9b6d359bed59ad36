"""``BatchNorm(mode="batch")``: the batch's statistics in training and inference, no state;
against NumPy and Equinox's ``eqx.nn.BatchNorm(mode="batch")`` (training, where they agree)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jcnn
from jcnn import layers as L

TOL = 1e-5


def _numpy_batch_norm(x, scale, offset, eps):
    """Statistics over every axis but the channels, biased variance."""
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + offset


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 3, 6), (2, 4, 5, 2, 3)])
@pytest.mark.parametrize("train", [False, True])
def test_batch_mode_matches_numpy(shape: tuple[int, ...], train: bool) -> None:
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    layer = L.BatchNorm(mode="batch", eps=1e-3)
    _, params, state = layer.init(None, shape[1:])
    assert state == {}
    params = {
        "scale": jnp.asarray(rng.standard_normal(shape[-1]), jnp.float32),
        "offset": jnp.asarray(rng.standard_normal(shape[-1]), jnp.float32),
    }
    y, new_state = jcnn.batched(layer.apply)(params, state, jnp.asarray(x), train=train)
    assert new_state == {}
    want = _numpy_batch_norm(x, np.asarray(params["scale"]), np.asarray(params["offset"]), 1e-3)
    np.testing.assert_allclose(np.asarray(y), want, atol=TOL, rtol=TOL)


def test_batch_mode_matches_equinox_in_training() -> None:
    eqx = pytest.importorskip("equinox")
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 4, 5, 3)) * 2 - 1).astype(np.float32)  # (N, H, W, C)
    bn = eqx.nn.BatchNorm(3, axis_name="batch", mode="batch", eps=1e-5)
    eqx_state = eqx.nn.State(bn)
    xc = jnp.moveaxis(jnp.asarray(x), -1, 1)  # equinox: channels first
    want, _ = jax.vmap(bn, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(xc, eqx_state)
    layer = L.BatchNorm(mode="batch")
    _, params, state = layer.init(None, x.shape[1:])
    y, _ = jcnn.batched(layer.apply)(params, state, jnp.asarray(x), train=True)
    np.testing.assert_allclose(np.asarray(y), np.moveaxis(np.asarray(want), 1, -1), atol=TOL)
    # in inference jcnn still uses the batch; the default mode uses its running statistics
    y_eval, _ = jcnn.batched(layer.apply)(params, state, jnp.asarray(x), train=False)
    np.testing.assert_array_equal(np.asarray(y_eval), np.asarray(y))
    running = L.BatchNorm()
    _, rp, rs = running.init(None, x.shape[1:])
    y_running, _ = jcnn.batched(running.apply)(rp, rs, jnp.asarray(x), train=False)
    np.testing.assert_allclose(np.asarray(y_running), x / np.sqrt(1 + 1e-5), atol=TOL)


def test_batch_mode_errors() -> None:
    with pytest.raises(ValueError, match=r"BatchNorm: unknown mode='ema'; accepted: 'running'"):
        L.BatchNorm(mode="ema")
    layer = L.BatchNorm(mode="batch")
    _, params, state = layer.init(None, (4,))
    with pytest.raises(NameError, match=r"BatchNorm\(mode='batch'\) takes statistics"):
        layer.apply(params, state, jnp.ones((4,)))
    assert repr(layer) == "BatchNorm(momentum=0.9, eps=1e-05, mode='batch')"
    assert "mode" not in repr(L.BatchNorm())


def test_batch_mode_refuses_one_value_per_channel() -> None:
    layer = L.BatchNorm(mode="batch")
    _, params, state = layer.init(None, (4,))
    with pytest.raises(ValueError, match=r"mode='batch' needs more than 1 value per channel"):
        jcnn.batched(layer.apply)(params, state, jnp.ones((1, 4)))
