"""jcnn.distributed: shardings, initialize, and data-parallel training (``make_train_step`` and
``fit`` with ``mesh=``) on 8 host devices and on 2 processes (jax.distributed over gloo), compared
against plain single-device training.

The multi-device runs need ``--xla_force_host_platform_device_count`` before JAX starts, so they
run tests/helpers/dp_worker.py in subprocesses; every subprocess has a timeout, so a hang fails
the test instead of stalling the suite.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jcnn import distributed as D
from jcnn import layers as L
from jcnn.training import TrainState, create_train_state, fit, make_train_step

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "helpers" / "dp_worker.py"
TIMEOUT_S = 85
PARAMS = ["Conv_0/kernel", "Conv_0/bias", "Conv_1/kernel", "Conv_1/bias"]
PARAMS += ["Dense_0/kernel", "Dense_0/bias"]
FIT_PARAMS = ["Dense_0/kernel", "Dense_0/bias"]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(commands: list[list[str]], timeout: float = TIMEOUT_S) -> list[str]:
    """Starts all commands at once; kills every one of them if any is not done in time."""
    procs = [
        subprocess.Popen(
            cmd,
            cwd=REPO,
            env=worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for cmd in commands
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"dp_worker did not finish within {timeout} s (hung collective?)")
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    return outputs


# --- In-process: shardings and arguments ------------------------------------------------------


@pytest.mark.parametrize(
    "shape, n, min_size, expected",
    [
        ((5, 5, 64, 128), 8, 0, P(None, None, None, "data")),
        ((400, 10), 8, 0, P("data", None)),
        ((16, 16), 8, 0, P("data", None)),  # tie: the earliest axis
        ((10,), 8, 0, P()),  # nothing divisible
        ((3, 3, 64, 64), 8, 2**16, P()),  # too small to be worth splitting
        ((4,), 8, 0, P()),  # smaller than the mesh
        ((64,), 1, 0, P()),  # one device
    ],
)
def test_fsdp_spec_largest_divisible_axis(shape, n, min_size, expected):
    assert D.fsdp_spec(shape, n, min_size=min_size) == expected


def test_train_state_shardings_layout():
    mesh = D.data_mesh()
    ts = TrainState(
        params={"k": jax.ShapeDtypeStruct((8, 4), jnp.float32)},
        state={"mean": jax.ShapeDtypeStruct((4,), jnp.float32)},
        opt_state=({"k": jax.ShapeDtypeStruct((8, 4), jnp.float32)},),
        step=jax.ShapeDtypeStruct((), jnp.int32),
        rng=jax.ShapeDtypeStruct((2,), jnp.uint32),
    )
    sh = D.train_state_shardings(ts, mesh, fsdp=True, min_size=0)
    assert isinstance(sh, TrainState)
    assert all(s.mesh is mesh and s.spec == P() for s in jax.tree.leaves(sh))  # 1 device
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    assert D.process_batch_slice(12, mesh) == slice(0, 12)


def test_initialize_single_process_is_a_noop(monkeypatch):
    for name in (D.ENV_COORDINATOR, D.ENV_NUM_PROCESSES, D.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(D, "_on_tpu_vm", lambda: False)
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: called.append((a, k)))
    assert D.initialize() is False
    assert D.initialize(num_processes=1) is False
    monkeypatch.setenv(D.ENV_NUM_PROCESSES, "1")
    assert D.initialize() is False
    assert called == []


def test_initialize_reads_env_and_validates(monkeypatch):
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: called.append(k))
    monkeypatch.setattr(D, "_on_tpu_vm", lambda: False)
    monkeypatch.setenv(D.ENV_NUM_PROCESSES, "2")
    monkeypatch.delenv(D.ENV_PROCESS_ID, raising=False)
    monkeypatch.delenv(D.ENV_COORDINATOR, raising=False)
    with pytest.raises(ValueError, match="coordinator_address"):
        D.initialize()
    monkeypatch.setenv(D.ENV_COORDINATOR, "10.0.0.1:1234")
    monkeypatch.setenv(D.ENV_PROCESS_ID, "1")
    assert D.initialize(cpu_collectives=None) is True
    assert called[-1]["coordinator_address"] == "10.0.0.1:1234"
    assert (called[-1]["num_processes"], called[-1]["process_id"]) == (2, 1)
    assert D.initialize("h:1", 4, 3, cpu_collectives=None) is True  # arguments beat env
    assert (called[-1]["coordinator_address"], called[-1]["process_id"]) == ("h:1", 3)


def test_initialize_checks_its_settings_before_starting(monkeypatch):
    """Misuse (see tests/bad_inputs/cases_distributed.py) never reaches jax.distributed."""
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: called.append(k))
    monkeypatch.setattr(D, "_on_tpu_vm", lambda: False)
    for name in (D.ENV_COORDINATOR, D.ENV_NUM_PROCESSES, D.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="process_id 1 is not in 0..0"):
        D.initialize("h:1", 1, 1, cpu_collectives=None)
    with pytest.raises(TypeError, match="num_processes must be an int, got float 2.0"):
        D.initialize("h:1", 2.0, 1, cpu_collectives=None)
    monkeypatch.setenv(D.ENV_PROCESS_ID, "first")
    with pytest.raises(ValueError, match="JCNN_PROCESS_ID='first' is not an integer"):
        D.initialize("h:1", 2, cpu_collectives=None)
    assert called == []
    monkeypatch.delenv(D.ENV_PROCESS_ID)
    assert D.initialize("h:1", np.int64(2), np.int64(1), cpu_collectives=None) is True
    assert (called[-1]["num_processes"], called[-1]["process_id"]) == (2, 1)
    assert type(called[-1]["num_processes"]) is int


def test_sharded_step_checks_the_batch_before_compiling():
    mesh = D.data_mesh()
    net = L.serial(L.Dense(2))
    opt = optax.sgd(0.1)
    step = D.make_sharded_train_step(net.apply, lambda o, y: jnp.mean(o), opt, mesh)
    ts = D.replicate(create_train_state(net, (3,), opt), mesh)
    with pytest.raises(ValueError, match=r"different numbers of rows \{'\[0\]': 4, '\[1\]': 3\}"):
        step(ts, (np.ones((4, 3), np.float32), np.zeros(3, np.int32)))
    loss = lambda o, y: jnp.mean(o)  # noqa: E731
    with pytest.raises(ValueError, match="make_train_step: the mesh has no axis 'model'"):
        make_train_step(net.apply, loss, opt, mesh=mesh, axis_name="model")
    with pytest.raises(ValueError, match="the mesh has no axis 'model'"):
        D.make_sharded_train_step(net.apply, loss, opt, mesh, axis_name="model")


def test_initialize_on_tpu_autodetects(monkeypatch):
    for name in (D.ENV_COORDINATOR, D.ENV_NUM_PROCESSES, D.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: called.append((a, k)))
    monkeypatch.setattr(D, "_on_tpu_vm", lambda: True)
    assert D.initialize() is True
    ((args, kwargs),) = called
    assert args == () and set(kwargs) == {"initialization_timeout"}


@pytest.mark.parametrize("on_device", [False, True])
def test_fit_on_a_mesh_matches_fit_on_one_device(rng, on_device):
    """Same permutation, same steps: fit(mesh=) on a 1-device mesh reproduces fit without one,
    in both loops, and leaves the state on the mesh."""
    net = L.serial(L.Flatten(), L.Dense(8), L.Tanh(), L.Dense(3))
    x = rng.normal(size=(48, 2, 3, 1)).astype(np.float32)
    y = rng.integers(0, 3, 48).astype(np.int32)
    opt = optax.sgd(0.1)
    options = {"xla_backend_optimization_level": 0}

    # One compiled init for both runs; each run gets its own state.
    fresh = jax.jit(lambda: create_train_state(net, (2, 3, 1), opt), compiler_options=options)
    mesh = D.data_mesh()
    kwargs = dict(optimizer=opt, epochs=2, batch_size=16, on_device=on_device, progress=False)

    result = fit(net, (x, y), mesh=mesh, train_state=fresh(), **kwargs)
    ref = fit(net, (x, y), train_state=fresh(), **kwargs)
    ts, history = result.train_state, result.history
    assert len(history["train_loss"]) == 2
    np.testing.assert_allclose(history["train_loss"], ref.history["train_loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ts.params), jax.tree.leaves(ref.train_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert int(ts.step) == 6
    kernel = ts.params["Dense_0"]["kernel"]
    assert kernel.sharding.mesh == mesh and kernel.sharding.spec == P()


# --- 8 host devices in one process ------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("dp8") / "run.npz"
    cmd = [sys.executable, str(WORKER), "--devices", "8", "--out", str(out)]
    run_processes([cmd + ["--runs", "ref,dp,fsdp,bn,fit"]])
    return dict(np.load(out))


def test_eight_devices_dp_and_fsdp_params_equal_single_device(eight_devices):
    r = eight_devices
    assert int(r["num_devices"]) == 8 and list(r["rows"]) == [0, 32]
    for run in ("dp", "fsdp"):
        for name in PARAMS:
            assert rel_err(r[f"{run}/{name}"], r[f"ref/{name}"]) <= 1e-5, (run, name)
    # The params really were split in the FSDP run and replicated in the DP one.
    assert str(r["fsdp/kernel_spec"]) == str(P(None, None, None, "data"))
    assert str(r["dp/kernel_spec"]) == str(P())


FIT_RUNS = ("fit_dp", "fit_dev")  # fit(mesh=mesh): the host loop, the on-device loop


def assert_fit_on_mesh_matches_fit(sharded: dict, ref: dict) -> None:
    """fit(mesh=mesh), both loops, == plain fit without a mesh (host loop, one device)."""
    for run in FIT_RUNS:
        assert int(sharded[f"{run}/step"]) == 8, run  # 2 epochs of 4 global batches
        assert int(sharded[f"{run}/kernel_devices"]) == int(sharded["num_devices"]), run
        np.testing.assert_allclose(
            sharded[f"{run}/train_loss"], ref["fit_ref/train_loss"], rtol=1e-5
        )
        for name in FIT_PARAMS:
            assert rel_err(sharded[f"{run}/{name}"], ref[f"fit_ref/{name}"]) <= 1e-5, (run, name)


def test_eight_devices_fit_on_mesh_equals_fit(eight_devices):
    assert_fit_on_mesh_matches_fit(eight_devices, eight_devices)


def test_eight_devices_batchnorm_statistics_over_the_global_batch(eight_devices):
    r = eight_devices
    x = r["bn_x"].astype(np.float64)  # (32, 6, 6, 3); one step from mean 0, var 1, momentum 0.9
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    np.testing.assert_allclose(r["bn_dp_state/BatchNorm_0/mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["bn_dp_state/BatchNorm_0/var"], 0.9 + 0.1 * var, rtol=1e-5)
    for key in ("BatchNorm_0/mean", "BatchNorm_0/var"):
        assert rel_err(r[f"bn_dp_state/{key}"], r[f"bn_ref_state/{key}"]) <= 1e-5
    for key in ("BatchNorm_0/scale", "BatchNorm_0/offset", "Conv_0/kernel", "Dense_0/kernel"):
        assert rel_err(r[f"bn_dp_params/{key}"], r[f"bn_ref_params/{key}"]) <= 1e-5
    # Per-device statistics (4 examples each) would give a clearly different running variance:
    # the 8 row blocks are shifted by 0..7, a spread of block means the local variances miss.
    local_var = x.reshape(8, 4, 6, 6, 3).var((1, 2, 3)).mean(0)
    assert np.all(np.abs((0.9 + 0.1 * local_var) - r["bn_dp_state/BatchNorm_0/var"]) > 0.3)


# --- 2 processes, jax.distributed over gloo ---------------------------------------------------


def two_process_run(tmp_path: Path, devices: int, runs: str) -> list[dict[str, np.ndarray]]:
    port = free_port()
    commands = [
        [
            sys.executable,
            str(WORKER),
            "--devices",
            str(devices),
            "--num-processes",
            "2",
            "--process-id",
            str(pid),
            "--coordinator",
            f"127.0.0.1:{port}",
            "--out",
            str(tmp_path / f"p{pid}.npz"),
            "--ckpt",
            str(tmp_path / "ckpt"),
            "--runs",
            runs,
        ]
        for pid in range(2)
    ]
    run_processes(commands)
    return [dict(np.load(tmp_path / f"p{pid}.npz")) for pid in range(2)]


def test_two_processes_one_device_each_match_single_device(tmp_path):
    p0, p1 = two_process_run(tmp_path, devices=1, runs="ref,dp,ckpt,fit")
    assert int(p0["process_count"]) == 2 and int(p0["num_devices"]) == 2
    assert list(p0["rows"]) == [0, 16] and list(p1["rows"]) == [16, 32]
    for name in PARAMS:
        assert rel_err(p0[f"dp/{name}"], p0[f"ref/{name}"]) <= 1e-5, name
        np.testing.assert_array_equal(p1[f"dp/{name}"], p0[f"dp/{name}"])
        # Saved from both processes with jcnn.checkpoint.Checkpointer, restored by both.
        np.testing.assert_array_equal(p0[f"dp_restored/{name}"], p0[f"dp/{name}"])
        np.testing.assert_array_equal(p1[f"dp_restored/{name}"], p1[f"dp/{name}"])
    assert int(p0["dp_restored/meta_epoch"]) == 1
    assert sorted(os.listdir(tmp_path / "ckpt" / "dp")) == ["4"]
    # fit on 2 processes: the host loop loads each process's 16 rows of every batch of 32, the
    # on-device loop holds the data on both.
    assert_fit_on_mesh_matches_fit(p0, p0)
    for run in FIT_RUNS:
        for name in FIT_PARAMS:
            np.testing.assert_array_equal(p1[f"{run}/{name}"], p0[f"{run}/{name}"])


@pytest.mark.slow
def test_two_processes_four_devices_each_fsdp_batchnorm_checkpoint(tmp_path):
    p0, p1 = two_process_run(tmp_path, devices=4, runs="ref,dp,fsdp,bn,ckpt")
    assert int(p0["num_devices"]) == 8
    assert list(p0["rows"]) == [0, 16] and list(p1["rows"]) == [16, 32]
    for run in ("dp", "fsdp", "fsdp_restored"):
        for name in PARAMS:
            assert rel_err(p0[f"{run}/{name}"], p0[f"ref/{name}"]) <= 1e-5, (run, name)
            np.testing.assert_array_equal(p1[f"{run}/{name}"], p0[f"{run}/{name}"])
    assert str(p0["fsdp_restored/kernel_spec"]) == str(P(None, None, None, "data"))
    x = p0["bn_x"].astype(np.float64)
    np.testing.assert_allclose(
        p0["bn_dp_state/BatchNorm_0/var"], 0.9 + 0.1 * x.var((0, 1, 2)), rtol=1e-5
    )
