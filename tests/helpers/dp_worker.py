"""Worker for the multi-device and multi-process tests of ``jcnn.distributed``.

Run as a script: the number of host devices is an XLA flag that must be set before JAX is
imported, so each device count needs its own process::

    python tests/helpers/dp_worker.py --devices 8 --out run.npz
    python tests/helpers/dp_worker.py --devices 1 --num-processes 2 --process-id 0 \
        --coordinator 127.0.0.1:12345 --out p0.npz --runs ref,dp,ckpt --ckpt /tmp/ckpt

It trains the course CNN for a few steps on a fixed synthetic global batch in the runs asked
for: ``ref`` (plain single-device ``jcnn.make_train_step``, process 0 only), ``dp`` (the same
builder with ``mesh=``, params replicated), ``fsdp`` (params split), ``ckpt`` (save with
``jcnn.checkpoint`` from every process, restore), ``bn`` (one step of a BatchNorm net), ``fit``
(two epochs of ``jcnn.fit(..., mesh=mesh)`` of a small dense net on those batches, with the host
loop (``fit_dp``) and the on-device loop (``fit_dev``), and plain ``fit`` without a mesh on
process 0 (``fit_ref``)), and writes every result to an ``.npz`` keyed ``"<run>/<param path>"``.
The comparisons are in the tests.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8, help="host devices in this process")
    parser.add_argument("--out", required=True, help="where to write the .npz of results")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32, help="global batch size")
    parser.add_argument("--coordinator", default=None, help="host:port for jax.distributed")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--ckpt", default=None, help="checkpoint folder (save and restore)")
    parser.add_argument("--optimize", action="store_true", help="default XLA -O level")
    parser.add_argument(
        "--runs", default="ref,dp,fsdp,bn", help="comma list of ref, dp, fsdp, bn, ckpt, fit"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    # Device count before JAX starts; LLVM -O0 because compiling, not running, is the cost of
    # these tiny steps (about 5x less CPU time on init, 1.5x on a step). Reference and parallel
    # runs compile with the same flags.
    flags = f" --xla_force_host_platform_device_count={args.devices}"
    if not args.optimize:
        flags += " --xla_backend_optimization_level=0"
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + flags
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import numpy as np
    import optax

    from jcnn import distributed as D
    from jcnn import layers as L
    from jcnn.models.course import cnn
    from jcnn.training import (
        Placement,
        TrainStep,
        create_train_state,
        fit,
        make_train_step,
        param_path,
    )
    from jcnn.training.losses import softmax_cross_entropy
    from jcnn.training.step import make_update

    if args.num_processes > 1:
        D.initialize(
            args.coordinator, args.num_processes, args.process_id, initialization_timeout=60
        )
    assert jax.process_count() == args.num_processes, jax.process_count()
    assert jax.local_device_count() == args.devices, jax.local_device_count()

    out: dict[str, np.ndarray] = {
        "num_devices": np.asarray(jax.device_count()),
        "process_count": np.asarray(jax.process_count()),
    }

    def record(run: str, tree) -> None:
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            out[f"{run}/{param_path(path)}"] = D.host_value(leaf)

    # Every process builds the same global data and state from the same seeds.
    runs = set(args.runs.split(","))
    first = jax.process_index() == 0
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(args.steps, args.batch, 28, 28, 1)).astype(np.float32)
    ys = rng.integers(0, 10, size=(args.steps, args.batch)).astype(np.int32)
    net, opt = cnn(), optax.adam(3e-3)
    # One compiled init instead of dozens of eager initializer ops (compile time dominates here).
    ts0 = jax.jit(lambda: create_train_state(net, (28, 28, 1), opt, seed=0))()
    mesh = D.data_mesh()
    rows = D.process_batch_slice(args.batch, mesh)
    out["rows"] = np.asarray([rows.start, rows.stop])

    if "ref" in runs and first:
        # Reference: one device, no mesh.
        ref_step = make_train_step(net.apply, softmax_cross_entropy, opt, donate=False)
        ts = jax.device_put(ts0, jax.local_devices()[0])
        for i in range(args.steps):
            ts, _ = ref_step(ts, (xs[i], ys[i]))
        record("ref", ts.params)

    for run, fsdp in (("dp", False), ("fsdp", True)):
        if run not in runs:
            continue
        ts = D.shard_params(ts0, mesh, fsdp=fsdp, min_size=0)
        if fsdp:
            # The course CNN's arrays are all below make_train_step's FSDP threshold (2**14
            # elements), which the builder does not expose: the step is built on a placement
            # that splits every divisible array.
            placement = Placement(mesh, fsdp=True, min_size=0)
            update = make_update(net.apply, softmax_cross_entropy, opt, placement=placement)
            step = TrainStep(update, placement, ema=None, donate=True, compiler_options=None)
        else:
            step = make_train_step(net.apply, softmax_cross_entropy, opt, mesh=mesh)
        for i in range(args.steps):
            ts, metrics = step(ts, D.shard_batch((xs[i][rows], ys[i][rows]), mesh))
        record(run, ts.params)
        out[f"{run}/loss"] = D.host_value(metrics["loss"])
        out[f"{run}/kernel_spec"] = np.asarray(str(ts.params["Conv_0"]["kernel"].sharding.spec))
        if "ckpt" in runs and args.ckpt:
            # Every process saves (orbax writes each array once) and restores into a template
            # with the same layout.
            from jcnn.training.checkpoint import Checkpointer

            ckpt = Checkpointer(os.path.join(args.ckpt, run), keep=2)
            ckpt.save(int(D.host_value(ts.step)), ts, meta={"epoch": 1, "index": 0})
            template = D.shard_params(ts0, mesh, fsdp=fsdp, min_size=0)
            restored, meta = ckpt.restore(template)
            ckpt.close()
            record(f"{run}_restored", restored.params)
            out[f"{run}_restored/meta_epoch"] = np.asarray(meta["epoch"])
            out[f"{run}_restored/kernel_spec"] = np.asarray(
                str(restored.params["Conv_0"]["kernel"].sharding.spec)
            )

    if "bn" in runs:
        # BatchNorm on the raw input: its running statistics are those of the global batch.
        # Row blocks of 4 are shifted by 0, 1, 2, ... so per-device statistics differ from the
        # global ones (the mean of per-device variances misses the spread of the block means).
        bn_net = L.serial(L.BatchNorm(), L.Conv(4, (3, 3)), L.Relu(), L.Flatten(), L.Dense(10))
        bx = rng.normal(size=(args.batch, 6, 6, 3)).astype(np.float32)
        bx += np.repeat(np.arange(args.batch // 4, dtype=np.float32), 4)[:, None, None, None]
        by = rng.integers(0, 10, size=(args.batch,)).astype(np.int32)
        bn_opt = optax.sgd(0.1)
        bn_ts0 = jax.jit(lambda: create_train_state(bn_net, (6, 6, 3), bn_opt, seed=1))()
        if first:
            bn_ref_step = make_train_step(bn_net.apply, softmax_cross_entropy, bn_opt, donate=False)
            ref_ts, _ = bn_ref_step(jax.device_put(bn_ts0, jax.local_devices()[0]), (bx, by))
            record("bn_ref_state", ref_ts.state)
            record("bn_ref_params", ref_ts.params)
        bn_step = D.make_sharded_train_step(bn_net.apply, softmax_cross_entropy, bn_opt, mesh)
        bn_ts, _ = bn_step(D.replicate(bn_ts0, mesh), D.shard_batch((bx[rows], by[rows]), mesh))
        record("bn_dp_state", bn_ts.state)
        record("bn_dp_params", bn_ts.params)
        out["bn_x"] = bx

    if "fit" in runs:
        # The one training loop on the mesh, both of its loops: the host loop (each process
        # loads its rows of every global batch) and the on-device one (the data on every device).
        fit_net, fit_opt = L.serial(L.Flatten(), L.Dense(10)), optax.sgd(0.1)
        data = (xs.reshape(-1, 28, 28, 1), ys.reshape(-1))  # steps * batch examples
        kwargs = dict(optimizer=fit_opt, epochs=2, batch_size=args.batch, seed=3, progress=False)
        for run, on_device in (("fit_dp", False), ("fit_dev", True)):
            result = fit(fit_net, data, mesh=mesh, on_device=on_device, **kwargs)
            record(run, result.train_state.params)
            out[f"{run}/train_loss"] = np.asarray(result.history["train_loss"])
            out[f"{run}/step"] = D.host_value(result.train_state.step)
            kernel = result.train_state.params["Dense_0"]["kernel"]
            out[f"{run}/kernel_devices"] = np.asarray(len(kernel.sharding.device_set))
        if first:
            ref = fit(fit_net, data, on_device=False, **kwargs)
            record("fit_ref", ref.train_state.params)
            out["fit_ref/train_loss"] = np.asarray(ref.history["train_loss"])

    np.savez(args.out, **out)
    if args.num_processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("dp_worker done")
    print(f"dp_worker: process {jax.process_index()} of {jax.process_count()} done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
