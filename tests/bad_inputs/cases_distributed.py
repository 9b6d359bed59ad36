"""Catalogue cases for data-parallel helpers (``jcnn.distributed``).

Meshes, batches that do not split over the devices, and the launch settings of
``initialize``. The cases use meshes of ``jax.devices()`` (one CPU device in the test process);
only the divisibility over 8 devices runs in a subprocess (one for all of its checks) with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``. ``jax.distributed.initialize`` is
replaced while the ``initialize`` cases run, so none of them can start a real run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np

from jcnn import distributed as D
from tests.bad_inputs.catalogue import Case

REPO = Path(__file__).resolve().parents[2]


def _mesh() -> jax.sharding.Mesh:
    return D.data_mesh(jax.devices()[:1])


@contextlib.contextmanager
def _launch_env(**env: str) -> Iterator[None]:
    """``JCNN_*`` launch variables set to ``env`` (others unset); no real initialisation."""
    names = (D.ENV_COORDINATOR, D.ENV_NUM_PROCESSES, D.ENV_PROCESS_ID)
    saved = {k: os.environ.get(k) for k in names}
    real = jax.distributed.initialize

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"jax.distributed.initialize was called with {kwargs}")

    for key in names:
        os.environ.pop(key, None)
    os.environ.update(env)
    jax.distributed.initialize = refuse
    try:
        yield
    finally:
        jax.distributed.initialize = real
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _initialize(**env: str):
    def call(_: Path) -> None:
        with _launch_env(**env):
            D.initialize(cpu_collectives=None, initialization_timeout=1)

    return call


def _valid_one_device(_: Path) -> None:
    x, y = np.arange(6.0).reshape(3, 2), np.arange(3)
    gx, gy = D.shard_batch((x, y), _mesh())
    np.testing.assert_array_equal(np.asarray(gx), x)
    np.testing.assert_array_equal(np.asarray(gy), y)
    assert D.process_batch_slice(np.int64(3), _mesh()) == slice(0, 3)


_EIGHT = r"""
import json
import numpy as np, optax
from jcnn import distributed as D, layers as L
from jcnn.training.losses import softmax_cross_entropy
from jcnn.training import create_train_state, fit, make_train_step

mesh = D.data_mesh()
assert mesh.size == 8, mesh
x, y = np.ones((24, 3), np.float32), np.zeros(24, np.int32)
net = L.serial(L.Dense(2))
step = make_train_step(net.apply, softmax_cross_entropy, optax.sgd(0.1), mesh=mesh)
ts = D.replicate(create_train_state(net, (3,), optax.sgd(0.1)), mesh)
tries = [
    lambda: D.shard_batch((x[:12], y[:12]), mesh),
    lambda: D.process_batch_slice(12, mesh),
    lambda: fit(net, (x, y), epochs=1, batch_size=12, progress=False, on_device=False,
                mesh=mesh),
    lambda: fit(net, (x, y), epochs=1, batch_size=12, progress=False, on_device=True,
                mesh=mesh),
    lambda: step(ts, (x[:12], y[:12])),
]
out = []
for attempt in tries:
    try:
        attempt()
        out.append(["no error", ""])
    except Exception as err:
        out.append([type(err).__name__, str(err)])
print("RESULT " + json.dumps(out))
"""


def _eight_devices_indivisible(tmp: Path) -> None:
    """Five ways to give a batch of 12 to 8 devices; each a ValueError before any compile."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _EIGHT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads(lines[-1][len("RESULT ") :])
    assert [kind for kind, _ in results] == ["ValueError"] * 5, results
    # Each try is refused by its own check (the train step's by the batch placement).
    callers = ["shard_batch:", "process_batch_slice:", "fit:", "fit:", "shard_batch:"]
    assert [message.split(" ")[0] for _, message in results] == callers, results
    raise ValueError("\n".join(message for _, message in results))


