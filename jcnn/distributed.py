"""Data-parallel training on JAX's own engine: a ``Mesh``, ``NamedSharding``s and ``jax.jit``.

The model code does not change. The batch is split along the mesh axis ``"data"``; params,
layer state and optimiser state are replicated (or, with ``fsdp=True``, each large parameter is
split along its largest divisible axis). The train step is :func:`jcnn.train.train_step`,
compiled once with those shardings: XLA inserts the all-reduce of the gradients, and the
``lax.pmean`` of ``BatchNorm`` over the vmapped ``"batch"`` axis covers the GLOBAL batch, because
under ``jit`` the vmap spans every example whatever device holds it. Nothing here averages by
hand::

    jcnn.distributed.initialize()                  # no-op for one process
    mesh = jcnn.distributed.data_mesh()            # all devices of all processes, axis "data"
    ts = jcnn.distributed.replicate(create_train_state(net, (28, 28, 1), opt), mesh)
    step = jcnn.distributed.make_sharded_train_step(net.apply, loss, opt, mesh)
    rows = jcnn.distributed.process_batch_slice(global_batch_size, mesh)   # this process's rows
    batch = jcnn.distributed.shard_batch((x[rows], y[rows]), mesh)          # global arrays
    ts, metrics = step(ts, batch)

With one process, ``rows`` is the whole batch. With many (one per host, after
:func:`initialize`), each process loads only its rows and
``jax.make_array_from_process_local_data`` assembles the global batch without copying data
between hosts.

The training loop is :func:`jcnn.fit.fit`'s: :func:`sharded_steps` is its step factory for a
mesh (``fit(net, (x, y), on_device=False, steps=sharded_steps(mesh))``), and
:func:`fit_sharded` is that call.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

try:
    from jax.sharding import AxisType
except ImportError:  # jax < 0.5: every mesh axis is "auto"
    AxisType = None

from jcnn.fit import fit
from jcnn.layers.core import Layer
from jcnn.losses import softmax_cross_entropy
from jcnn.shapes import is_int
from jcnn.train import (
    Batch,
    LossFn,
    StepFactory,
    Steps,
    StepSpec,
    TrainState,
    default_metrics,
    make_eval_step,
    train_step,
)

DATA_AXIS = "data"
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
    """None, or ``value`` checked by :func:`_int`."""
    return None if value is None else _int(name, value, minimum=minimum, caller=caller)


def _int(name: str, value: Any, *, minimum: int, caller: str = "jcnn.distributed") -> int:
    """``value`` as an int >= ``minimum`` (NumPy ints too; bools and floats refused)."""
    if not is_int(value):
        raise TypeError(f"{caller}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{caller}: {name} must be an int >= {minimum}, got {int(value)}")
    return int(value)


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


def _axis_size(mesh: Mesh, axis_name: str, caller: str) -> int:
    """The size of ``mesh``'s axis ``axis_name``; ValueError listing the axes if it has none."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{caller}: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis_name not in mesh.shape:
        raise ValueError(
            f"{caller}: the mesh has no axis {axis_name!r}; its axes are {tuple(mesh.axis_names)}"
            " (pass axis_name=... or build the mesh with data_mesh())"
        )
    return int(mesh.shape[axis_name])


def _indivisible(caller: str, subject: str, rows: int, n: int, devices: str) -> ValueError:
    """The error for ``subject`` (``rows`` rows) that does not split over ``n`` ``devices``."""
    lower, upper = rows // n * n, -(-rows // n) * n
    fix = f"use a batch size that is a multiple of {n} (e.g. {upper})"
    if lower:
        fix = f"use a batch size that is a multiple of {n} (e.g. {lower} or {upper}), or drop "
        fix += f"the last {rows % n} rows"
    return ValueError(
        f"{caller}: {subject} does not split over the {n} {devices} ({rows} is not a multiple "
        f"of {n}); {fix}"
    )


