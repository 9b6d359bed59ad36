"""The course's MNIST comparison: the dense MLP against the small CNN on 5,000 training images.

"5 Convolutional Neural Networks" trains model1 (dense 784-200-100-10, 178,110 parameters) and
model2 (conv 5x5 -> 8, pool, conv 3x3 -> 16, pool, dense 10; 5,386 parameters) on 5,000 MNIST
images, validates on another 5,000, with Adam (lr 0.005) and batches of 1,000, and plots the
validation accuracy per epoch of both. The text gives neither the number of epochs nor the final
accuracies (only that the CNN "appears better"); 30 epochs here, as experiments/train_mnist.py.

    python -m experiments.seed_mnist --data-dir <folder>   # t10k: 5,000 / 5,000
    python -m experiments.seed_mnist --quick                           # seconds

Writes ``results.json`` and ``learning_curves.png`` in ``--out``.
"""

from __future__ import annotations

import time

import jcnn
from experiments import common
from jcnn import models, viz


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison; returns the summary written to ``results.json``."""
    p = common.parser("seed_mnist", __doc__.splitlines()[0])
    common.add_training_args(p, epochs=30, batch_size=1000, lr=0.005)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.batch_size = min(args.epochs, 2), min(args.batch_size, 250)

    out = common.output_dir(args.out)
    data = common.load_data(args)
    print(f"data: {data['source']}")
    (x_train, y_train), val = data["train"], data["val"]
    batch_size = min(args.batch_size, len(x_train))
    shape = x_train.shape[1:]

    t0 = time.perf_counter()
    runs: dict[str, dict] = {}
    for name, net in (("mlp", models.mlp()), ("cnn", models.cnn())):
        n_params = jcnn.count_params(net, shape)
        print(f"{name}: {n_params:,} parameters")
        (result,) = common.train_seeds(
            net,
            (x_train, y_train),
            val,
            seeds=[args.seed],
            epochs=args.epochs,
            batch_size=batch_size,
            lr=args.lr,
            loop=args.loop,
            progress=not args.no_progress,
            desc=name,
        )
        hist = result.history
        runs[name] = {
            "params": n_params,
            "final_val_accuracy": hist["val_accuracy"][-1],
            "best_val_accuracy": max(hist["val_accuracy"]),
            "best_epoch": hist["epoch"][hist["val_accuracy"].index(max(hist["val_accuracy"]))],
            "history": hist,
        }
    wall = time.perf_counter() - t0

    viz.learning_curves(
        {f"{k} ({v['params']:,} params)": v["history"] for k, v in runs.items()},
        out / "learning_curves.png",
        title=f"MLP vs CNN, {len(x_train)} train / {len(val[0])} val, Adam {args.lr}, "
        f"batch {batch_size}",
    )
    summary = {
        "data": data["source"],
        "n_train": len(x_train),
        "n_val": len(val[0]),
        "epochs": args.epochs,
        "batch_size": batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "loop": args.loop,
        "wall_seconds": wall,
        "models": runs,
    }
    common.write_json(out / "results.json", summary)
    mlp, cnn = runs["mlp"], runs["cnn"]
    print(
        f"after {args.epochs} epochs: mlp ({mlp['params']:,} params) val acc "
        f"{mlp['final_val_accuracy']:.4f} (best {mlp['best_val_accuracy']:.4f}), cnn "
        f"({cnn['params']:,} params) val acc {cnn['final_val_accuracy']:.4f} "
        f"(best {cnn['best_val_accuracy']:.4f}); {wall:.0f} s; outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
