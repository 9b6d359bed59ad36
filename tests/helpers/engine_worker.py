"""Subprocess for tests/training/test_engine_mesh.py: the engine's combinations on 8 CPU devices.

Runs with ``--xla_force_host_platform_device_count=8`` set before JAX starts and prints one
JSON object of measured differences (the test asserts them).
"""

from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jcnn  # noqa: E402
from jcnn import distributed as D  # noqa: E402
from jcnn import layers as L  # noqa: E402
from jcnn.data.batching import augment  # noqa: E402
from jcnn.training.losses import softmax_cross_entropy  # noqa: E402
from jcnn.training.privacy import DPSGD  # noqa: E402


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # fmt: skip


def aug(key, x):
    return augment(key, x, crop_padding=1, flip=True)


def main() -> None:
    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    net = L.serial(L.Conv(4, 3), L.Relu(), L.Conv(4, 3), L.Relu(), L.Flatten(), L.Dense(10))
    x = rng.normal(size=(256, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, 256).astype(np.int32)
    mesh = D.data_mesh()
    opt = optax.sgd(0.05, momentum=0.9)
    out: dict[str, float] = {}

    def steps(**options):  # 3 steps of batches of 32 from a fresh create_train_state + NumPy
        step = jcnn.make_train_step(net.apply, softmax_cross_entropy, opt, **options)
        ts = jcnn.create_train_state(net, (8, 8, 1), opt, seed=1)
        for i in range(3):
            ts, metrics = step(ts, (x[32 * i : 32 * i + 32], y[32 * i : 32 * i + 32]))
        return jax.device_get(ts.params), float(metrics["loss"])

    single, _ = steps()
    out["mesh_vs_single"] = max_diff(steps(mesh=mesh)[0], single)
    out["microbatches4_vs_whole"] = max_diff(steps(mesh=mesh, microbatches=4)[0], single)
    out["microbatches4_single_vs_whole"] = max_diff(steps(microbatches=4)[0], single)
    no_noise = DPSGD(l2_clip=1e9, noise_multiplier=0.0)
    out["dpsgd_noiseless_vs_plain"] = max_diff(steps(mesh=mesh, privacy=no_noise)[0], single)
    out["dpsgd_noiseless_mb2_vs_plain"] = max_diff(
        steps(mesh=mesh, privacy=no_noise, microbatches=2)[0], single
    )
    noisy, _ = steps(mesh=mesh, privacy=DPSGD(l2_clip=1.0, noise_multiplier=1.0))
    out["dpsgd_noisy_vs_plain"] = max_diff(noisy, single)

    run = dict(epochs=1, batch_size=32, optimizer=opt, transform=aug, progress=False, seed=3)
    one = jcnn.fit(net, (x, y), **run)
    on_mesh = jcnn.fit(net, (x, y), mesh=mesh, on_device=True, **run)
    host_mesh = jcnn.fit(net, (x, y), mesh=mesh, on_device=False, **run)
    out["fit_mesh_device_aug_vs_single"] = max_diff(on_mesh.params, one.params)
    out["fit_mesh_host_aug_vs_single"] = max_diff(host_mesh.params, one.params)
    out["fit_aug_changes_params"] = max_diff(
        jcnn.fit(net, (x, y), **{**run, "transform": None}).params, one.params
    )
    dp = DPSGD(l2_clip=1.0, noise_multiplier=1.1)
    full = jcnn.fit(
        net, (x, y), val=(x[:64], y[:64]), mesh=mesh, privacy=dp, microbatches=2, ema=0.99,
        transform=aug, on_device=True, **{k: v for k, v in run.items() if k != "transform"},
    )  # fmt: skip
    out["full_epsilon"] = dp.epsilon(full, num_examples=len(x), batch_size=32, delta=1e-5)
    out["full_ema_val_accuracy"] = full.history["ema_val_accuracy"][-1]
    out["full_val_accuracy"] = full.history["val_accuracy"][-1]
    out["full_steps"] = int(full.train_state.step)
    out["full_ema_differs"] = max_diff(full.ema_params, full.params)
    out["full_ema_sharded"] = float(
        len(full.train_state.ema["Dense_0"]["kernel"].sharding.device_set)
    )
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
