"""Transfer learning: a torchvision model's frozen body, a new Dense(10) head retrained on MNIST.

The model comes from ``jcnn.models.from_torchvision(--model, state_dict)``. The state dict is
``--weights PATH``, a torchvision-layout file you have (``.safetensors``, read with
``safetensors.numpy.load_file``, or ``.npz``; pickles and ``torch.load`` are never used), e.g.
written once where torch is installed::

    model = torchvision.models.resnet18(weights="DEFAULT")
    safetensors.torch.save_file(model.state_dict(), "resnet18.safetensors")

Without ``--weights`` the run is offline with random weights: the jcnn builder's ``init`` is
written out with ``to_torchvision`` and read back with ``from_torchvision``, so the same path is
taken (and the output says the accuracy shows the pipeline, not pretrained features).

The model's last top-level child (``fc`` of ResNets and GoogLeNet, ``classifier`` of the others:
for ConvNeXt its LayerNorm and linear) is replaced by a new ``Dense(10)`` keyed ``head``
(``jcnn.transfer.transfer_setup``); for VGG and AlexNet only the classifier's last dense layer is
(``head="classifier/6"``, torchvision's ``model.classifier[6] = nn.Linear(4096, 10)``), so
their pretrained 4096-wide dense layers are kept, frozen, and the new head sits at
``classifier/head`` (see :func:`head_path`). Every other parameter path is frozen by name
(``jcnn.fit(frozen=...)``) and the body runs in inference mode
(``jcnn.models.transfer.inference_mode``: BatchNorm uses its running statistics and keeps them,
Dropout is off). Only the head is trained, with Adam, on MNIST digits prepared by
:func:`prepare_images` (resized to ``--image-size``, grey repeated to RGB, normalised with
ImageNet's mean and std; ``(x - 0.5) / 0.5`` for GoogLeNet, see :data:`HALF_MEAN`). Accuracy is
measured on the held-out validation split after every epoch.

    python -m experiments.transfer --weights resnet18.safetensors --data-dir DIR
    python -m experiments.transfer --quick            # random weights, under a minute on 2 cores

Writes ``results.json`` and ``accuracy.png`` in ``--out``. A ``--weights`` that is missing,
unreadable or not a state dict of ``--model`` is an error (exit status 2) naming the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jcnn
from experiments import common
from jcnn import layers as L
from jcnn import models
from jcnn.layers.core import Layer
from jcnn.layers.shapes import ShapeError
from jcnn.models.transfer import transfer_setup
from jcnn.training import Callback, EpochEnd, TrainState, fit

#: torchvision's normalisation of its ImageNet weights (``transforms.Normalize``), RGB.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: GoogLeNet's: torchvision's pretrained GoogLeNet has ``transform_input=True``, which turns
#: ImageNet-normalised input into ``(x - 0.5) / 0.5`` before its first conv; jcnn's GoogLeNet
#: has no ``transform_input``, so its input is prepared that way directly.
HALF_MEAN, HALF_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
HEAD = "head"
NUM_CLASSES = 10
RANDOM_NOTE = (
    "random weights: no --weights given; accuracy shows the pipeline, not pretrained features"
)
QUICK_TRAIN, QUICK_VAL = 128, 64
#: Where the builders of :data:`jcnn.models.SUPPORTED` live when ``jcnn.models`` does not export
#: them.


class WeightsError(Exception):
    """``--weights`` cannot be used: the message names the file and why."""


class TransferRun(NamedTuple):
    """What :func:`run` returns (``main`` returns only ``summary``).

    Attributes:
        summary: what ``results.json`` holds.
        net: the new network (frozen body in inference mode + ``head``).
        converted: ``(params, state)`` as ``from_torchvision`` returned them (old head included).
        initial: the train state before training (body copied from ``converted``, fresh head).
        final: the train state after training.
    """

    summary: dict[str, Any]
    net: Layer
    converted: tuple[Any, Any]
    initial: TrainState
    final: TrainState


def head_path(model: str, net: Layer) -> str:
    """The child path ``transfer_setup`` cuts at: the last top-level child, except for VGG and
    AlexNet, whose ``classifier`` is cut at its last ``Dense`` (``"classifier/6"``, torchvision's
    ``classifier[6]``).
    """
    last, child = net.children[-1]
    if (model.startswith("vgg") or model == "alexnet") and child.combine == "serial":
        dense = [k for k, c in child.children if c.kind == "Dense"]
        if dense:
            return f"{last}/{dense[-1]}"
    return last


def builder(name: str) -> Callable[..., Layer]:
    """The jcnn builder of torchvision's ``name`` (one of ``jcnn.models.SUPPORTED``)."""
    if name not in models.SUPPORTED:
        raise ValueError(
            f"no jcnn builder named {name!r}; supported: {', '.join(models.SUPPORTED)}"
        )
    return getattr(models, name)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A torchvision-layout state dict from a ``.safetensors`` or ``.npz`` file (no pickle).

    Floating tensors are returned as float32 (jcnn's parameters), integer ones
    (``num_batches_tracked``) as stored.

    Raises:
        WeightsError: the file is missing, of another kind, or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise WeightsError(f"--weights {path}: {what}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            raw = load_file(str(path))
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                raw = {k: archive[k] for k in archive.files}
        else:
            raise WeightsError(
                f"--weights {path}: expected a .safetensors or .npz file of a torchvision "
                "state dict (pickled .pt/.pth files are not read: convert them where torch is "
                "installed with safetensors.torch.save_file(state_dict, 'model.safetensors'))"
            )
    except WeightsError:
        raise
    except Exception as err:  # corrupt or truncated files: safetensors / zipfile errors
        raise WeightsError(
            f"--weights {path}: cannot read it: {type(err).__name__}: {err}"
        ) from err
    if not raw:
        raise WeightsError(f"--weights {path}: holds no tensors")
    return {
        k: v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in raw.items()
    }


def random_state_dict(name: str, input_shape: Sequence[int], seed: int) -> dict[str, np.ndarray]:
    """A torchvision-layout state dict of random weights: ``to_torchvision`` of the jcnn
    builder's ``init`` (one compiled initialisation; ``common.fast_prng`` compiles it faster)."""
    net = builder(name)()
    with common.fast_prng():
        params, state = jax.jit(lambda k: net.init(k, tuple(input_shape))[1:])(jax.random.key(seed))
    return models.to_torchvision(name, params, state)


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel that torchvision's pretrained ``name`` expects."""
    return (HALF_MEAN, HALF_STD) if name == "googlenet" else (IMAGENET_MEAN, IMAGENET_STD)


def prepare_images(
    x: np.ndarray, size: int, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, chunk: int = 256
) -> np.ndarray:
    """MNIST digits as an ImageNet model's input: ``(N, 28, 28, 1)`` in [0, 1] ->
    ``(N, size, size, 3)`` float32.

    Each digit is resized to ``size x size`` with ``jax.image.resize`` (bilinear, antialiased
    when shrinking), its grey channel repeated to R, G and B, and normalised per channel as
    torchvision's pretrained weights expect: ``(x - mean) / std`` with ImageNet's mean and std.
    Compiled once per chunk shape, ``chunk`` images at a time (the last chunk is padded).
    """
    mean_ = jnp.asarray(mean, jnp.float32).reshape(1, 1, 1, 3)
    std_ = jnp.asarray(std, jnp.float32).reshape(1, 1, 1, 3)

    @jax.jit
    def prep(batch: jax.Array) -> jax.Array:
        up = jax.image.resize(batch, (batch.shape[0], size, size, 1), "bilinear")
        rgb = jnp.repeat(up, 3, axis=-1)
        return (rgb - mean_) / std_

    x = np.asarray(x, np.float32)
    out = np.empty((len(x), size, size, 3), np.float32)
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        pad = chunk - len(part)
        if pad:
            part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), np.float32)])
        out[i : i + chunk] = np.asarray(prep(part))[: chunk - pad]
    return out


