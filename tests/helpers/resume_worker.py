"""Worker of the kill-and-resume test (tests/test_checkpoint.py): a small, slow, resumable fit.

Trains a tiny conv net (conv without bias, BatchNorm, dropout) on fixed synthetic data with
``jcnn.fit(checkpoint_dir=..., checkpoint_every=...)``; if the checkpoint folder already holds
a checkpoint, ``fit`` resumes from it. At the end it writes the final params (and state) to an
``.npz`` file atomically. Every checkpoint save is followed by a short sleep so that a test can
kill the process between checkpoints; the sleep touches nothing that the training computes.

    JAX_PLATFORMS=cpu python tests/helpers/resume_worker.py --ckpt DIR --out final.npz [--host-loop]

It prints ``resuming from step N`` (N = latest checkpoint, or 0) before training and ``done``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

from jcnn import layers as L
from jcnn.training.checkpoint import Checkpointer
from jcnn.training.legacy import param_path

NUM_EXAMPLES, BATCH_SIZE, EPOCHS, EVERY = 96, 16, 3, 2  # 6 steps per epoch, 18 in all
NUM_CLASSES = 3


def network() -> L.Layer:
    """conv 3x3 -> 4 (no bias), BatchNorm, ReLU, flatten, dropout 0.25, dense 3."""
    return L.serial(
        L.Conv(4, (3, 3), use_bias=False),
        L.BatchNorm(),
        L.Relu(),
        L.Flatten(),
        L.Dropout(0.25),
        L.Dense(NUM_CLASSES),
    )


def data() -> tuple[np.ndarray, np.ndarray]:
    """Fixed synthetic data: (96, 6, 6, 1) float32 images, int32 labels in 0..2."""
    rng = np.random.default_rng(1234)
    x = rng.normal(size=(NUM_EXAMPLES, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, NUM_EXAMPLES).astype(np.int32)
    return x, y


class SlowCheckpointer(Checkpointer):
    """A Checkpointer that sleeps after every save, so the run can be killed between saves."""

    pause = 0.0

    def save(self, step, train_state, *, meta=None):
        super().save(step, train_state, meta=meta)
        time.sleep(self.pause)


def flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {param_path(path): np.asarray(leaf) for path, leaf in leaves}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ckpt", required=True, help="checkpoint folder (resumes if not empty)")
    p.add_argument("--out", required=True, help="npz file for the final params")
    p.add_argument("--host-loop", action="store_true", help="fit(on_device=False)")
    p.add_argument("--pause", type=float, default=0.3, help="seconds slept after each save")
    args = p.parse_args(argv)

    latest = Checkpointer(args.ckpt).latest_step() if Path(args.ckpt).exists() else None
    print(f"resuming from step {latest or 0}", flush=True)
    SlowCheckpointer.pause = args.pause
    # The module (``jcnn.training.fit`` as an attribute is the function): the name fit()
    # instantiates its Checkpointer by.
    fit_module = importlib.import_module("jcnn.training.fit")
    assert fit_module.Checkpointer is Checkpointer, "fit no longer makes its Checkpointer here"
    fit_module.Checkpointer = SlowCheckpointer
    result = fit_module.fit(
        network(),
        data(),
        optimizer=optax.adam(1e-2),
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        seed=7,
        on_device=not args.host_loop,
        checkpoint_dir=args.ckpt,
        checkpoint_every=EVERY,
        keep_checkpoints=2,
        progress=False,
    )
    ts = result.train_state
    arrays = {f"params/{k}": v for k, v in flat(ts.params).items()}
    arrays.update({f"state/{k}": v for k, v in flat(ts.state).items()})
    arrays["step"] = np.asarray(ts.step)
    tmp = Path(args.out).with_name(Path(args.out).name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, args.out)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
