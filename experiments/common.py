"""Shared plumbing of the experiment scripts: flags, output folder, data, training helpers."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jcnn import compile_cache
from jcnn.data import ChecksumMismatchError, DatasetUnavailableError, load_mnist_or_fallback
from jcnn.training import Callback


def parser(
    name: str, description: str, *, data: bool = True, seed: bool | str = True
) -> argparse.ArgumentParser:
    """An argument parser with the flags an experiment uses.

    Every experiment has ``--out``. Those that read MNIST (``data=True``) also have
    ``--data-dir``, ``--offline``, ``--quick`` and ``--no-progress``; ``seed`` adds ``--seed``
    (a string: its help text, saying what it seeds). Scripts that compute without data or
    training (``data=False``) get no flags that would do nothing.
    """
    compile_cache.enable()  # every experiment starts here: reruns load their compiled programs
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    if data:
        p.add_argument(
            "--data-dir",
            default=None,
            help="folder with the MNIST idx .gz files; it must hold them (default: "
            "$JCNN_DATA_DIR, the cache, a download, else scikit-learn's 8x8 digits)",
        )
    p.add_argument("--out", default=f"runs/{name}", help="output folder for the JSON and PNGs")
    if seed:
        p.add_argument(
            "--seed",
            type=int,
            default=0,
            help=seed if isinstance(seed, str) else "random seed (default 0)",
        )
    if data:
        p.add_argument("--quick", action="store_true", help="a CI-sized run (seconds, not minutes)")
        p.add_argument("--no-progress", action="store_true", help="hide progress bars")
        p.add_argument(
            "--offline", action="store_true", help="never download; use local files or the fallback"
        )
    return p


def output_dir(path: str | os.PathLike[str]) -> Path:
    """Creates and returns the output folder."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Writes JSON atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)
    return path


def run_settings(data: dict[str, Any], args: Any) -> dict[str, Any]:
    """The training settings every comparison script records in its results JSON."""
    return {
        "n_train": len(data["train"][0]),
        "n_val": len(data["val"][0]),
        "epochs": args.epochs,
        "batch_size": min(args.batch_size, len(data["train"][0])),
        "lr": args.lr,
        "loop": args.loop,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# Training helpers shared by the course experiments ------------------------------------------------

LOOPS = ("device", "host")
DEFAULT_LOOP = "device"
"""Default training loop of the course experiments: ``"device"``, the data resident on the device
and each chunk of steps one compiled call (``jcnn.training.DeviceLoop``: a ``lax.fori_loop``);
``"host"`` is one compiled call per step with host batches. Both give the same history for the same seed.
"""


def add_training_args(
    p: argparse.ArgumentParser,
    *,
    epochs: int,
    batch_size: int = 1000,
    lr: float = 0.005,
    seeds: int | None = None,
) -> argparse.ArgumentParser:
    """Adds ``--epochs``, ``--batch-size``, ``--lr``, ``--loop`` (and ``--seeds``) to ``p``."""
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default {epochs})")
    p.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"batch size (default {batch_size})"
    )
    p.add_argument("--lr", type=float, default=lr, help=f"Adam learning rate (default {lr})")
    if seeds is not None:
        p.add_argument(
            "--seeds",
            type=int,
            default=seeds,
            help=f"number of seeds per model: --seed, --seed+1, ... (default {seeds})",
        )
    p.add_argument(
        "--loop",
        choices=LOOPS,
        default=DEFAULT_LOOP,
        help="'device': the data on the device, compiled chunks of steps; 'host': one compiled "
        f"call per step with host batches (default {DEFAULT_LOOP})",
    )
    return p


DATA_ERRORS: tuple[type[Exception], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    DatasetUnavailableError,
    ChecksumMismatchError,
)
"""What :func:`load_data` turns into a one-line error and exit status 2 (a bad ``--data-dir``)."""


def load_data(
    args: argparse.Namespace,
    *,
    n_train: int | None = 5000,
    n_val: int | None = 5000,
    quick_train: int = 1000,
    quick_val: int | None = 500,
) -> dict[str, Any]:
    """The experiments' data: ``jcnn.data.load_mnist_or_fallback`` with the flags of ``args``.

    ``n_train`` / ``n_val`` MNIST images (None: the loader's default). With only the t10k files
    the defaults are the course's split, the first 5,000 t10k images for training and the last
    5,000 for validation; with the full MNIST they are 5,000 random training images and the last
    5,000 of the training file. ``--quick`` keeps at most ``quick_train`` random training images
    and the last ``quick_val`` validation images (None: all). Without MNIST (and without
    ``--data-dir``) it falls back to scikit-learn's digits and says why on stderr. The returned
    ``source`` says exactly which images were used.

    Raises:
        SystemExit: (status 2) ``--data-dir`` (or ``$JCNN_DATA_DIR``) does not exist, is a
            file or holds no MNIST files, or a file fails its checksum: the message, which
            names the path, is printed to stderr without a traceback.
    """
    if args.quick:
        n_train = quick_train if n_train is None else min(n_train, quick_train)
        if quick_val is not None:
            n_val = quick_val if n_val is None else min(n_val, quick_val)
    try:
        return load_mnist_or_fallback(
            args.data_dir, download=not args.offline, n_train=n_train, n_val=n_val
        )
    except DATA_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


