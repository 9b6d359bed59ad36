"""Subprocess for tests/data/test_stream_processes.py: one of two jax.distributed processes
reading its shard of a StreamSource and assembling the global batch on the 2-device mesh.

    python tests/helpers/stream_worker.py --process-id 0 --coordinator 127.0.0.1:PORT --out p0.npz
"""

from __future__ import annotations

import argparse
import functools
import os
import sys


def load(record: int, rng, *, size: int):  # a module-level load: worker processes pickle it
    del rng
    return __import__("numpy").full((size, size, 1), record % 256, dtype="uint8"), record


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--process-id", type=int, required=True)
    p.add_argument("--coordinator", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import numpy as np

    from jcnn import distributed as D
    from jcnn.data.stream import StreamSource, global_batch

    D.initialize(args.coordinator, 2, args.process_id, initialization_timeout=60)
    source = StreamSource(
        list(range(40)), functools.partial(load, size=2), batch_size=8, seed=5, workers=0
    )  # shard index and count from jax.distributed: process_index of process_count
    local = [(images, labels) for images, labels in source]  # one epoch
    mesh = D.data_mesh()
    images, labels = local[0]
    batch = global_batch((images, labels), mesh, axis_name=mesh.axis_names[0])
    np.savez(
        args.out,
        labels=np.stack([lab for _, lab in local]),
        pixels=np.stack([img[:, 0, 0, 0] for img, _ in local]),
        global_shape=np.asarray(batch[0].shape),
        global_labels_local=np.asarray(batch[1].addressable_shards[0].data),
        process_count=jax.process_count(),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
