"""Train a zoo model on a folder of images (DIR/train/<class>/..., DIR/val/<class>/...).

The standard ImageNet recipe on :func:`jcnn.data.image_folder` and :func:`jcnn.fit`: SGD with
Nesterov momentum 0.9, a linear warm-up then cosine decay, weight decay on the kernels only (not
on norms and biases), label smoothing, optionally an EMA of the weights and mixup / cutmix.

    python -m experiments.train_folder --make-demo-data demo        # a small synthetic folder
    python -m experiments.train_folder --data-dir demo --quick       # trains on it, offline
    python -m experiments.train_folder --data-dir imagenette2 --model resnet50 --epochs 30

Images are decoded, cropped and flipped on the host by ``--workers`` Grain processes and travel
to the device as uint8, where the network's first layer normalises them with ImageNet's mean and
std. The progress bar counts images (images/s). Writes ``results.json`` (top-1 and top-5 validation
accuracy per epoch, images/s, the classes, the settings), ``learning_curves.png`` and
``samples.png`` (training views as the network sees them) in ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jax
import numpy as np
import optax

import jcnn
from experiments import common
from jcnn import layers as L
from jcnn import models, viz
from jcnn.data import MixupCutmix, image_folder, normalize_on_device
from jcnn.layers.shapes import ShapeError
from jcnn.training import Callback
from jcnn.training.losses import (
    accuracy,
    soft_cross_entropy,
    softmax_cross_entropy,
    top_k_accuracy,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``--quick``: a CI-sized run (resnet18 at 32x32 on the demo folder takes seconds per epoch).
QUICK_IMAGE_SIZE = 32
QUICK_EPOCHS = 3
QUICK_BATCH = 16

#: The demo folder: 4 classes of 64x64 JPEGs, a coloured shape or texture on a noisy background.
DEMO_CLASSES = ("checkers", "circles", "squares", "stripes")
DEMO_SIZE = 64
DEMO_TRAIN, DEMO_VAL = 40, 10


# The demo folder ------------------------------------------------------------------------------


def _demo_image(kind: str, rng: np.random.Generator, size: int = DEMO_SIZE) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 image of class ``kind``: a shape or texture of the class's
    colour family (hue jittered) on a random grey background with pixel noise."""
    base = {
        "checkers": (230, 200, 40),
        "circles": (220, 40, 40),
        "squares": (40, 190, 60),
        "stripes": (40, 80, 220),
    }[kind]
    colour = np.clip(np.asarray(base) + rng.integers(-35, 36, 3), 0, 255)
    background = rng.integers(60, 180)
    img = np.full((size, size, 3), background, np.float64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "circles":
        r = rng.uniform(0.22, 0.4) * size
        cy, cx = rng.uniform(r, size - r, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    elif kind == "squares":
        half = rng.uniform(0.2, 0.38) * size
        cy, cx = rng.uniform(half, size - half, 2)
        mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    elif kind == "stripes":
        period = rng.uniform(6, 12)
        angle = rng.uniform(-0.3, 0.3)  # near-horizontal
        u = yy * np.cos(angle) + xx * np.sin(angle) + rng.uniform(0, period)
        mask = (u % period) < period / 2
    else:  # checkers
        cell = rng.uniform(6, 12)
        oy, ox = rng.uniform(0, cell, 2)
        mask = ((np.floor((yy + oy) / cell) + np.floor((xx + ox) / cell)) % 2) == 0
    img[mask] = colour
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_demo_data(
    root: str | os.PathLike[str],
    *,
    seed: int = 0,
    train_per_class: int = DEMO_TRAIN,
    val_per_class: int = DEMO_VAL,
) -> Path:
    """Writes a small synthetic ImageNet-style folder: ``root/{train,val}/<class>/<i>.jpg``.

    :data:`DEMO_CLASSES` (4 classes: checkers, circles, squares, stripes), each a shape or texture
    in its own colour family on a random grey background, 64x64 JPEGs of quality 90; the same
    pixels for the same ``seed``. Existing files of the same names are overwritten.

    Returns:
        ``root``.
    """
    from PIL import Image

    root = Path(root)
    for s, (split, n) in enumerate((("train", train_per_class), ("val", val_per_class))):
        for c, kind in enumerate(DEMO_CLASSES):
            rng = np.random.default_rng([seed, s, c])  # each folder its own stream
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_demo_image(kind, rng)).save(folder / f"{i:03d}.jpg", quality=90)
    return root


# The recipe -----------------------------------------------------------------------------------


def zoo_models() -> list[str]:
    """Zoo builders whose first argument is ``num_classes`` (``resnet18``, ``mobilenet_v2``...)."""
    names = []
    for name in sorted(models.__all__):
        builder = getattr(models, name, None)
        if not callable(builder) or name in ("cnn", "mlp"):  # the course's 28x28 grey nets
            continue
        try:
            params = list(inspect.signature(builder).parameters)
        except (TypeError, ValueError):
            continue
        if params[:1] == ["num_classes"]:
            names.append(name)
    return names


def kernel_mask(params: Any) -> Any:
    """True for the leaves named ``kernel`` (conv and dense weights): weight decay applies to
    them only, never to BatchNorm's ``scale``/``offset`` or to biases (Goyal et al. 2017, "no
    bias decay")."""

    def is_kernel(path: tuple, _: Any) -> bool:
        last = path[-1] if path else None
        return getattr(last, "key", None) == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def warmup_steps(steps_per_epoch: int, total_steps: int) -> int:
    """The linear warm-up: one epoch, or 5% of all steps when that is fewer (at least 1)."""
    return max(1, min(steps_per_epoch, math.ceil(0.05 * total_steps)))


def recipe_optimizer(
    lr: float, weight_decay: float, steps_per_epoch: int, total_steps: int
) -> tuple[Any, Any]:
    """SGD (momentum 0.9, Nesterov) on a warm-up + cosine schedule, with L2 weight decay added
    to the kernels' gradients only (``optax.add_decayed_weights`` masked by :func:`kernel_mask`),
    as torchvision's reference recipe does with ``--norm-weight-decay 0 --bias-weight-decay 0``.

    Returns:
        ``(optimizer, schedule)``; the optimizer holds its learning rate in its state
        (``optax.inject_hyperparams``), so fit's history records ``lr`` per epoch.
    """
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=lr,
        warmup_steps=warmup_steps(steps_per_epoch, total_steps),
        decay_steps=max(total_steps, warmup_steps(steps_per_epoch, total_steps) + 1),
        end_value=0.0,
    )
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule, momentum=0.9, nesterov=True)
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=kernel_mask), sgd), schedule


