"""Semantic segmentation with a U-Net on generated shapes: per-pixel classes, mean IoU.

Each image is a noisy grey canvas with a few filled shapes at random places, sizes and grey
levels: discs (class 1), squares (class 2) and triangles (class 3) on background (class 0),
so telling them apart takes their outline, not their brightness. ``jcnn.models.unet``
(``--base`` channels, ``--depth`` levels, SAME padding, a transposed-conv decoder) is trained by
``jcnn.fit`` with the per-pixel cross entropy (:mod:`jcnn.training.segmentation`); the IoU per
class and its mean come from the confusion matrix summed over the whole validation set.

    python -m experiments.segmentation            # 1,200 train / 300 val canvases of 48x48
    python -m experiments.segmentation --quick    # seconds: fewer, smaller, 8 epochs

Writes ``results.json`` (IoU per class, mean IoU, pixel accuracy, the history) and
``segmentation.png`` (validation images, true and predicted masks) and ``learning_curves.png``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import optax

import jcnn
from experiments import common
from jcnn.models.unet import unet
from jcnn.training.segmentation import (
    confusion_matrix,
    iou_from_confusion,
    pixel_cross_entropy,
    segmentation_metrics,
)

CLASSES = ("background", "disc", "square", "triangle")


def make_shapes(
    n: int, size: int, seed: int, shapes_per_image: tuple[int, int] = (1, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 images ``(size, size, 1)`` in [0, 1] and int32 masks ``(size, size)``.

    A later shape paints over an earlier one; backgrounds and shapes take random grey levels at
    least 0.25 apart, then Gaussian noise (sigma 0.05).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((n, size, size, 1), np.float32)
    masks = np.zeros((n, size, size), np.int32)
    for i in range(n):
        background = rng.uniform(0.0, 1.0)
        image = np.full((size, size), background, np.float32)
        for _ in range(rng.integers(shapes_per_image[0], shapes_per_image[1] + 1)):
            kind = int(rng.integers(1, 4))
            r = rng.uniform(size / 7, size / 3.5)
            cx, cy = rng.uniform(r, size - r, size=2)
            if kind == 1:
                inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
            elif kind == 2:
                inside = (np.abs(xx - cx) <= r * 0.8) & (np.abs(yy - cy) <= r * 0.8)
            else:  # an upright triangle: apex at the top, base at the bottom
                top, bottom = cy - r, cy + r
                half = (yy - top) / (bottom - top) * r
                inside = (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)
            level = background + rng.choice([-1, 1]) * rng.uniform(0.25, 0.5)
            image[inside] = np.clip(level, 0.0, 1.0)
            masks[i][inside] = kind
        images[i, ..., 0] = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
    return images, masks


def predict_logits(net: Any, ts: Any, x: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """The network's logits on ``x`` in inference mode, batch by batch."""
    return np.asarray(jcnn.predict(net, ts, x, batch_size=batch_size))


def plot_masks(images: np.ndarray, masks: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    """Rows of (image, true mask, predicted mask), one colour per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap(["#222222", "#e6550d", "#3182bd", "#31a354"])
    rows = len(images)
    fig, axes = plt.subplots(rows, 3, figsize=(6.6, 2.2 * rows), squeeze=False)
    for r in range(rows):
        for c, (title, data) in enumerate(
            (("image", images[r, ..., 0]), ("true mask", masks[r]), ("predicted", predicted[r]))
        ):
            ax = axes[r, c]
            if c == 0:
                ax.imshow(data, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(data, cmap=cmap, vmin=0, vmax=len(CLASSES) - 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k)) for k in range(len(CLASSES))]
    fig.legend(handles, CLASSES, loc="lower center", ncol=len(CLASSES), frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    common.save_figure(fig, path)


def plot_history(history: dict, path: Path) -> None:
    """Loss and mean IoU per epoch (dashed: train, solid: validation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = history["epoch"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((a, "loss", "pixel cross entropy"), (b, "mean_iou", "mean IoU")):
        ax.plot(epochs, history[f"train_{key}"], "--o", ms=3, label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "-o", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("U-Net on generated shapes")
    fig.tight_layout()
    common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("segmentation", __doc__.splitlines()[0], data=False)
    p.add_argument("--quick", action="store_true", help="a CI-sized run (seconds)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--epochs", type=int, default=15, help="epochs (default 15; --quick 8)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 0.003)")
    p.add_argument("--size", type=int, default=48, help="canvas side (default 48; --quick 32)")
    p.add_argument("--base", type=int, default=16, help="U-Net first-level channels (default 16)")
    p.add_argument("--depth", type=int, default=3, help="U-Net levels (default 3; --quick 2)")
    args = p.parse_args(argv)
    n_train, n_val = 1200, 300
    if args.quick:
        args.epochs, args.size, args.base, args.depth = min(args.epochs, 8), 32, 16, 2
        n_train, n_val = 320, 64
    out = common.output_dir(args.out)
    train = make_shapes(n_train, args.size, args.seed)
    val = make_shapes(n_val, args.size, args.seed + 1)
    net = unet(len(CLASSES), base=args.base, depth=args.depth)
    shape = train[0].shape[1:]
    print(
        f"data: {n_train} train / {n_val} val generated {args.size}x{args.size} canvases; "
        f"U-Net base {args.base}, depth {args.depth}: {jcnn.count_params(net, shape):,} params, "
        f"{jcnn.count_macs(net, shape) / 1e6:.1f} M multiply-adds per image"
    )
    t0 = time.perf_counter()
    result = jcnn.fit(
        net,
        train,
        val=val,
        optimizer=optax.adam(args.lr),
        loss_fn=pixel_cross_entropy,
        metrics_fn=segmentation_metrics,
        epochs=args.epochs,
        batch_size=min(args.batch_size, n_train),
        seed=args.seed,
        progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    logits = predict_logits(net, result.train_state, val[0])
    confusion = np.asarray(confusion_matrix(logits, val[1]))
    per_class, mean_iou = iou_from_confusion(confusion)
    pixel_accuracy = float(np.trace(confusion) / confusion.sum())
    frequencies = confusion.sum(1) / confusion.sum()
    predicted = logits.argmax(-1)
    plot_masks(val[0][:6], val[1][:6], predicted[:6], out / "segmentation.png")
    plot_history(result.history, out / "learning_curves.png")
    summary = {
        "task": "discs, squares and triangles on noisy grey canvases (4 classes with background)",
        "classes": list(CLASSES),
        "size": args.size,
        "n_train": n_train,
        "n_val": n_val,
        "model": f"jcnn.models.unet(4, base={args.base}, depth={args.depth})",
        "params": jcnn.count_params(net, shape),
        "epochs": args.epochs,
        "batch_size": min(args.batch_size, n_train),
        "lr": args.lr,
        "seed": args.seed,
        "val_iou": dict(zip(CLASSES, per_class.tolist())),
        "val_mean_iou": mean_iou,
        "val_pixel_accuracy": pixel_accuracy,
        "class_frequencies": dict(zip(CLASSES, frequencies.tolist())),
        # predicting every pixel as background: its IoU is its frequency, the others 0
        "chance_mean_iou": float(frequencies[0] / len(CLASSES)),
        "history": result.history,
        "wall_seconds": wall,
    }
    common.write_json(out / "results.json", summary)
    print(
        f"segmentation: val mean IoU {mean_iou:.3f} (chance {summary['chance_mean_iou']:.3f}), "
        f"pixel accuracy {pixel_accuracy:.3f}, IoU "
        + ", ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, per_class))
        + f" after {args.epochs} epochs ({wall:.0f} s); outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
