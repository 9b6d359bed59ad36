"""Where a run's arrays live: one device, or a ``Mesh`` (data parallel, replicated or FSDP).

The batch is split along the mesh axis ``"data"``; params, layer state and optimiser state are
replicated (or, with ``fsdp=True``, each large parameter and its optimiser moments are split
along their largest divisible axis). A step compiled with these shardings is data parallel:
XLA inserts the all-reduce of the gradients, and BatchNorm's ``lax.pmean`` over the vmapped
``"batch"`` axis covers the GLOBAL batch, because under ``jit`` the vmap spans every example
whatever device holds it. Nothing here averages by hand.

:class:`Placement` is what :func:`jcnn.training.make_train_step` and the loops use; the
functions below it are the pieces, also public in :mod:`jcnn.distributed`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jcnn.layers.arguments import int_at_least
from jcnn.training.state import TrainState

DATA_AXIS = "data"


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
    num_shards = int_at_least(num_shards, "fsdp_spec: num_shards", 1)
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

    With ``fsdp=True`` every leaf of ``params``, ``opt_state`` and ``ema`` gets :func:`fsdp_spec` (the
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
    return TrainState(  # a TrainState of shardings
        params=jax.tree.map(split, ts.params),
        state=jax.tree.map(lambda _: full, ts.state),
        opt_state=jax.tree.map(split, ts.opt_state),
        step=full,  # type: ignore[arg-type]
        rng=full,  # type: ignore[arg-type]
        ema=jax.tree.map(split, ts.ema),  # the average is laid out as the params
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
    global_batch_size = int_at_least(global_batch_size, "process_batch_slice: global_batch_size", 1)
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
    rows = sorted(
        {(s[0].start or 0, s[0].stop or global_batch_size) for s in index_map.values() if s}
    )
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
        >>> mesh = jcnn.distributed.data_mesh(jax.devices()[:1])
        >>> batch = shard_batch((np.zeros((3, 2)), np.zeros(3)), mesh)
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


def host_value(x: jax.Array) -> np.ndarray:
    """A full numpy copy of a global array on every process (all-gathers split arrays)."""
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run's train state and batches live: one device (``mesh=None``) or a mesh.

    Hashable (a mesh is), so steps built on equal placements share their compiled programs.

    Attributes:
        mesh: None for the default device; else the ``jax.sharding.Mesh`` whose axis
            ``axis_name`` splits the batch.
        fsdp: split large params, their optimiser moments and their EMA over the axis
            (:func:`fsdp_spec`) instead of replicating them.
        axis_name: the mesh axis of the batch.
        min_size: arrays smaller than this stay replicated under FSDP.

    Example:
        >>> Placement().devices == 1
        True
    """

    mesh: Mesh | None = None
    fsdp: bool = False
    axis_name: str = DATA_AXIS
    min_size: int = 2**14

    def __post_init__(self) -> None:
        if self.mesh is not None:
            _axis_size(self.mesh, self.axis_name, "make_train_step")

    @property
    def devices(self) -> int:
        """Devices the batch is split over (1 without a mesh)."""
        return 1 if self.mesh is None else int(self.mesh.shape[self.axis_name])

    @property
    def platform(self) -> str:
        """The platform of the devices (``"cpu"``, ``"gpu"``, ``"tpu"``)."""
        if self.mesh is None:
            return jax.devices()[0].platform
        return self.mesh.devices.flat[0].platform

    def check_batch_size(self, batch_size: int, caller: str) -> None:
        """ValueError unless ``batch_size`` splits evenly over the devices."""
        if batch_size % self.devices:
            raise _indivisible(
                caller,
                f"batch_size {batch_size}",
                batch_size,
                self.devices,
                f"devices of mesh axis {self.axis_name!r}",
            )

    def state_shardings(self, ts: Any) -> Any:
        """The shardings of ``ts`` (:func:`train_state_shardings`); None without a mesh."""
        if self.mesh is None:
            return None
        return train_state_shardings(
            ts, self.mesh, fsdp=self.fsdp, axis_name=self.axis_name, min_size=self.min_size
        )

    def batch_sharding(self) -> NamedSharding | None:
        """The sharding of a batch (rows split over the axis); None without a mesh."""
        return None if self.mesh is None else batch_sharding(self.mesh, axis_name=self.axis_name)

    def place_state(self, ts: Any) -> Any:
        """A placed COPY of ``ts`` (steps donate their input, so the caller's arrays survive)."""
        if self.mesh is None:
            return jax.tree.map(lambda a: jax.numpy.array(a, copy=True), ts)
        return shard_params(
            ts, self.mesh, fsdp=self.fsdp, axis_name=self.axis_name, min_size=self.min_size
        )

    def is_placed(self, ts: Any, shardings: Any) -> bool:
        """Whether every leaf of ``ts`` is a ``jax.Array`` with the sharding in ``shardings``."""
        leaves = jax.tree.leaves(ts)
        targets = jax.tree.leaves(shardings)
        return len(leaves) == len(targets) and all(
            isinstance(a, jax.Array) and a.sharding == s for a, s in zip(leaves, targets)
        )

    def place_batch(self, batch: Any) -> Any:
        """This process's rows of a host batch as (global) device arrays."""
        if self.mesh is None:
            return jax.device_put(batch)
        sharding = self.batch_sharding()
        leaves = jax.tree.leaves(batch)
        if all(isinstance(a, jax.Array) and a.sharding == sharding for a in leaves):
            return batch
        return shard_batch(batch, self.mesh, axis_name=self.axis_name)

    def place_dataset(self, arrays: Any) -> Any:
        """A whole data set on the devices, for the on-device loop: a full copy on each device
        of the mesh (each step then gathers its rows locally, with no communication)."""
        if self.mesh is None:
            return jax.device_put(arrays)
        full = replicated_sharding(self.mesh)
        return jax.tree.map(lambda a: _put_global(a, full), arrays)

    def batch_rows(self, global_batch_size: int) -> slice:
        """The rows of a global batch this process loads (:func:`process_batch_slice`)."""
        if self.mesh is None:
            return slice(None)
        return process_batch_slice(global_batch_size, self.mesh, axis_name=self.axis_name)

    def constrain_batch(self, batch: Any) -> Any:
        """Inside a compiled step: keep the batch split over the axis (a no-op without a mesh)."""
        if self.mesh is None:
            return batch
        return jax.lax.with_sharding_constraint(batch, self.batch_sharding())