def top_k_metrics(logits: Any, labels: Any, *, k: int) -> dict[str, Any]:
    """``{"accuracy": top-1, "top5_accuracy": top-k}`` (``k = min(5, classes)``); integer labels
    or mixed soft targets (their arg-max)."""
    return {
        "accuracy": accuracy(logits, labels),
        "top5_accuracy": top_k_accuracy(logits, labels, k),
    }


class Throughput(Callback):
    """Training images/s of each epoch (loading and steps; validation excluded), as
    ``images_per_second`` in the epoch's record. fit's progress bar shows the running rate."""

    def __init__(self) -> None:
        self.batch_size, self.images, self.start, self.last = 0, 0, 0.0, 0.0

    def on_train_begin(self, info: Any) -> None:
        self.batch_size, self.images, self.start = info.batch_size, 0, time.perf_counter()

    def on_chunk_end(self, chunk: Any) -> None:
        self.images += chunk.num_steps * self.batch_size
        self.last = time.perf_counter()

    def extend_record(self, end: Any) -> dict[str, float]:
        return {"images_per_second": self.images / max(self.last - self.start, 1e-9)}

    def on_epoch_end(self, end: Any) -> None:
        self.images, self.start = 0, time.perf_counter()


def eval_batch_size(n: int, batch_size: int) -> int:
    """The largest divisor of ``n`` not above ``batch_size`` when it is at least half of it (no
    partial last batch: one compiled evaluation step), else ``batch_size``."""
    best = max(d for d in range(1, min(n, batch_size) + 1) if n % d == 0)
    return best if 2 * best >= min(n, batch_size) else min(n, batch_size)


