"""Object localization of handwritten digits on a blank canvas (course section 5.8.1).

Each MNIST digit (or scikit-learn digit, offline) is rescaled to 16-28 px and pasted at a random
place on a 48x48 canvas; a fifth of the canvases stay empty. A small CNN with the course's head
``[p_c, x, y, w, h, p_0, ..., p_9]`` is trained with the course's squared-error loss (error on
``p_c`` alone for empty canvases, on every component otherwise).

    python -m experiments.localization                                  # a few minutes on 2 cores
    python -m experiments.localization --data-dir <folder> --quick

Reports accuracy (presence right and, with a digit, class right too) and the mean IoU of the
predicted boxes; writes ``results.json`` and ``localization.png`` (validation canvases with the
true box in green and the predicted one in red) in ``--out``.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax

import jcnn
from experiments import common
from jcnn import layers as L
from jcnn.course.localization import (
    localization_head,
    localization_loss,
    localization_metrics,
    place_digits,
)
from jcnn.training import fit

NUM_CLASSES = 10


def localization_cnn(num_classes: int = NUM_CLASSES) -> L.Layer:
    """Three 3x3 conv + ReLU + 2x2 max-pool stages (16, 32, 64), dense 128, localization head.

    Shapes:
        ``(48, 48, 1) -> (5 + num_classes,)``; 48 -> 24 -> 12 -> 6, flatten 2,304.
    """
    return L.serial(
        L.Conv(16, (3, 3), padding=1),
        L.Relu(),
        L.MaxPool((2, 2)),
        L.Conv(32, (3, 3), padding=1),
        L.Relu(),
        L.MaxPool((2, 2)),
        L.Conv(64, (3, 3), padding=1),
        L.Relu(),
        L.MaxPool((2, 2)),
        L.Flatten(),
        L.Dense(128),
        L.Relu(),
        localization_head(num_classes).named("head"),
        name="localization_cnn",
    )


def predict(net: L.Layer, ts, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Inference-mode outputs ``(N, 5 + K)`` in batches."""
    run = jax.jit(lambda p, s, x: jcnn.batched(net.apply)(p, s, x)[0])
    return np.concatenate(
        [
            np.asarray(run(ts.params, ts.state, images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
    )


def plot_boxes(canvases, targets, preds, path, *, count: int = 24, cols: int = 8) -> None:
    """A grid of canvases: true box green (solid), predicted box red (dashed) when p_c > 0.5."""
    from matplotlib.patches import Rectangle

    from jcnn.course.viz import plt

    size = canvases.shape[1]
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for i, ax in enumerate(a for row in axes for a in row):
        ax.axis("off")
        if i >= min(count, len(canvases)):
            continue
        ax.imshow(canvases[i, ..., 0], cmap="gray", vmin=0, vmax=1)
        t, p = targets[i], preds[i]
        true = f"{int(np.argmax(t[5:]))}" if t[0] > 0.5 else "-"
        said = f"{int(np.argmax(p[5:]))}" if p[0] > 0.5 else "-"
        for vec, color, style in ((t, "lime", "-"), (p, "red", "--")):
            if vec[0] > 0.5:
                x, y, w, h = vec[1:5] * size  # pixel c spans [c - 0.5, c + 0.5] in imshow
                ax.add_patch(
                    Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec=color, ls=style, lw=1.2)
                )
        ax.set_title(f"true {true} / pred {said} ({p[0]:.2f})", fontsize=7)
    fig.suptitle("green: true box, red dashed: predicted (p_c > 0.5)", fontsize=9)
    common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("localization", __doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12, help="epochs (default 12)")
    p.add_argument("--batch-size", type=int, default=100, help="batch size (default 100)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 0.002)")
    p.add_argument("--canvas", type=int, default=48, help="canvas side in pixels (default 48)")
    p.add_argument(
        "--empty", type=float, default=0.2, help="fraction of empty canvases (default 0.2)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 1)

    out = common.output_dir(args.out)
    data = common.load_data(args, quick_train=600, quick_val=200)
    print(f"data: {data['source']}")
    (x_train, y_train), (x_val, y_val) = data["train"], data["val"]
    train = place_digits(
        x_train, y_train, canvas_size=args.canvas, empty_fraction=args.empty, seed=args.seed
    )
    val = place_digits(
        x_val, y_val, canvas_size=args.canvas, empty_fraction=args.empty, seed=args.seed + 1
    )
    shape = train[0].shape[1:]
    net = localization_cnn()
    print(jcnn.summary(net, shape))
    batch_size = min(args.batch_size, len(train[0]))

    t0 = time.perf_counter()
    optimizer = optax.adam(args.lr)
    with common.fast_prng():
        result = fit(
            net,
            train,
            val=None if args.quick else val,  # quick: one compilation fewer
            optimizer=optimizer,
            loss_fn=localization_loss,
            metrics_fn=localization_metrics,
            epochs=args.epochs,
            batch_size=batch_size,
            seed=args.seed,
            progress=not args.no_progress,
        )
    wall = time.perf_counter() - t0

    preds = predict(net, result.train_state, val[0])
    final = {k: float(v) for k, v in localization_metrics(preds, val[1]).items()}
    final["loss"] = float(localization_loss(preds, val[1]))
    plot_boxes(val[0], val[1], preds, out / "localization.png", count=8 if args.quick else 24)
    summary = {
        "data": data["source"],
        "task": (
            f"digits rescaled to 16-28 px on a {args.canvas}x{args.canvas} canvas, "
            f"{args.empty:.0%} empty"
        ),
        "train_canvases": len(train[0]),
        "val_canvases": len(val[0]),
        "val_empty_fraction": float(np.mean(val[1][:, 0] == 0)),
        "model": "3 conv stages + dense 128 + head [p_c, x, y, w, h, p_0..p_9]",
        "params": jcnn.count_params(net, shape),
        "epochs": args.epochs,
        "batch_size": batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "val": final,
        "history": result.history,
        "wall_seconds": wall,
    }
    common.write_json(out / "results.json", summary)
    print(
        f"localization: val accuracy {final['accuracy']:.4f} (presence "
        f"{final['presence_accuracy']:.4f}, class {final['class_accuracy']:.4f}), mean IoU "
        f"{final['mean_iou']:.3f} on {len(val[0])} canvases after {args.epochs} epochs "
        f"({wall:.0f} s); outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