class HeldOut(Callback):
    """Held-out loss and accuracy after every epoch, as ``val_loss`` and ``val_accuracy`` of the
    epoch's record (``extend_record``).

    Over all of ``val`` in inference mode (train=False), with one compiled predict of
    ``batch_size`` (the last batch padded, so nothing recompiles); each evaluation's wall time
    is appended to :attr:`seconds`.
    """

    def __init__(self, net: Layer, val: tuple[np.ndarray, np.ndarray], batch_size: int) -> None:
        self.val, self.batch_size = val, batch_size
        self.seconds: list[float] = []
        self._predict = jax.jit(lambda p, s, xb: jcnn.batched(net.apply)(p, s, xb, train=False)[0])

    def evaluate(self, ts: TrainState) -> dict[str, float]:
        """``{"loss", "accuracy"}`` of ``ts`` over all of ``val``."""
        (x, y), batch_size = self.val, self.batch_size
        t0 = time.perf_counter()
        logits = []
        for i in range(0, len(x), batch_size):
            part = x[i : i + batch_size]
            pad = batch_size - len(part)
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
            logits.append(np.asarray(self._predict(ts.params, ts.state, part))[: batch_size - pad])
        z = np.concatenate(logits).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = float(-log_p[np.arange(len(y)), y].mean())
        accuracy = float((z.argmax(axis=1) == y).mean())
        self.seconds.append(time.perf_counter() - t0)
        return {"loss": loss, "accuracy": accuracy}

    def extend_record(self, end: EpochEnd) -> dict[str, float]:
        return {f"val_{k}": v for k, v in self.evaluate(end.train_state).items()}