def default_workers() -> int:
    """CPU cores - 1 (one for the training loop), 0 on a single core (loads in-process)."""
    cores = os.cpu_count() or 1
    return cores - 1 if cores > 1 else 0


# The script -----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.train_folder", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="the image folder: DIR/train/<class>/<image> and DIR/val/<class>/<image>",
    )
    p.add_argument(
        "--make-demo-data",
        default=None,
        metavar="DIR",
        help=f"write a small synthetic folder to DIR ({len(DEMO_CLASSES)} classes, "
        f"{DEMO_TRAIN} train + {DEMO_VAL} val images each, {DEMO_SIZE}x{DEMO_SIZE} JPEGs, from "
        "--seed) and exit, unless --data-dir is also given",
    )
    p.add_argument(
        "--model",
        default="resnet18",
        metavar="NAME",
        help="a jcnn.models builder taking num_classes: resnet18 (default), resnet50, "
        "mobilenet_v2, cifar_resnet18, efficientnet_b0, convnext_tiny, vgg11_bn, ...",
    )
    p.add_argument(
        "--epochs", type=int, default=90, help=f"epochs (default 90; --quick {QUICK_EPOCHS})"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help=f"global batch (default 256; --quick {QUICK_BATCH})",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"side of the square crops (default 224; --quick {QUICK_IMAGE_SIZE})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"decoding processes (default: CPU cores - 1, here {default_workers()}; --quick 0; "
        "0: in this process)",
    )
    p.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default 0.1 * batch / 256)"
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=5e-5,
        help="L2 weight decay of the kernels; norms and biases have none (default 5e-5)",
    )
    p.add_argument(
        "--label-smoothing", type=float, default=0.1, help="label smoothing (default 0.1)"
    )
    p.add_argument(
        "--ema",
        type=float,
        default=None,
        metavar="DECAY",
        help="EMA of the weights (off by default)",
    )
    p.add_argument(
        "--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup alpha (default 0: off)"
    )
    p.add_argument(
        "--cutmix", type=float, default=0.0, metavar="ALPHA", help="cutmix alpha (default 0: off)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a CI-sized run: {QUICK_IMAGE_SIZE}x{QUICK_IMAGE_SIZE} crops, {QUICK_EPOCHS} "
        f"epochs, batch {QUICK_BATCH} (flags given explicitly win)",
    )
    p.add_argument("--out", default="runs/train_folder", help="output folder for the JSON and PNGs")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _settle(args: argparse.Namespace, p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """``--quick``'s sizes where the flags were not given; checks the numbers."""
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    if args.quick:
        if "--epochs" not in given:
            args.epochs = QUICK_EPOCHS
        if "--batch-size" not in given:
            args.batch_size = QUICK_BATCH
    if args.image_size is None:
        args.image_size = QUICK_IMAGE_SIZE if args.quick else 224
    if args.workers is None:
        # --quick's images are tiny: starting worker processes (each imports jcnn) costs more
        # than decoding 64x64 JPEGs in this process.
        args.workers = 0 if args.quick else default_workers()
    if args.lr is None:
        args.lr = 0.1 * args.batch_size / 256
    for flag in ("epochs", "batch_size", "image_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.workers < 0:
        p.error("--workers must be 0 or more")
    if not 0 <= args.label_smoothing < 1:
        p.error("--label-smoothing must be in [0, 1)")
    if args.ema is not None and not 0 < args.ema < 1:
        p.error("--ema is a decay in (0, 1), e.g. 0.999")
    if args.mixup < 0 or args.cutmix < 0:
        p.error("--mixup and --cutmix are Beta alphas >= 0")


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Runs the script; returns the summary written to ``results.json`` (None when it only made
    the demo folder)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    args = p.parse_args(argv)
    if args.make_demo_data is not None:
        root = make_demo_data(args.make_demo_data, seed=args.seed)
        n = len(DEMO_CLASSES)
        print(
            f"wrote {n * (DEMO_TRAIN + DEMO_VAL)} JPEGs ({n} classes: {', '.join(DEMO_CLASSES)}; "
            f"{DEMO_TRAIN} train + {DEMO_VAL} val each) to {root}; train on it with "
            f"python -m experiments.train_folder --data-dir {root} --quick"
        )
        if args.data_dir is None:
            return None
    if args.data_dir is None:
        p.error(
            "give --data-dir DIR (DIR/train/<class>/..., DIR/val/<class>/...) or --make-demo-data DIR"
        )
    _settle(args, p, argv)
    return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Trains ``args.model`` on ``args.data_dir`` with the recipe; writes the outputs."""
    common.compile_cache.enable()
    t_start = time.perf_counter()
    names = zoo_models()
    if args.model not in names:
        _fail(
            f"--model {args.model!r} is not a zoo model taking num_classes; one of {', '.join(names)}"
        )

    # The data first: a bad folder is an error before anything is compiled.
    folder_args = dict(image_size=args.image_size, workers=args.workers, seed=args.seed)
    try:
        # Count first (a folder scan): a batch larger than the folder is one batch of it all.
        n_train = len(image_folder(args.data_dir, train=True, batch_size=1).folder.samples)
        n_val = len(image_folder(args.data_dir, train=False, batch_size=1).folder.samples)
        batch_size = min(args.batch_size, n_train)
        train = image_folder(args.data_dir, train=True, batch_size=batch_size, **folder_args)
        val_batch = eval_batch_size(n_val, batch_size)
        val = image_folder(args.data_dir, train=False, batch_size=val_batch, **folder_args)
    except (FileNotFoundError, NotADirectoryError, ValueError) as err:
        _fail(f"--data-dir {args.data_dir}: {err}")
    classes = list(train.classes)
    num_classes = len(classes)
    steps_per_epoch = len(train)
    total_steps = steps_per_epoch * args.epochs
    print(
        f"data: {args.data_dir}: {num_classes} classes, {n_train} train / {n_val} val images; "
        f"{steps_per_epoch} steps of {batch_size} per epoch; {args.workers} workers",
        flush=True,
    )

    net = L.serial(
        normalize_on_device(IMAGENET_MEAN, IMAGENET_STD),
        getattr(models, args.model)(num_classes=num_classes),
    )
    shape = (args.image_size, args.image_size, 3)
    try:
        jcnn.output_shape(net, shape)
    except ShapeError as err:
        _fail(f"--image-size {args.image_size} is too small for {args.model}: {err}")
    params_count = jcnn.count_params(net, shape)

    optimizer, schedule = recipe_optimizer(args.lr, args.weight_decay, steps_per_epoch, total_steps)
    k = min(5, num_classes)
    metrics_fn = functools.partial(top_k_metrics, k=k)
    mixing = args.mixup > 0 or args.cutmix > 0
    if mixing:
        transform = MixupCutmix(
            num_classes,
            mixup_alpha=args.mixup,
            cutmix_alpha=args.cutmix,
            label_smoothing=args.label_smoothing,
        )
        loss_fn: Any = soft_cross_entropy
    else:
        transform = None
        loss_fn = functools.partial(softmax_cross_entropy, label_smoothing=args.label_smoothing)
    out = common.output_dir(args.out)
    _samples_plot(args, classes, out / "samples.png")
    print(
        f"model: {args.model} ({params_count:,} params) at {shape[0]}x{shape[1]}; SGD nesterov "
        f"0.9, lr {args.lr:g} (warm-up {warmup_steps(steps_per_epoch, total_steps)} steps, cosine "
        f"to 0 at step {total_steps}), weight decay {args.weight_decay:g} on kernels, label "
        f"smoothing {args.label_smoothing:g}"
        + (f", EMA {args.ema:g}" if args.ema else "")
        + (f", mixup {args.mixup:g} / cutmix {args.cutmix:g}" if mixing else ""),
        flush=True,
    )

    throughput = Throughput()
    t0 = time.perf_counter()
    result = jcnn.fit(
        net,
        train,
        val=val,
        optimizer=optimizer,
        epochs=args.epochs,
        loss_fn=loss_fn,
        metrics_fn=metrics_fn,
        seed=args.seed,
        ema=args.ema,
        transform=transform,
        callbacks=[throughput],
        progress=not args.no_progress,
    )
    jax.block_until_ready(result.train_state.params)
    fit_seconds = time.perf_counter() - t0
    hist = result.history
    speeds = hist["images_per_second"]
    summary: dict[str, Any] = {
        "data_dir": str(args.data_dir),
        "classes": classes,
        "num_classes": num_classes,
        "n_train": n_train,
        "n_val": n_val,
        "model": args.model,
        "params": params_count,
        "image_size": args.image_size,
        "settings": {
            "epochs": args.epochs,
            "batch_size": batch_size,
            "steps_per_epoch": steps_per_epoch,
            "optimizer": "sgd, momentum 0.9, nesterov",
            "lr": args.lr,
            "schedule": "linear warm-up from 0, cosine decay to 0 (optax.warmup_cosine_decay_schedule)",
            "warmup_steps": warmup_steps(steps_per_epoch, total_steps),
            "total_steps": total_steps,
            "weight_decay": args.weight_decay,
            "weight_decay_on": "kernels only (no norms, no biases)",
            "label_smoothing": args.label_smoothing,
            "ema": args.ema,
            "mixup": args.mixup,
            "cutmix": args.cutmix,
            "augment": "random-resized-crop (scale 0.08-1), horizontal flip; val: resize + "
            "centre crop 0.875",
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "workers": args.workers,
            "seed": args.seed,
            "quick": args.quick,
        },
        "top5_k": k,
        "chance": 1 / num_classes,
        "final_val_top1": hist["val_accuracy"][-1],
        "final_val_top5": hist["val_top5_accuracy"][-1],
        "best_val_top1": max(hist["val_accuracy"]),
        "images_per_second": {
            "first_epoch": speeds[0],  # includes compiling the step
            "median_after_first": float(np.median(speeds[1:])) if len(speeds) > 1 else None,
            "last_epoch": speeds[-1],
        },
        "seconds": {"fit": fit_seconds, "total": time.perf_counter() - t_start},
        "history": hist,
    }
    if args.ema:
        summary["final_ema_val_top1"] = hist["ema_val_accuracy"][-1]
        summary["final_ema_val_top5"] = hist["ema_val_top5_accuracy"][-1]
    common.write_json(out / "results.json", summary)
    jcnn.viz.learning_curves(
        {args.model: hist},
        out / "learning_curves.png",
        title=f"{args.model} on {Path(args.data_dir).name} ({num_classes} classes), "
        f"{args.image_size}x{args.image_size}, batch {batch_size}",
    )
    print(result_line(summary, out))
    return summary


def result_line(summary: Mapping[str, Any], out: Any) -> str:
    """The last line: top-1 / top-5, chance, speed, where the outputs are."""
    speed = summary["images_per_second"]
    shown = speed["median_after_first"] or speed["last_epoch"]
    k = summary["top5_k"]
    return (
        f"{summary['model']} on {summary['num_classes']} classes after "
        f"{summary['settings']['epochs']} epochs: val top-1 {summary['final_val_top1']:.4f} "
        f"(chance {summary['chance']:.4f}), top-{k} {summary['final_val_top5']:.4f}; "
        f"{shown:.0f} images/s; {summary['seconds']['total']:.0f} s; outputs in {out}"
    )


def _samples_plot(args: argparse.Namespace, classes: Sequence[str], path: Path) -> Path:
    """Twelve training views of epoch 0 as the network gets them (before normalisation), read
    in this process (no workers) so the run's own source is untouched."""
    source = image_folder(args.data_dir, image_size=args.image_size, batch_size=1, seed=args.seed)
    views = [batch for _, batch in zip(range(12), source)]
    return viz.image_grid(
        [x[0] for x, _ in views], path, titles=[classes[int(y[0])] for _, y in views], cols=6
    )


if __name__ == "__main__":
    main()
