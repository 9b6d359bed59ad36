"""Differentially private training of the course CNN on MNIST: accuracy against epsilon.

The course CNN (conv 5x5 -> 8, pool, conv 3x3 -> 16, pool, dense 10; 5,386 parameters, no
BatchNorm, so every layer is per example) trained with DP-SGD (``jcnn.privacy``: per-example
gradients clipped to ``--l2-clip``, Gaussian noise ``--noise`` times the clip, Adam) on the
course's 5,000 / 5,000 split, once per noise multiplier, and once without privacy (plain Adam,
no clipping) for reference. Epsilon at ``--delta`` comes from Google's dp-accounting, RDP and
PLD accountants, for ``epochs * (5,000 // batch)`` steps at sampling rate ``batch / 5,000``
(Poisson sampling assumed; the loop shuffles, as is usual: see docs/privacy.md).

    python -m experiments.private_mnist --data-dir DIR   # DIR holds the MNIST idx .gz files
    python -m experiments.private_mnist --quick          # seconds

Writes ``results.json``, ``accuracy_vs_epsilon.png`` and ``learning_curves.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import optax
from tqdm.auto import tqdm

import jcnn
from experiments import common
from jcnn import models, privacy, viz
from jcnn.training import FitResult, fit

QUICK_NOISE = "1.0,3.0"


def _noise_levels(p: argparse.ArgumentParser, text: str) -> list[float]:
    """The ``--noise`` list; a usage error (exit status 2) unless every value is a number > 0."""
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        levels = []
    if not levels or any(not (v > 0 and math.isfinite(v)) for v in levels):
        p.error(f"--noise: give positive noise multipliers, e.g. 0.7,1.5 (got {text!r})")
    return levels


def _train(
    net: jcnn.Layer,
    data: dict[str, Any],
    args: Any,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    dp: privacy.DPSGD | None,
    bar: Any,
    label: str,
) -> FitResult:
    """One run of ``fit`` (DP-SGD when ``dp`` is given), advancing the shared ``bar``.

    Every run gets the same ``optimizer`` object, so runs of the same ``dp`` share compiled
    steps (``make_train_step`` caches them by their arguments) and the evaluation step is
    compiled once for all of them.
    """
    return fit(
        net,
        data["train"],
        val=data["val"],
        optimizer=optimizer,
        epochs=args.epochs,
        batch_size=batch_size,
        seed=args.seed,
        privacy=dp,
        on_device=args.loop == "device",
        eval_batch_size=1000,
        progress=False,
        callbacks=[common.SharedBar(bar, run=label)],
    )


def _summary(result: FitResult) -> dict[str, Any]:
    hist = result.history
    return {
        "final_val_accuracy": hist["val_accuracy"][-1],
        "best_val_accuracy": max(hist["val_accuracy"]),
        "history": hist,
    }


def accuracy_vs_epsilon_plot(summary: dict[str, Any], path: Any) -> Any:
    """Final validation accuracy against epsilon (log scale), one point per noise level."""
    from matplotlib.ticker import NullFormatter

    from jcnn.course.viz import plt  # the Agg backend

    runs = summary["private"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, marker, label in (("epsilon_rdp", "o-", "DP-SGD, RDP epsilon"),
                               ("epsilon_pld", "s--", "DP-SGD, PLD epsilon")):  # fmt: skip
        eps = [r[key] for r in runs]
        ax.plot(eps, [r["final_val_accuracy"] for r in runs], marker, label=label)
    for r in runs:
        ax.annotate(
            f"σ={r['noise_multiplier']:g}",
            (r["epsilon_rdp"], r["final_val_accuracy"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=8,
        )
    base = summary["non_private"]["final_val_accuracy"]
    ax.axhline(base, color="k", linestyle=":", label=f"non-private Adam ({base:.3f})")
    ax.set_xscale("log")
    lo, hi = min(r["epsilon_pld"] for r in runs), max(r["epsilon_rdp"] for r in runs)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200) if lo / 2 <= t <= hi * 2]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"epsilon at delta = {summary['delta']:g} (log scale)")
    ax.set_ylabel("final validation accuracy")
    ax.set_title(
        f"DP-SGD course CNN: {summary['n_train']} train / {summary['n_val']} val, "
        f"{summary['epochs']} epochs, batch {summary['batch_size']}, clip {summary['l2_clip']:g}",
        fontsize=9,
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return common.save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs the comparison; returns the summary written to ``results.json``."""
    p = common.parser("private_mnist", __doc__.splitlines()[0])
    common.add_training_args(p, epochs=15, batch_size=250, lr=0.005)
    p.add_argument(
        "--noise",
        default="0.7,1.0,1.5,3.0",
        help=f"noise multipliers, comma-separated (default 0.7,1.0,1.5,3.0; --quick {QUICK_NOISE})",
    )
    p.add_argument("--l2-clip", type=float, default=1.0, help="per-example clip (default 1.0)")
    p.add_argument("--delta", type=float, default=1e-5, help="delta of epsilon (default 1e-5)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 2)
        if args.noise == p.get_default("noise"):
            args.noise = QUICK_NOISE
    levels = _noise_levels(p, args.noise)

    out = common.output_dir(args.out)
    data = common.load_data(args)
    print(f"data: {data['source']}")
    x_train = data["train"][0]
    n_train, batch_size = len(x_train), min(args.batch_size, len(x_train))
    net = models.cnn()
    steps_per_run = args.epochs * (n_train // batch_size)
    rate = batch_size / n_train

    t0 = time.perf_counter()
    bar = tqdm(
        total=(len(levels) + 1) * steps_per_run,
        disable=args.no_progress,
        unit="step",
        desc="private_mnist",
        dynamic_ncols=True,
    )
    optimizer = optax.adam(args.lr)  # one object for every run: their steps are cached
    baseline = _train(net, data, args, batch_size, optimizer, None, bar, "non-private")
    private_runs = []
    for sigma in levels:
        dp = privacy.DPSGD(l2_clip=args.l2_clip, noise_multiplier=sigma)
        result = _train(net, data, args, batch_size, optimizer, dp, bar, f"sigma {sigma:g}")
        eps = {
            f"epsilon_{acc}": dp.epsilon(
                result, num_examples=n_train, batch_size=batch_size, delta=args.delta,
                accountant=acc,
            )
            for acc in privacy.ACCOUNTANTS
        }  # fmt: skip
        private_runs.append({"noise_multiplier": sigma, **eps, **_summary(result)})
    bar.close()
    wall = time.perf_counter() - t0

    summary = {
        "data": data["source"],
        "model": "course CNN (jcnn.models.cnn)",
        "params": jcnn.count_params(net, x_train.shape[1:]),
        "n_train": n_train,
        "n_val": len(data["val"][0]),
        "epochs": args.epochs,
        "batch_size": batch_size,
        "lr": args.lr,
        "optimizer": "adam",
        "l2_clip": args.l2_clip,
        "delta": args.delta,
        "steps": steps_per_run,
        "sampling_rate": rate,
        "sampling": "shuffled batches, accounted as Poisson sampling at rate batch / n_train",
        "seed": args.seed,
        "loop": args.loop,
        "wall_seconds": wall,
        "non_private": _summary(baseline),
        "private": private_runs,
    }
    common.write_json(out / "results.json", summary)
    accuracy_vs_epsilon_plot(summary, out / "accuracy_vs_epsilon.png")
    viz.learning_curves(
        {"non-private": baseline.history}
        | {f"sigma {r['noise_multiplier']:g}": r["history"] for r in private_runs},
        out / "learning_curves.png",
        title=f"DP-SGD course CNN, Adam {args.lr}, batch {batch_size}, clip {args.l2_clip:g}",
    )
    points = ", ".join(
        f"sigma {r['noise_multiplier']:g}: eps {r['epsilon_rdp']:.2f} (PLD "
        f"{r['epsilon_pld']:.2f}) acc {r['final_val_accuracy']:.4f}"
        for r in private_runs
    )
    print(
        f"after {args.epochs} epochs at delta {args.delta:g}: non-private acc "
        f"{summary['non_private']['final_val_accuracy']:.4f}; {points}; {wall:.0f} s; "
        f"outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