def _size(tree: Any) -> int:
    return int(sum(np.size(v) for v in jax.tree.leaves(tree)))


def accuracy_plot(summary: Mapping[str, Any], path: Any) -> Path:
    """Train and held-out accuracy of the head per epoch, with chance level."""
    from jcnn.course.viz import plt  # the Agg backend

    hist = summary["history"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(hist["epoch"], hist["train_accuracy"], "--o", label="train (mean over the epoch)")
    ax.plot(hist["epoch"], hist["val_accuracy"], "-s", label=f"held-out ({summary['n_val']})")
    ax.axhline(1 / NUM_CLASSES, color="k", linestyle=":", label="chance (10 classes)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    weights = (
        "random weights"
        if summary["random_weights"]
        else f"weights {Path(summary['weights']).name}"
    )
    s = summary["image_size"]
    digits = "sklearn digits (fallback)" if summary["data"].startswith("sklearn") else "MNIST"
    ax.set_title(
        f"{summary['model']} ({weights}), frozen body, new Dense(10) head\n"
        f"{digits} at {s}x{s}x3: {summary['n_train']} train images, batch {summary['batch_size']}, "
        f"Adam {summary['lr']:g}",
        fontsize=9,
    )
    return common.save_figure(fig, path)


def _parser() -> argparse.ArgumentParser:
    p = common.parser("transfer", __doc__.splitlines()[0])
    p.add_argument(
        "--model",
        default="resnet18",
        choices=models.SUPPORTED,
        metavar="NAME",
        help=f"torchvision model name (default resnet18; any of {', '.join(models.SUPPORTED)})",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="PATH",
        help="torchvision-layout state dict of --model (.safetensors or .npz); default: random "
        "weights, offline",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=64,
        help="digits are resized to this square size (default 64)",
    )
    p.add_argument(
        "--n-train",
        type=int,
        default=1500,
        help=f"training images (default 1500; --quick {QUICK_TRAIN})",
    )
    p.add_argument(
        "--n-val",
        type=int,
        default=500,
        help=f"held-out images (default 500; --quick {QUICK_VAL})",
    )
    common.add_training_args(p, epochs=3, batch_size=32, lr=0.001)
    return p


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(argv: Sequence[str] | None = None) -> TransferRun:
    """Runs the experiment; returns the summary and the trees before and after training."""
    p = _parser()
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 2)
    for flag in ("image_size", "n_train", "n_val", "epochs", "batch_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    shape = (args.image_size, args.image_size, 3)
    t_start = time.perf_counter()

    # Every argument is checked before anything is compiled: the input size (shape
    # arithmetic), the weights file (read), the data (loaded).
    try:
        jcnn.output_shape(builder(args.model)(), shape)
    except ShapeError as err:
        _fail(f"--image-size {args.image_size} is too small for {args.model}: {err}")
    t0 = time.perf_counter()
    state_dict = None
    if args.weights is not None:
        try:
            state_dict = load_state_dict(args.weights)
        except WeightsError as err:
            _fail(str(err))
    read_seconds = time.perf_counter() - t0
    data = common.load_data(
        args, n_train=args.n_train, n_val=args.n_val, quick_train=QUICK_TRAIN, quick_val=QUICK_VAL
    )
    print(f"data: {data['source']}", flush=True)

    # The model through from_torchvision: the user's state dict, else random weights made into
    # one (to_torchvision of the builder's init), so both take the same path.
    if state_dict is None:
        t0 = time.perf_counter()
        state_dict = random_state_dict(args.model, shape, args.seed)
        read_seconds = time.perf_counter() - t0
        weights_note = RANDOM_NOTE
    else:
        weights_note = f"{args.weights} ({len(state_dict)} tensors, torchvision layout)"
    print(f"weights: {weights_note}", flush=True)
    t0 = time.perf_counter()
    try:
        net, params, state = models.from_torchvision(args.model, state_dict)
    except ValueError as err:
        if args.weights is None:
            raise
        _fail(
            f"--weights {args.weights}: not a state dict of torchvision.models.{args.model}: {err}"
        )
    jax.block_until_ready((params, state))
    conversion_seconds = time.perf_counter() - t0
    del state_dict
    out = common.output_dir(args.out)

    t0 = time.perf_counter()
    mean, std = normalisation(args.model)
    x_train = prepare_images(data["train"][0], args.image_size, mean=mean, std=std)
    x_val = prepare_images(data["val"][0], args.image_size, mean=mean, std=std)
    y_train, y_val = data["train"][1], data["val"][1]
    prep_seconds = time.perf_counter() - t0
    batch_size = min(args.batch_size, len(x_train))

    # New head, body frozen by name and in inference mode (BatchNorm's running statistics).
    old_head = head_path(args.model, net)
    optimizer = optax.adam(args.lr)
    setup = transfer_setup(
        net,
        L.Dense(NUM_CLASSES),
        shape,
        params,
        state,
        optimizer,
        head=old_head,
        head_name=HEAD,
        body_inference=True,
        seed=args.seed,
    )
    params_total = jcnn.count_params(setup.net, shape)
    head_params = setup.train_state.params
    for key in [*old_head.split("/")[:-1], HEAD]:
        head_params = head_params[key]
    params_trainable = _size(head_params)
    print(
        f"model: {args.model} via from_torchvision ({conversion_seconds:.1f} s); {old_head!r} -> "
        f"Dense({NUM_CLASSES}) {HEAD!r}; params {params_total:,} total, {params_trainable:,} "
        f"trainable; frozen: {', '.join(setup.frozen)} (inference mode)",
        flush=True,
    )

    held_out = HeldOut(setup.net, (x_val, y_val), batch_size=min(128, len(x_val)))
    eval_seconds = held_out.seconds
    t0 = time.perf_counter()
    result = fit(
        setup.net,
        (x_train, y_train),
        optimizer=optimizer,
        frozen=setup.frozen,
        train_state=setup.train_state,
        epochs=args.epochs,
        batch_size=batch_size,
        seed=args.seed,
        on_device=args.loop == "device",
        callbacks=[held_out],
        progress=not args.no_progress,
    )
    fit_seconds = time.perf_counter() - t0
    hist = result.history
    summary = {
        "data": data["source"],
        "model": args.model,
        "weights": args.weights,
        "random_weights": args.weights is None,
        "weights_note": weights_note,
        "image_size": args.image_size,
        "input_shape": list(shape),
        "preprocessing": (
            f"bilinear resize 28x28 -> {args.image_size}x{args.image_size} (jax.image.resize), "
            "grey repeated to RGB, (x - mean) / std per channel"
        ),
        "normalisation": {
            "mean": list(mean),
            "std": list(std),
            "kind": "ImageNet" if mean == IMAGENET_MEAN else "(x - 0.5) / 0.5 (GoogLeNet)",
        },
        "replaced_head": old_head,
        "new_head": f"Dense({NUM_CLASSES}) keyed {HEAD!r}"
        + (f" in {old_head.rsplit('/', 1)[0]!r}" if "/" in old_head else ""),
        "frozen": setup.frozen,
        "body_mode": "inference (train=False: BatchNorm running statistics, no dropout)",
        "params_total": params_total,
        "params_trainable": params_trainable,
        "params_frozen": params_total - params_trainable,
        "n_train": len(x_train),
        "n_val": len(x_val),
        "epochs": len(hist["epoch"]),
        "batch_size": batch_size,
        "lr": args.lr,
        "optimizer": "adam",
        "seed": args.seed,
        "loop": args.loop,
        "final_val_accuracy": hist["val_accuracy"][-1],
        "best_val_accuracy": max(hist["val_accuracy"]),
        "seconds": {
            "weights_read_or_init": read_seconds,
            "conversion": conversion_seconds,
            "data_preparation": prep_seconds,
            "training": fit_seconds - sum(eval_seconds),
            "evaluation": sum(eval_seconds),
            "final_evaluation": eval_seconds[-1],
            "total": time.perf_counter() - t_start,
        },
        "history": hist,
    }
    common.write_json(out / "results.json", summary)
    accuracy_plot(summary, out / "accuracy.png")
    sec = summary["seconds"]
    kind = "random weights" if summary["random_weights"] else f"weights {args.weights}"
    print(
        f"{args.model} ({kind}), new head trained {summary['epochs']} epochs on "
        f"{summary['n_train']} images at {args.image_size}x{args.image_size}: held-out accuracy "
        f"{summary['final_val_accuracy']:.4f} (best {summary['best_val_accuracy']:.4f}) on "
        f"{summary['n_val']}; conversion {sec['conversion']:.1f} s, training {sec['training']:.1f} "
        f"s, evaluation {sec['evaluation']:.1f} s; outputs in {out}"
    )
    return TransferRun(summary, setup.net, (params, state), setup.train_state, result.train_state)


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the experiment; returns the summary written to ``results.json``."""
    return run(argv).summary


if __name__ == "__main__":
    main()
