"""Subprocess for tests/training/test_preemption.py: a fit that a test stops with SIGTERM.

``python preempt_worker.py CHECKPOINT_DIR OUT.npz``: trains 2 epochs of 48 steps with
checkpoints in CHECKPOINT_DIR (resuming from it when it holds one), printing ``chunk <step>``
after every chunk, then saves the final params to OUT.npz.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import optax

import jcnn
from jcnn import layers as L
from jcnn.training import Callback


class Announce(Callback):
    def on_chunk_end(self, chunk) -> None:
        print(f"chunk {chunk.step}", flush=True)


def main(checkpoint_dir: str, out: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48 * 16, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, len(x)).astype(np.int32)
    net = L.serial(L.Conv(4, 3), L.Relu(), L.Dropout(0.2), L.Flatten(), L.Dense(10))
    result = jcnn.fit(
        net, (x, y), epochs=2, batch_size=16, optimizer=optax.adam(1e-3), ema=0.9,
        checkpoint_dir=checkpoint_dir, callbacks=[Announce()], progress=False,
    )  # fmt: skip
    leaves = jax.tree.leaves((result.params, result.ema_params))
    np.savez(out, *[np.asarray(a) for a in leaves], step=int(result.train_state.step))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