@contextlib.contextmanager
def fast_prng() -> Iterator[None]:
    """Runs the block with ``jax_threefry_partitionable=False``.

    JAX's default (``True``) makes XLA:CPU compile every threefry random draw several times more
    slowly (measured here: about 2.8 s against 0.5 s of CPU per draw shape at the default
    optimisation level). The numbers drawn differ from the default's, equally random and
    deterministic per seed. Only the block is affected. (The course experiments no longer need
    it: ``jcnn.train.create_train_state`` compiles the whole initialisation at once.)
    """
    import jax

    with jax.threefry_partitionable(False):
        yield


class SharedBar(Callback):
    """A fit callback that advances one tqdm bar shared by several runs.

    Each compiled chunk adds its steps to ``bar``; each epoch's end shows the run's label
    (``label=value`` pairs, e.g. ``seed=3``), the epoch (from 1) and the validation accuracy.
    """

    def __init__(self, bar: Any, **label: Any) -> None:
        self.bar, self.label = bar, label

    def on_chunk_end(self, chunk: Any) -> None:
        self.bar.update(chunk.num_steps)

    def on_epoch_end(self, end: Any) -> None:
        shown = {**self.label, "epoch": end.epoch + 1}
        if "val_accuracy" in end.record:
            shown["val_acc"] = f"{end.record['val_accuracy']:.4f}"
        self.bar.set_postfix(**shown)


def train_seeds(
    net: Any,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    lr: float,
    loop: str = DEFAULT_LOOP,
    progress: bool = True,
    desc: str | None = None,
) -> list[Any]:
    """Trains ``net`` once per seed with Adam, compiling its steps only once.

    ``jcnn.fit(..., seed=s)`` for every seed, with one progress bar over all of them and the
    same optimizer object for every seed: ``jcnn.make_train_step`` caches its steps by their
    arguments (and the evaluation step is cached the same way), so the jitted train and eval
    steps are compiled once and reused for every seed, and a multi-seed comparison pays one step
    compilation per architecture.

    Args:
        net: the network (per-example ``Layer``).
        train, val: ``(images, labels)`` numpy arrays.
        seeds: one run per seed (initialisation and shuffling).
        epochs, batch_size, lr: the runs (Adam; each epoch drops its last partial batch).
        loop: ``"host"`` or ``"device"`` (see :data:`DEFAULT_LOOP`).
        progress: a tqdm bar over all steps of all seeds.
        desc: label of the bar.

    Returns:
        One ``jcnn.FitResult`` per seed (``train_state``, ``history`` with ``epoch``,
        ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``seconds``).

    Shapes:
        train[0]: ``(N, *example_shape)``; ``N >= batch_size``.
    """
    if loop not in LOOPS:
        raise ValueError(f"train_seeds: loop must be one of {LOOPS}, got {loop!r}")
    n = len(train[0])
    if n < batch_size:
        raise ValueError(f"train_seeds: {n} training examples < batch_size {batch_size}")
    return _train_seeds(net, train, val, seeds, epochs, batch_size, lr, loop, progress, desc)


