"""Train the course CNN on MNIST: the main job.

conv 5x5 -> 8, max-pool 2, conv 3x3 -> 16, max-pool 2, dense 10 (5,386 parameters), Adam
lr 0.005, batch 1,000, as in the course text "5 Convolutional Neural Networks".

    python -m experiments.train_mnist                                  # MNIST or offline fallback
    python -m experiments.train_mnist --data-dir ../shared/data/mnist  # 5,000 / 5,000 of t10k

Writes ``metrics.json``, ``learning_curves.png`` and ``filters.png`` in ``--out``.
"""

from __future__ import annotations

import time

import numpy as np
import optax

import jcnn
from experiments import common
from jcnn import models, viz
from jcnn.fit import fit


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("train_mnist", __doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch size (default 1000, the course's; 100 on the small offline fallback)",
    )
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate (default 0.005)")
    p.add_argument(
        "--host-loop",
        action="store_true",
        help="one compiled call per step with host batches (default: the on-device epoch)",
    )
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 2)

    out = common.output_dir(args.out)
    data = common.load_mnist_or_fallback(
        args.data_dir, offline=args.offline, n_train=2000 if args.quick else None
    )
    print(f"data: {data['source']}")
    (x_train, y_train), (x_val, y_val) = data["train"], data["val"]
    default_batch = 100 if data["source"].startswith("sklearn") else 1000
    batch_size = min(args.batch_size or default_batch, len(x_train))

    net = models.cnn()
    print(jcnn.summary(net, x_train.shape[1:]))
    t0 = time.perf_counter()
    result = fit(
        net,
        (x_train, y_train),
        val=(x_val, y_val),
        optimizer=optax.adam(args.lr),
        epochs=args.epochs,
        batch_size=batch_size,
        seed=args.seed,
        on_device=not args.host_loop,
        checkpoint_dir=(out / "checkpoints") if args.checkpoint_every else None,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    hist = result.history
    params = result.train_state.params
    viz.learning_curves(
        {"cnn": hist}, out / "learning_curves.png", title=data["source"].split(" from ")[0]
    )
    viz.filter_grid(params["Conv_0"]["kernel"], out / "filters.png", title="first-layer filters")
    epoch_seconds = hist["seconds"][1:] or hist["seconds"]
    summary = {
        "data": data["source"],
        "model": "course cnn",
        "params": jcnn.count_params(net, x_train.shape[1:]),
        "epochs": args.epochs,
        "batch_size": batch_size,
        "lr": args.lr,
        "loop": "host" if args.host_loop else "on-device",
        "final_val_accuracy": hist["val_accuracy"][-1],
        "best_val_accuracy": max(hist["val_accuracy"]),
        "median_epoch_seconds_after_compile": float(np.median(epoch_seconds)),
        "first_epoch_seconds": hist["seconds"][0],
        "wall_seconds": wall,
        "history": hist,
    }
    common.write_json(out / "metrics.json", summary)
    print(
        f"final validation accuracy {summary['final_val_accuracy']:.4f} "
        f"(best {summary['best_val_accuracy']:.4f}) after {args.epochs} epochs; "
        f"{summary['median_epoch_seconds_after_compile']:.2f} s/epoch ({summary['loop']} loop); "
        f"outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
