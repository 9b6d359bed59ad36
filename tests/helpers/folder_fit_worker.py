"""Subprocess for tests/data/test_stream_processes.py: ``jcnn.fit`` on an image folder over a
data mesh, as one of ``--processes`` jax.distributed processes with ``--devices`` CPU devices
each (each process reads its shard of the training and validation sources).

    python tests/helpers/folder_fit_worker.py --folder DIR --out p0.npz \
        [--processes 2 --process-id 0 --coordinator 127.0.0.1:PORT] [--devices 1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def small_net():  # noqa: ANN201
    """A conv net for the 3 colour classes of tests/data/test_image_folder.py's folders."""
    from jcnn import layers as L
    from jcnn.data import normalize_on_device

    return L.serial(
        normalize_on_device((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        L.Conv(4, 3, stride=2),
        L.Relu(),
        L.GlobalAvgPool(),
        L.Dense(3),
    )


def run(folder: str, mesh, seed: int = 0):  # noqa: ANN001, ANN201 - shared with the test
    """The run every process makes (and the test, with no mesh): 2 epochs, validation each."""
    import optax

    import jcnn
    from jcnn.data import image_folder

    net = small_net()
    train = image_folder(folder, image_size=16, batch_size=6, seed=seed)
    val = image_folder(folder, train=False, image_size=16, batch_size=4)  # 9: last batch 1 row
    return jcnn.fit(
        net, train, val=val, optimizer=optax.sgd(0.1), epochs=2, mesh=mesh, progress=False,
        seed=seed,
    )  # fmt: skip


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--coordinator", default=None)
    p.add_argument("--devices", type=int, default=1)
    args = p.parse_args(argv)
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

    import jax
    import numpy as np

    from jcnn import distributed as D

    if args.processes > 1:
        D.initialize(args.coordinator, args.processes, args.process_id, initialization_timeout=60)
    mesh = D.data_mesh()
    result = run(args.folder, mesh)
    params = jax.tree.leaves(result.train_state.params)
    np.savez(
        args.out,
        devices=mesh.size,
        processes=jax.process_count(),
        val_loss=np.asarray(result.history["val_loss"]),
        val_accuracy=np.asarray(result.history["val_accuracy"]),
        train_loss=np.asarray(result.history["train_loss"]),
        **{f"p{i}": np.asarray(a.addressable_data(0)) for i, a in enumerate(params)},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
