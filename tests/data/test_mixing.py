"""Mixup and CutMix (jcnn.data.mixing) against NumPy references of timm's formulas, and in training.

The references take the same ``lam`` and box as the functions (the lower-level ``*_apply``),
so images and targets must agree to float32 rounding; the random draws are checked separately
(Beta moments, box geometry from the same centre). Training: ``MixupCutmix`` as a batch
transform with ``soft_cross_entropy`` in a bare step, in both loops of ``jcnn.fit`` (equal
results for one seed, deterministic, the loss decreasing) and on a 2-device mesh (subprocess).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jcnn
from jcnn import layers as L
from jcnn.data import mixing as M
from jcnn.training.keys import TRANSFORM_FOLD
from jcnn.training.losses import accuracy_metrics, soft_cross_entropy
from jcnn.training.state import step_key

REPO = Path(__file__).resolve().parents[2]


def _np_targets(labels: np.ndarray, lam: float, k: int, smoothing: float) -> np.ndarray:
    """timm's mixup_target: smoothed one-hots (off = s/K, on = 1 - s + off), flip-paired."""
    off = smoothing / k
    on = 1.0 - smoothing + off
    y1 = np.full((len(labels), k), off)
    y1[np.arange(len(labels)), labels] = on
    y2 = y1[::-1]
    return lam * y1 + (1.0 - lam) * y2


