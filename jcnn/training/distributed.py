"""Data-parallel training on JAX's own engine: a ``Mesh``, ``NamedSharding``s and ``jax.jit``.

The model code does not change, and neither does the training code: give the mesh to the step
builder or to ``fit``::

    jcnn.distributed.initialize()                  # no-op for one process
    mesh = jcnn.distributed.data_mesh()            # all devices of all processes, axis "data"
    step = jcnn.make_train_step(net.apply, loss, opt, mesh=mesh)   # any estimator, EMA, ...
    ts, metrics = step(create_train_state(net, (28, 28, 1), opt), (x[rows], y[rows]))
    result = jcnn.fit(net, (x, y), mesh=mesh, transform=aug)        # both loops, on the mesh

The batch is split along the mesh axis ``"data"``; params, layer state and optimiser state are
replicated (or, with ``fsdp=True``, each large parameter split along its largest divisible
axis); XLA inserts the all-reduce of the gradients and BatchNorm's statistics cover the global
batch (:mod:`jcnn.training.placement`). With one process, ``rows`` is the whole batch; with
many (one per host, after :func:`initialize`), each process loads only its rows
(:func:`process_batch_slice`) and ``jax.make_array_from_process_local_data`` assembles the
global batch without copying data between hosts.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

try:
    from jax.sharding import AxisType
except ImportError:  # jax < 0.5: every mesh axis is "auto"
    AxisType = None  # type: ignore[misc, assignment]

from jcnn.layers.arguments import int_at_least
from jcnn.training.estimators import LossFn, default_metrics
from jcnn.training.placement import (
    DATA_AXIS,
    Placement,
    batch_sharding,
    fsdp_spec,
    host_value,
    process_batch_slice,
    replicate,
    replicated_sharding,
    shard_batch,
    shard_params,
    train_state_shardings,
)
from jcnn.training.step import TrainStep, make_train_step

__all__ = [
    "DATA_AXIS",
    "Placement",
    "batch_sharding",
    "data_mesh",
    "fsdp_spec",
    "host_value",
    "initialize",
    "make_sharded_train_step",
    "process_batch_slice",
    "replicate",
    "replicated_sharding",
    "shard_batch",
    "shard_params",
    "train_state_shardings",
]

ENV_COORDINATOR = "JCNN_COORDINATOR"
ENV_NUM_PROCESSES = "JCNN_NUM_PROCESSES"
ENV_PROCESS_ID = "JCNN_PROCESS_ID"


def _on_tpu_vm() -> bool:
    """True when libtpu is installed (a Cloud TPU VM), found without starting a JAX backend."""
    return importlib.util.find_spec("libtpu") is not None


def _env_int(name: str) -> int:
    """The environment variable ``name`` as an int; ValueError naming it otherwise."""
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"jcnn.distributed.initialize: {name}={text!r} is not an integer; set it to a whole "
            "number (or unset it)"
        ) from None


def _optional_int(
    name: str, value: Any, *, minimum: int, caller: str = "jcnn.distributed"
) -> int | None:
    """None, or ``value`` as an int >= ``minimum`` (:func:`~jcnn.layers.arguments.int_at_least`)."""
    return None if value is None else int_at_least(value, f"{caller}: {name}", minimum)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    cpu_collectives: str | None = "gloo",
    initialization_timeout: int = 300,
) -> bool:
    """Starts ``jax.distributed`` for a multi-process run; does nothing for a single process.

    Call it once per process, first thing, before any JAX computation. Each argument left
    ``None`` is read from the environment (``JCNN_COORDINATOR="host:port"``,
    ``JCNN_NUM_PROCESSES``, ``JCNN_PROCESS_ID``). When none is set at all and libtpu is
    installed (a Cloud TPU VM, one process per host of a pod slice), ``jax.distributed.initialize()``
    is called without arguments and detects the slice itself. Otherwise, or when the run has
    one process, nothing happens.

    Args:
        coordinator_address: ``"host:port"`` of process 0 (the coordinator).
        num_processes: number of processes in the run.
        process_id: this process's index, ``0 .. num_processes - 1``.
        local_device_ids: restricts this process to these local devices (GPU hosts).
        cpu_collectives: cross-process collectives of the CPU backend (``"gloo"``); set before
            initialising, as JAX requires. ``None`` leaves the setting alone.
        initialization_timeout: seconds to wait for every process to connect.

    Returns:
        True when ``jax.distributed`` was initialised (now or earlier), False for one process.

    Raises:
        ValueError: a multi-process run without a coordinator address or process id, an
            environment variable that is not an int, a ``process_id`` outside
            ``0 .. num_processes - 1``, or ``num_processes`` < 1.
    """
    if jax.distributed.is_initialized():
        return True
    env = os.environ
    coordinator_address = coordinator_address or env.get(ENV_COORDINATOR) or None
    if num_processes is None and env.get(ENV_NUM_PROCESSES):
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None and env.get(ENV_PROCESS_ID):
        process_id = _env_int(ENV_PROCESS_ID)
    caller = "jcnn.distributed.initialize"
    num_processes = _optional_int("num_processes", num_processes, minimum=1, caller=caller)
    process_id = _optional_int("process_id", process_id, minimum=0, caller=caller)
    nothing_given = coordinator_address is None and num_processes is None and process_id is None
    if nothing_given:
        if not _on_tpu_vm():
            return False
        jax.distributed.initialize(initialization_timeout=initialization_timeout)
        return True
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"jcnn.distributed.initialize: process_id {process_id} is not in 0..{num_processes - 1}"
            f" (num_processes={num_processes}; from the arguments or {ENV_PROCESS_ID} / "
            f"{ENV_NUM_PROCESSES}); give each process its index 0 .. num_processes - 1"
        )
    if num_processes == 1:
        return False
    if coordinator_address is None or process_id is None:
        raise ValueError(
            "jcnn.distributed.initialize: a multi-process run needs coordinator_address and "
            f"process_id (or {ENV_COORDINATOR} and {ENV_PROCESS_ID}); got "
            f"coordinator_address={coordinator_address!r}, process_id={process_id!r}"
        )
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
    )
    return True


def data_mesh(devices: Sequence[jax.Device] | None = None, *, axis_name: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process) named ``axis_name``.

    Devices keep their order (``jax.devices()`` lists them process by process), so each
    process's devices hold consecutive rows of the batch (see :func:`process_batch_slice`).
    The gradient all-reduce spans the whole axis, so the order does not change its cost.

    Raises:
        ValueError: ``devices`` is empty or lists a device twice.
        TypeError: an entry of ``devices`` is not a ``jax.Device``, or ``axis_name`` is not a
            string.

    Example:
        >>> mesh = data_mesh(jax.devices()[:1])
        >>> mesh.axis_names, mesh.size
        (('data',), 1)
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise TypeError(f"data_mesh: axis_name must be a non-empty str, got {axis_name!r}")
    listed = list(jax.devices() if devices is None else devices)
    if not listed:
        raise ValueError(
            "data_mesh: devices is empty; pass at least one device (e.g. jax.devices()), or "
            "leave devices unset to use every device"
        )
    bad = [d for d in listed if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(
            f"data_mesh: devices must be jax.Device objects (from jax.devices()), got "
            f"{type(bad[0]).__name__} {bad[0]!r}"
        )
    twice = sorted({str(d) for d in listed if listed.count(d) > 1})
    if twice:
        raise ValueError(
            f"data_mesh: devices lists {twice} more than once; a mesh holds each device once "
            f"(got {len(listed)} entries for {len(set(listed))} devices)"
        )
    array = np.asarray(listed)
    if AxisType is None:
        return Mesh(array, (axis_name,))
    return Mesh(array, (axis_name,), axis_types=(AxisType.Auto,))


def make_sharded_train_step(
    apply: Callable[..., Any],
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    mesh: Mesh,
    *,
    fsdp: bool = False,
    min_size: int = 2**14,
    metrics_fn: Callable[..., dict] = default_metrics,
    donate: bool = True,
    axis_name: str = DATA_AXIS,
    compiler_options: dict[str, Any] | None = None,
    **options: Any,
) -> TrainStep:
    """``jcnn.make_train_step(apply, loss_fn, optimizer, mesh=mesh, ...)`` (the older name).

    ``options`` are the builder's other choices (``microbatches``, ``privacy``, ``ema``,
    ``transform``, ``gradients``). ``step.lower(ts, batch)`` gives the lowered step, for
    ``.compile().memory_analysis()``.
    """
    return make_train_step(
        apply,
        loss_fn,
        optimizer,
        mesh=mesh,
        fsdp=fsdp,
        min_size=min_size,
        metrics_fn=metrics_fn,
        donate=donate,
        axis_name=axis_name,
        compiler_options=compiler_options,
        **options,
    )