CASES = [
    Case(
        "distributed",
        "mesh_no_devices",
        "data_mesh(devices=[])",
        lambda _: D.data_mesh(devices=[]),
        ValueError,
        ["data_mesh: devices is empty", "pass at least one device", "leave devices unset"],
    ),
    Case(
        "distributed",
        "mesh_duplicate_devices",
        "data_mesh([d, d]): the same device twice",
        lambda _: D.data_mesh([jax.devices()[0]] * 2),
        ValueError,
        ["more than once", "a mesh holds each device once", "2 entries for 1 devices"],
    ),
    Case(
        "distributed",
        "mesh_device_ids",
        "data_mesh([0, 1]): device numbers instead of devices",
        lambda _: D.data_mesh([0, 1]),
        TypeError,
        ["devices must be jax.Device objects", "got int 0"],
    ),
    Case(
        "distributed",
        "shard_batch_one_device",
        "shard_batch of a batch of 3 on a mesh of 1 device",
        _valid_one_device,
        valid="every batch size splits over one device; the global arrays equal the batch",
    ),
    Case(
        "distributed",
        "eight_devices_indivisible",
        "a batch of 12 on 8 devices: shard_batch, process_batch_slice, fit(mesh=mesh) (both "
        "loops), a train step made with mesh=mesh",
        _eight_devices_indivisible,
        ValueError,
        [
            "shard_batch: the batch of 12 rows does not split over the 8 devices",
            "process_batch_slice: the global batch of 12 does not split",
            "fit: batch_size 12 does not split over the 8 devices of mesh axis 'data'",
            "12 is not a multiple of 8",
            "a multiple of 8 (e.g. 8 or 16), or drop the last 4 rows",
        ],
    ),
    Case(
        "distributed",
        "shard_batch_rows_differ",
        "shard_batch((x[:8], y[:7])): images and labels of different lengths",
        lambda _: D.shard_batch((np.zeros((8, 2)), np.zeros(7)), _mesh()),
        ValueError,
        ["different numbers of rows", "{'[0]': 8, '[1]': 7}", "from the same rows"],
    ),
    Case(
        "distributed",
        "shard_batch_scalar_leaf",
        'shard_batch({"x": x, "weight": 1.0}): a leaf without a batch axis',
        lambda _: D.shard_batch({"x": np.zeros((4, 2)), "weight": 1.0}, _mesh()),
        ValueError,
        ["batch leaf ['weight'] is a scalar", "leading batch axis"],
    ),
    Case(
        "distributed",
        "unknown_axis",
        'shard_batch(batch, mesh, axis_name="batch") on a mesh with the axis "data"',
        lambda _: D.shard_batch(np.zeros(4), _mesh(), axis_name="batch"),
        ValueError,
        ["the mesh has no axis 'batch'", "its axes are ('data',)"],
    ),
    Case(
        "distributed",
        "batch_slice_zero",
        "process_batch_slice(0, mesh)",
        lambda _: D.process_batch_slice(0, _mesh()),
        ValueError,
        ["process_batch_slice: global_batch_size must be an int >= 1", "got 0"],
    ),
    Case(
        "distributed",
        "batch_slice_float",
        "process_batch_slice(32.0, mesh)",
        lambda _: D.process_batch_slice(32.0, _mesh()),
        TypeError,
        ["global_batch_size must be an int", "got float 32.0"],
    ),
    Case(
        "distributed",
        "fsdp_zero_shards",
        "fsdp_spec(shape, 0)",
        lambda _: D.fsdp_spec((8, 8), 0),
        ValueError,
        ["fsdp_spec: num_shards must be an int >= 1", "got 0"],
    ),
    Case(
        "distributed",
        "env_not_an_int",
        "JCNN_NUM_PROCESSES=two",
        _initialize(JCNN_NUM_PROCESSES="two", JCNN_PROCESS_ID="0", JCNN_COORDINATOR="h:1"),
        ValueError,
        ["JCNN_NUM_PROCESSES='two' is not an integer", "whole number"],
    ),
    Case(
        "distributed",
        "process_id_out_of_range",
        "JCNN_NUM_PROCESSES=2 with JCNN_PROCESS_ID=2 (ids are 0 and 1)",
        _initialize(JCNN_NUM_PROCESSES="2", JCNN_PROCESS_ID="2", JCNN_COORDINATOR="h:1"),
        ValueError,
        ["process_id 2 is not in 0..1", "num_processes=2", "JCNN_PROCESS_ID"],
    ),
    Case(
        "distributed",
        "zero_processes",
        "JCNN_NUM_PROCESSES=0",
        _initialize(JCNN_NUM_PROCESSES="0"),
        ValueError,
        ["num_processes must be an int >= 1", "got 0"],
    ),
    Case(
        "distributed",
        "no_coordinator",
        "JCNN_NUM_PROCESSES=2 without JCNN_COORDINATOR",
        _initialize(JCNN_NUM_PROCESSES="2", JCNN_PROCESS_ID="1"),
        ValueError,
        ["a multi-process run needs coordinator_address", "JCNN_COORDINATOR"],
    ),
]