def _np_box(cy: int, cx: int, lam: float, h: int, w: int) -> tuple[int, int, int, int]:
    """timm's rand_bbox (margin 0) for a given centre."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * ratio), int(w * ratio)
    yl, yh = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
    xl, xh = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
    return int(yl), int(yh), int(xl), int(xh)


def _batch(rng, b=6, h=7, w=9, c=3, k=5, dtype=np.float32):
    if dtype == np.uint8:
        x = rng.integers(0, 256, (b, h, w, c)).astype(np.uint8)
    else:
        x = rng.normal(size=(b, h, w, c)).astype(dtype)
    return x, rng.integers(0, k, b).astype(np.int32)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.77, 1.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_mixup_apply_matches_numpy(rng, lam, smoothing, dtype):
    x, y = _batch(rng, dtype=dtype)
    got_x, got_y = M.mixup_apply(x, y, lam, num_classes=5, label_smoothing=smoothing)
    assert got_x.dtype == jnp.float32 and got_y.dtype == jnp.float32
    xf = x.astype(np.float64)
    expected = lam * xf + (1 - lam) * xf[::-1]  # example i with example B-1-i
    np.testing.assert_allclose(np.asarray(got_x), expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got_y), _np_targets(y, lam, 5, smoothing), atol=1e-6)
    np.testing.assert_allclose(np.asarray(got_y).sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "box", [(1, 5, 2, 7), (0, 7, 0, 9), (3, 3, 0, 9), (0, 2, 6, 9), (6, 7, 8, 9)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_cutmix_apply_matches_numpy_with_the_corrected_lam(rng, box, dtype):
    x, y = _batch(rng, dtype=dtype)
    got_x, got_y = M.cutmix_apply(x, y, box, num_classes=5, label_smoothing=0.1)
    yl, yh, xl, xh = box
    expected = x.astype(np.float32).copy()
    expected[:, yl:yh, xl:xh] = x[::-1][:, yl:yh, xl:xh]  # timm: x[..box] = x.flip(0)[..box]
    np.testing.assert_array_equal(np.asarray(got_x), expected)
    lam = 1.0 - (yh - yl) * (xh - xl) / (7 * 9)
    assert float(M.box_lam(box, 7, 9)) == pytest.approx(lam, abs=1e-7)
    np.testing.assert_allclose(np.asarray(got_y), _np_targets(y, lam, 5, 0.1), atol=1e-6)


@pytest.mark.parametrize("lam", [0.0, 0.2, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_rand_box_is_timms_rand_bbox_for_the_same_centre(lam, seed):
    key = jax.random.key(seed)
    h, w = 10, 7
    ky, kx = jax.random.split(key)  # the centre, drawn as rand_box documents
    cy = int(jax.random.randint(ky, (), 0, h))
    cx = int(jax.random.randint(kx, (), 0, w))
    got = tuple(int(v) for v in M.rand_box(key, lam, h, w))
    assert got == _np_box(cy, cx, lam, h, w)


def test_cutmix_corrects_lam_to_the_clipped_box():
    # Many draws: the soft labels' lam is the box's real area, which clipping makes >= nominal.
    b, h, w, k = 4, 16, 16, 4
    x = np.stack([np.full((h, w, 1), float(i)) for i in range(b)]).astype(np.float32)
    y = np.arange(b, dtype=np.int32)
    run = jax.jit(jax.vmap(lambda key: M.cutmix(key, x, y, num_classes=k, alpha=1.0)))
    images, targets = run(jax.random.split(jax.random.key(0), 300))
    images, targets = np.asarray(images), np.asarray(targets)
    kept = (images[:, 0] == 0.0).mean(axis=(1, 2, 3))  # example 0 kept its own pixels there
    np.testing.assert_allclose(targets[:, 0, 0], kept, atol=1e-6)  # lam == kept fraction
    np.testing.assert_allclose(targets[:, 0, 3], 1 - kept, atol=1e-6)  # pair of 0 is 3
    assert (images[:, 0] == 3.0).sum() > 0 and (kept < 1).any() and (kept > 0).any()


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_mixup_lam_is_beta_distributed(alpha):
    x = np.zeros((2, 2, 2, 1), np.float32)
    y = np.array([0, 1], np.int32)
    run = jax.jit(jax.vmap(lambda key: M.mixup(key, x, y, num_classes=2, alpha=alpha)[1]))
    lam = np.asarray(run(jax.random.split(jax.random.key(1), 4000)))[:, 0, 0]
    var = 1.0 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(lam.mean() - 0.5) < 4 * np.sqrt(var / 4000)
    assert lam.var() == pytest.approx(var, rel=0.1)
    assert lam.min() >= 0 and lam.max() <= 1


def test_label_smoothing_values():
    t = np.asarray(M.mix_targets(jnp.array([2]), 1.0, num_classes=10, label_smoothing=0.1))
    np.testing.assert_allclose(t[0, 2], 0.91, atol=1e-7)
    np.testing.assert_allclose(np.delete(t[0], 2), 0.01, atol=1e-7)


def test_mixup_cutmix_modes(rng):
    x, y = _batch(rng, b=4, h=8, w=8, c=1)
    key = jax.random.key(3)
    # prob=0: images unchanged, targets the smoothed one-hots (timm: lam = 1).
    xs, ts = M.MixupCutmix(5, prob=0.0, label_smoothing=0.1)(key, (x, y))
    np.testing.assert_array_equal(np.asarray(xs), x)
    np.testing.assert_allclose(np.asarray(ts), _np_targets(y, 1.0, 5, 0.1), atol=1e-6)
    # switch_prob=1: CutMix, every pixel from the example or its pair.
    xs, ts = M.MixupCutmix(5, switch_prob=1.0, label_smoothing=0.0)(key, (x, y))
    xs = np.asarray(xs)
    assert np.all((xs == x) | (xs == x[::-1]))
    lam = (xs[0] == x[0]).mean()
    if y[0] != y[-1]:
        assert ts[0, y[0]] == pytest.approx(lam, abs=1e-6)
    # switch_prob=0 and cutmix off: mixup; the same draw of lam (same lam key, same alpha).
    a = M.MixupCutmix(5, switch_prob=0.0)(key, (x, y))
    b = M.MixupCutmix(5, cutmix_alpha=0.0)(key, (x, y))
    np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b[0]), rtol=1e-6, atol=1e-6)
    lam = float(jax.random.beta(jax.random.split(key, 4)[1], 0.8, 0.8))
    np.testing.assert_allclose(
        np.asarray(a[0]), lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-6
    )
    # uint8 in, float32 out in [0, 255]; works under jit.
    xu, yu = _batch(rng, b=4, h=8, w=8, c=3, dtype=np.uint8)
    mix = M.MixupCutmix(5)
    xj, tj = jax.jit(mix)(key, (xu, yu))
    assert xj.dtype == jnp.float32 and tj.shape == (4, 5) and tj.dtype == jnp.float32
    assert 0 <= float(xj.min()) and float(xj.max()) <= 255
    np.testing.assert_allclose(np.asarray(tj).sum(-1), 1.0, atol=1e-6)


def test_mixup_cutmix_is_a_value():
    a, b = M.MixupCutmix(10), M.MixupCutmix(10, 0.8, 1.0, 0.5, 1.0, 0.1)
    assert a == b and hash(a) == hash(b) and a.on_batch is True
    assert a != M.MixupCutmix(10, label_smoothing=0.0)
    with pytest.raises(AttributeError):
        a.prob = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(num_classes=0), ValueError, "num_classes"),
        (dict(num_classes=3, mixup_alpha=0, cutmix_alpha=0), ValueError, "both 0"),
        (dict(num_classes=3, mixup_alpha=-1.0), ValueError, "mixup_alpha"),
        (dict(num_classes=3, prob=1.5), ValueError, "prob"),
        (dict(num_classes=3, label_smoothing=1.0), ValueError, "label_smoothing"),
    ],
)
def test_mixup_cutmix_refuses_bad_settings(kwargs, error, words):
    with pytest.raises(error, match=words):
        M.MixupCutmix(**kwargs)


def test_bad_batches_are_refused():
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        M.MixupCutmix(3)(jax.random.key(0), (jnp.zeros((4, 8, 8)), jnp.zeros(4, jnp.int32)))
    with pytest.raises(TypeError, match="labels have dtype"):
        M.mixup(jax.random.key(0), jnp.zeros((4, 2, 2, 1)), jnp.zeros(4), num_classes=3)
    with pytest.raises(ValueError, match="alpha"):
        M.cutmix(jax.random.key(0), jnp.zeros((4, 2, 2, 1)), jnp.zeros(4, int), num_classes=3,
                 alpha=0.0)  # fmt: skip


# -- in training -------------------------------------------------------------------------------

K = 4


def _data(n=128):
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, n).astype(np.int32)
    centres = rng.normal(size=(K, 6, 6, 1)).astype(np.float32)
    x = centres[y] + 0.3 * rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
    return x, y


NET = L.serial(L.Flatten(), L.Dense(K))


def test_step_gives_the_whole_batch_to_a_batch_transform():
    x, y = _data(16)
    opt = optax.sgd(0.1)
    mix = M.MixupCutmix(K, label_smoothing=0.1)
    seen = {}

    def metrics(out, targets):
        seen["targets"] = targets.shape, targets.dtype
        return accuracy_metrics(out, targets)

    step = jcnn.make_train_step(NET.apply, soft_cross_entropy, opt, transform=mix,
                                metrics_fn=metrics)  # fmt: skip
    ts = jcnn.create_train_state(NET, (6, 6, 1), opt)
    ts, m = step(ts, (x, y))
    assert seen["targets"] == ((16, K), jnp.float32)
    assert sorted(m) == ["accuracy", "loss"] and np.isfinite(float(m["loss"]))
    # Recompute the loss from the same mixed batch: the step's key is fold_in(step_key, ...).
    ts0 = jcnn.create_train_state(NET, (6, 6, 1), opt)
    key = jax.random.fold_in(step_key(ts0), TRANSFORM_FOLD)
    xm, tm = mix(key, (x, y))
    out, _ = jcnn.batched(NET.apply)(ts0.params, ts0.state, xm, train=True)
    assert float(m["loss"]) == pytest.approx(float(soft_cross_entropy(out, tm)), rel=1e-6)


def _fit(on_device: bool, seed: int = 0):
    x, y = _data()
    return jcnn.fit(
        NET, (x, y), val=(x[:32], y[:32]), optimizer=optax.sgd(0.1, momentum=0.9), epochs=4,
        batch_size=32, loss_fn=soft_cross_entropy, metrics_fn=accuracy_metrics,
        transform=M.MixupCutmix(K), on_device=on_device, seed=seed, progress=False,
    )  # fmt: skip


def test_fit_with_mixup_cutmix_in_both_loops():
    dev, host, again = _fit(True), _fit(False), _fit(True)
    loss = dev.history["train_loss"]
    assert loss[-1] < loss[0]
    assert dev.history["val_accuracy"][-1] > 0.5  # 4 classes: chance is 0.25
    for a, b in zip(jax.tree.leaves(dev.params), jax.tree.leaves(again.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # deterministic
    for a, b in zip(jax.tree.leaves(dev.params), jax.tree.leaves(host.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dev.history["train_loss"], host.history["train_loss"], rtol=1e-5)
    other = _fit(True, seed=1)
    assert other.history["train_loss"] != dev.history["train_loss"]


_MESH_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np
    from jcnn import distributed as D
    from tests.data.test_mixing import _fit_on
    assert jax.device_count() == 2
    one = _fit_on(None, True)
    mesh = D.data_mesh()
    out = {}
    for name, on_device in (("device", True), ("host", False)):
        got = _fit_on(mesh, on_device)
        out[name] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                        for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(one.params)))
    print(json.dumps(out))
    """
)


def _fit_on(mesh, on_device: bool):
    x, y = _data(64)
    return jcnn.fit(
        NET, (x, y), optimizer=optax.sgd(0.1), epochs=1, batch_size=16, mesh=mesh,
        loss_fn=soft_cross_entropy, transform=M.MixupCutmix(K), on_device=on_device,
        progress=False,
    )  # fmt: skip


def test_fit_with_mixup_cutmix_on_a_two_device_mesh_equals_one_device():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _MESH_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert diffs["device"] <= 1e-5 and diffs["host"] <= 1e-5, diffs