def _train_seeds(net, train, val, seeds, epochs, batch_size, lr, loop, progress, desc):
    import optax
    from tqdm.auto import tqdm

    from jcnn.training import fit

    optimizer = optax.adam(lr)  # one optimizer for every seed: fit's steps are compiled once
    bar = tqdm(
        total=len(seeds) * epochs * (len(train[0]) // batch_size),
        disable=not progress,
        unit="step",
        desc=desc,
        dynamic_ncols=True,
    )
    results = []
    for seed in seeds:
        result = fit(
            net,
            train,
            val=val,
            optimizer=optimizer,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            on_device=loop == "device",
            eval_batch_size=batch_size,
            progress=False,
            callbacks=[SharedBar(bar, seed=seed)],
        )
        results.append(result)
    bar.close()
    return results


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def mean_history(histories: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, list[float]]:
    """Per-epoch mean of several histories of the same length (for one curve per model)."""
    keys = [k for k in histories[0] if all(k in h for h in histories)]
    return {k: np.mean([h[k] for h in histories], axis=0).tolist() for k in keys}


def seeds_from(args: argparse.Namespace) -> list[int]:
    """``[--seed, --seed + 1, ..., --seed + --seeds - 1]``."""
    return list(range(args.seed, args.seed + args.seeds))


def compare_models(
    nets: Mapping[str, Any],
    data: Mapping[str, Any],
    args: argparse.Namespace,
    *,
    seeds: Sequence[int],
    batch_size: int | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[Any]]]:
    """Trains every net of ``nets`` once per seed on ``data`` with the flags of ``args``.

    Args:
        nets: ``{name: Layer}``.
        data: ``{"train": (x, y), "val": (x, y)}``.
        args: parsed flags with ``epochs``, ``batch_size``, ``lr``, ``loop``, ``no_progress``.
        seeds: the seeds of every net.
        batch_size: overrides ``args.batch_size`` (e.g. capped by the training-set size).

    Returns:
        ``(summary, runs)``: ``summary[name]`` holds ``params``, ``seeds``, per-seed
        ``final_val_accuracy``, ``mean_val_accuracy``, ``std_val_accuracy`` (sample std),
        ``mean_history`` and ``seconds`` (training wall time, all seeds); ``runs[name]`` is the
        list of ``FitResult`` (one per seed).
    """
    import jcnn

    (x_train, y_train), val = data["train"], data["val"]
    batch_size = min(batch_size or args.batch_size, len(x_train))
    summary: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[Any]] = {}
    for name, net in nets.items():
        t0 = time.perf_counter()
        results = train_seeds(
            net,
            (x_train, y_train),
            val,
            seeds=seeds,
            epochs=args.epochs,
            batch_size=batch_size,
            lr=args.lr,
            loop=args.loop,
            progress=not args.no_progress,
            desc=name,
        )
        finals = [r.history["val_accuracy"][-1] for r in results]
        mean, std = mean_std(finals)
        summary[name] = {
            "params": jcnn.count_params(net, x_train.shape[1:]),
            "seeds": list(seeds),
            "final_val_accuracy": finals,
            "mean_val_accuracy": mean,
            "std_val_accuracy": std,
            "mean_history": mean_history([r.history for r in results]),
            "seconds": time.perf_counter() - t0,
        }
        runs[name] = results
    return summary, runs


def format_accuracy(entry: Mapping[str, Any]) -> str:
    """``"0.9512 ± 0.0031"`` from a :func:`compare_models` summary entry."""
    return f"{entry['mean_val_accuracy']:.4f} ± {entry['std_val_accuracy']:.4f}"


def accuracy_plot(
    summary: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Final validation accuracy per model: one dot per seed, the mean and ± one std as a bar.

    A legend says what the marks are: "dots: one per seed (N seeds)" and "square and bar: mean ±
    sample std over the N seeds" (std 0 for a single seed).

    Args:
        summary: :func:`compare_models`' summary.
        path: PNG file to write.
        title: figure title.
    """
    from jcnn.course.viz import plt  # the Agg backend

    counts = sorted({len(entry["final_val_accuracy"]) for entry in summary.values()})
    n = "/".join(str(c) for c in counts)
    seeds = f"{n} seed{'s' if counts != [1] else ''}"
    fig, ax = plt.subplots(figsize=(2.6 + 1.6 * len(summary), 3.8))
    for i, entry in enumerate(summary.values()):
        finals = entry["final_val_accuracy"]
        ax.plot(
            [i] * len(finals),
            finals,
            "o",
            alpha=0.5,
            color="C0",
            label=f"one seed's final val accuracy ({seeds})" if i == 0 else None,
        )
        ax.errorbar(
            [i + 0.15],
            [entry["mean_val_accuracy"]],
            yerr=[entry["std_val_accuracy"]],
            fmt="s",
            color="C3",
            capsize=4,
            label=f"mean ± sample std over the {seeds}" if i == 0 else None,
        )
    ax.set_xticks(range(len(summary)))
    ax.set_xticklabels(
        [f"{name}\n{entry['params']:,} params" for name, entry in summary.items()], fontsize=8
    )
    ax.set_xlim(-0.5, len(summary) - 0.5)
    ax.set_ylabel("final validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Saves a matplotlib figure as PNG atomically (temporary file, then rename) and closes it."""
    from jcnn.course.viz import plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path