def batch_sharding(mesh: Mesh, *, axis_name: str = DATA_AXIS) -> NamedSharding:
    """Splits the leading (batch) axis of an array across ``axis_name``."""
    return NamedSharding(mesh, P(axis_name))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """One full copy of the array on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def fsdp_spec(
    shape: Sequence[int], num_shards: int, *, axis_name: str = DATA_AXIS, min_size: int = 2**14
) -> P:
    """The FSDP partition of one array: its largest axis divisible by ``num_shards``.

    Arrays with fewer than ``min_size`` elements, or no divisible axis, stay replicated (their
    all-gather would cost more than the memory saved). Ties go to the earliest axis.

    Example:
        >>> fsdp_spec((5, 5, 64, 128), 8, min_size=0)
        P(None, None, None, 'data')
    """
    num_shards = _int("num_shards", num_shards, minimum=1, caller="fsdp_spec")
    size = int(np.prod(shape, dtype=np.int64))
    divisible = [i for i, n in enumerate(shape) if n % num_shards == 0 and n >= num_shards]
    if num_shards <= 1 or size < min_size or not divisible:
        return P()
    axis = max(divisible, key=lambda i: (shape[i], -i))
    return P(*(axis_name if i == axis else None for i in range(len(shape))))


def train_state_shardings(
    ts: Any, mesh: Mesh, *, fsdp: bool = False, axis_name: str = DATA_AXIS, min_size: int = 2**14
) -> Any:
    """``NamedSharding`` per leaf of a train state: replicated, or FSDP for params and opt state.

    With ``fsdp=True`` every leaf of ``params`` and ``opt_state`` gets :func:`fsdp_spec` (the
    optimiser's moments have the params' shapes, so they are split the same way); layer state,
    step and rng stay replicated. Works on any pytree of arrays (or ``ShapeDtypeStruct``).
    """
    n = _axis_size(mesh, axis_name, "train_state_shardings")

    def spec(leaf):
        return NamedSharding(
            mesh, fsdp_spec(np.shape(leaf), n, axis_name=axis_name, min_size=min_size)
        )

    full = replicated_sharding(mesh)
    if not isinstance(ts, TrainState):
        return jax.tree.map(spec if fsdp else (lambda _: full), ts)
    split = spec if fsdp else (lambda _: full)
    return TrainState(
        params=jax.tree.map(split, ts.params),
        state=jax.tree.map(lambda _: full, ts.state),
        opt_state=jax.tree.map(split, ts.opt_state),
        step=full,
        rng=full,
    )


def _put_global(value: Any, sharding: NamedSharding) -> jax.Array:
    """Places an array that every process holds in full (same seed) under a global sharding."""
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_params(
    ts: Any, mesh: Mesh, *, fsdp: bool = True, axis_name: str = DATA_AXIS, min_size: int = 2**14
) -> Any:
    """Places a train state (or any pytree) on ``mesh`` per :func:`train_state_shardings`.

    Every process must pass the same values (create the state with the same seed): each keeps
    only the pieces its devices hold. ``fsdp=False`` is :func:`replicate`.
    """
    shardings = train_state_shardings(ts, mesh, fsdp=fsdp, axis_name=axis_name, min_size=min_size)
    return jax.tree.map(_put_global, ts, shardings)


def replicate(ts: Any, mesh: Mesh) -> Any:
    """A full copy of every leaf of ``ts`` on every device of ``mesh`` (plain data parallelism)."""
    return shard_params(ts, mesh, fsdp=False)


def process_batch_slice(global_batch_size: int, mesh: Mesh, *, axis_name: str = DATA_AXIS) -> slice:
    """The rows of a global batch that THIS process loads (all of them for one process).

    Read off the batch sharding, so it matches what :func:`shard_batch` expects: process ``p``
    of ``P`` gets ``global_batch_size / P`` consecutive rows when the mesh keeps each process's
    devices together (as :func:`data_mesh` does).

    Raises:
        ValueError: the batch is not positive or does not split evenly over the devices (the
            message names both and the fix), or this process's rows are not contiguous (a mesh
            that interleaves processes).
        TypeError: ``global_batch_size`` is not an int.
    """
    n = _axis_size(mesh, axis_name, "process_batch_slice")
    global_batch_size = _int(
        "global_batch_size", global_batch_size, minimum=1, caller="process_batch_slice"
    )
    if global_batch_size % n:
        raise _indivisible(
            "process_batch_slice",
            f"the global batch of {global_batch_size}",
            global_batch_size,
            n,
            f"devices of mesh axis {axis_name!r}",
        )
    index_map = batch_sharding(mesh, axis_name=axis_name).addressable_devices_indices_map(
        (global_batch_size,)
    )
    rows = sorted({(s[0].start or 0, s[0].stop or global_batch_size) for s in index_map.values()})
    start, stop = rows[0][0], rows[-1][1]
    if sum(b - a for a, b in rows) != stop - start:
        raise ValueError(f"process_batch_slice: this process's rows {rows} are not contiguous")
    return slice(start, stop)


def _check_batch(batch: Any, n: int, caller: str, devices: str) -> None:
    """ValueError unless every leaf of ``batch`` has the same number of rows, a multiple of n."""
    leaves = jax.tree_util.tree_flatten_with_path(batch)[0]
    if not leaves:
        raise ValueError(f"{caller}: the batch holds no arrays")
    rows = {}
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path) or "the batch"
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(
                f"{caller}: batch leaf {name} is a scalar; every leaf of a batch needs a leading "
                "batch axis"
            )
        rows[name] = shape[0]
    if len(set(rows.values())) > 1:
        raise ValueError(
            f"{caller}: the leaves of the batch have different numbers of rows {rows}; images "
            "and labels must come from the same rows"
        )
    count = next(iter(rows.values()))
    if count % n:
        raise _indivisible(caller, f"the batch of {count} rows", count, n, devices)


def shard_batch(local_batch: Any, mesh: Mesh, *, axis_name: str = DATA_AXIS) -> Any:
    """Global arrays, split along ``axis_name``, from each process's rows of the batch.

    Args:
        local_batch: a pytree of host arrays holding this process's rows
            (``batch[process_batch_slice(...)]``); with one process, the whole batch.
        mesh: the data mesh.
        axis_name: the mesh axis the batch is split along.

    Shapes:
        each leaf ``(B_local, ...)`` -> global ``(B_local * num_processes, ...)``.

    Raises:
        ValueError: the leaves' row counts differ, a leaf has no batch axis, ``mesh`` has no
            axis ``axis_name``, or ``B_local`` is not a multiple of this process's devices on
            the axis (the message names the batch size, the device count and the fix).

    Example:
        >>> batch = shard_batch((np.zeros((3, 2)), np.zeros(3)), data_mesh(jax.devices()[:1]))
        >>> batch[0].shape
        (3, 2)
    """
    n = _axis_size(mesh, axis_name, "shard_batch")
    sharding = batch_sharding(mesh, axis_name=axis_name)
    local = n * len(sharding.addressable_devices) // mesh.size  # this process's share of n
    devices = f"devices of mesh axis {axis_name!r}"
    if local != n:
        devices = f"devices of this process on mesh axis {axis_name!r} ({n} in all)"
    _check_batch(local_batch, local, "shard_batch", devices)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


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
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """:func:`jcnn.train.train_step` compiled for ``mesh``: ``step(ts, batch) -> (ts, metrics)``.

    ``jax.jit`` gets ``in_shardings``/``out_shardings``: the batch split along ``axis_name``,
    the train state as :func:`train_state_shardings` (replicated, or FSDP with ``fsdp=True``),
    metrics replicated. So the new state comes back with the same layout and the step compiles
    once per train-state structure. ``ts`` should come from :func:`replicate` /
    :func:`shard_params` with the same ``fsdp``, and ``batch`` from :func:`shard_batch`.
    ``compiler_options`` go to ``jax.jit`` (e.g. :func:`jcnn.remat.compiler_options` on CPU).
    ``step.lower(ts, batch)`` gives the lowered step, for ``.compile().memory_analysis()``.
    """
    compiled: dict[Any, Callable] = {}

    def step_fn(ts, batch):
        return train_step(apply, loss_fn, optimizer, ts, batch, metrics_fn)

    def jitted(ts: TrainState) -> Callable:
        leaves, treedef = jax.tree.flatten(ts)
        key = (treedef, tuple(np.shape(x) for x in leaves))
        if key not in compiled:
            ts_sh = train_state_shardings(
                ts, mesh, fsdp=fsdp, axis_name=axis_name, min_size=min_size
            )
            data = batch_sharding(mesh, axis_name=axis_name)
            compiled[key] = jax.jit(
                step_fn,
                in_shardings=(ts_sh, data),
                out_shardings=(ts_sh, replicated_sharding(mesh)),
                donate_argnums=(0,) if donate else (),
                compiler_options=compiler_options,
            )
        return compiled[key]

    n = _axis_size(mesh, axis_name, "make_sharded_train_step")

    def step(ts: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        _check_batch(batch, n, "sharded train step", f"devices of mesh axis {axis_name!r}")
        return jitted(ts)(ts, batch)

    # step.lower(ts, batch).compile().memory_analysis(): per-device bytes of the compiled step.
    step.lower = lambda ts, batch: jitted(ts).lower(ts, batch)
    return step


def host_value(x: jax.Array) -> np.ndarray:
    """A full numpy copy of a global array on every process (all-gathers split arrays)."""
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def sharded_steps(
    mesh: Mesh,
    *,
    fsdp: bool = False,
    min_size: int = 2**14,
    axis_name: str = DATA_AXIS,
    compiler_options: dict[str, Any] | None = None,
) -> StepFactory:
    """The step factory of data-parallel training on ``mesh``, for ``jcnn.fit.fit(steps=...)``.

    The factory's :class:`jcnn.train.Steps`: :func:`make_sharded_train_step` as the train step,
    the train state placed by :func:`shard_params` (replicated, or FSDP with ``fsdp=True``),
    each batch by :func:`shard_batch` from this process's :func:`process_batch_slice` of it,
    and a plain ``jax.jit`` eval step. There is no on-device epoch: run ``fit`` with
    ``on_device=False``.

    Example:
        >>> from jcnn.fit import fit
        >>> x, y = np.ones((32, 3), np.float32), np.zeros(32, np.int32)
        >>> result = fit(L.serial(L.Dense(2)), (x, y), epochs=1, batch_size=16, progress=False,
        ...              on_device=False, steps=sharded_steps(data_mesh()))
        >>> int(result.train_state.step)
        2
    """

    n = _axis_size(mesh, axis_name, "sharded_steps")

    def factory(spec: StepSpec) -> Steps:
        if spec.transform is not None:
            raise ValueError("sharded_steps: transform needs the on-device loop, which it lacks")
        if spec.batch_size % n:
            raise _indivisible(
                "sharded_steps",
                f"batch_size {spec.batch_size}",
                spec.batch_size,
                n,
                f"devices of mesh axis {axis_name!r}",
            )
        return Steps(
            train_step=make_sharded_train_step(
                spec.apply,
                spec.loss_fn,
                spec.optimizer,
                mesh,
                fsdp=fsdp,
                min_size=min_size,
                metrics_fn=spec.metrics_fn,
                axis_name=axis_name,
                compiler_options=compiler_options,
            ),
            eval_step=make_eval_step(spec.apply, spec.loss_fn, metrics_fn=spec.metrics_fn),
            place_state=partial(
                shard_params, mesh=mesh, fsdp=fsdp, axis_name=axis_name, min_size=min_size
            ),
            place_data=partial(shard_batch, mesh=mesh, axis_name=axis_name),
            batch_rows=process_batch_slice(spec.batch_size, mesh, axis_name=axis_name),
        )

    return factory


def fit_sharded(
    layer: Layer,
    train: tuple[np.ndarray, np.ndarray],
    *,
    mesh: Mesh | None = None,
    optimizer: optax.GradientTransformation | None = None,
    loss_fn: LossFn = softmax_cross_entropy,
    metrics_fn: Callable[..., dict] = default_metrics,
    epochs: int = 1,
    batch_size: int = 128,
    seed: int = 0,
    fsdp: bool = False,
    min_size: int = 2**14,
    train_state: TrainState | None = None,
    compiler_options: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], bool | None] | None = None,
) -> tuple[TrainState, dict[str, list[float]]]:
    """Epochs of data-parallel training: :func:`jcnn.fit.fit`'s host loop on a mesh.

    ``fit(..., on_device=False, progress=False, steps=sharded_steps(mesh, ...))``; for its other
    options (validation, checkpoints, frozen params, hooks) call ``fit`` so. ``batch_size`` is
    the GLOBAL batch. Every process passes the same ``train`` arrays (or memory-maps of them)
    and reads only its rows of each batch; the shuffling is
    :func:`jcnn.train.epoch_permutation` of ``(seed, epoch)``, the same as ``fit``, so a run
    gives the same params on any number of devices (up to float reduction order). The given
    ``train_state`` is copied onto the mesh (the caller's arrays survive).

    Returns:
        ``(train_state, history)``, history holding per-epoch ``epoch``, ``train_loss`` (and the
        other metrics) and ``seconds``.
    """
    steps = sharded_steps(
        mesh or data_mesh(), fsdp=fsdp, min_size=min_size, compiler_options=compiler_options
    )
    result = fit(
        layer,
        train,
        optimizer=optimizer,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        on_device=False,
        train_state=train_state,
        progress=False,
        on_epoch_end=on_epoch_end,
        steps=steps,
    )
    return result.train_state, result.history
