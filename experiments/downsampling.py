"""Downsampling by max-pooling vs by stride vs by a larger strided filter, on MNIST.

"Mechanisms of Convolutional Networks" names three ways to shrink feature maps: a 3x3 convolution
followed by 2x2 max-pooling, a 3x3 convolution with stride 2, and a larger 5x5 convolution with
stride 2. It reports (without numbers) that stride 1 plus pooling gives better accuracy than
stride 2, and that max-pooling "experimentally has better results than increasing stride". This
script puts the claim to a test on small nets with two downsampling stages each:

    pool    Conv 3x3 -> 8, ReLU, MaxPool 2;  Conv 3x3 -> 16, ReLU, MaxPool 2;  Dense 10
    stride3 Conv 3x3/2 -> 8, ReLU;           Conv 3x3/2 -> 16, ReLU;           Dense 10
    stride5 Conv 5x5/2 -> 6, ReLU;           Conv 5x5/2 -> 14, ReLU;           Dense 10

All convolutions use SAME padding, so every net maps 28x28 to 14x14 to 7x7 and the dense layer
sees 7x7xC. pool and stride3 have the same 9,098 parameters; stride5 has fewer channels so that
its larger filters fit the same budget (9,140). Each net is trained from several seeds on the
same data; the validation accuracy after the last epoch is reported as mean ± sample std.

    python -m experiments.downsampling --data-dir <folder>
    python -m experiments.downsampling --quick

Writes ``results.json``, ``accuracy.png`` (per seed and mean ± std) and ``learning_curves.png``
(mean over seeds) in ``--out``.
"""

from __future__ import annotations

import math

import jcnn
from experiments import common
from jcnn import layers as L
from jcnn import viz
from jcnn.layers.core import Layer


def variants() -> dict[str, Layer]:
    """The three downsampling nets (see the module docstring)."""

    def stage(channels: int, kernel: int, stride: int, pool: bool) -> list[Layer]:
        conv = L.Conv(channels, (kernel, kernel), stride=stride, padding="SAME")
        return [conv, L.Relu(), L.MaxPool((2, 2))] if pool else [conv, L.Relu()]

    head = [L.Flatten(), L.Dense(10)]
    return {
        "pool": L.serial(*stage(8, 3, 1, True), *stage(16, 3, 1, True), *head),
        "stride3": L.serial(*stage(8, 3, 2, False), *stage(16, 3, 2, False), *head),
        "stride5": L.serial(*stage(6, 5, 2, False), *stage(14, 5, 2, False), *head),
    }


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison; returns the summary written to ``results.json``."""
    p = common.parser("downsampling", __doc__.splitlines()[0])
    common.add_training_args(p, epochs=10, batch_size=100, lr=0.005, seeds=3)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = min(args.epochs, 1), min(args.seeds, 2)

    out = common.output_dir(args.out)
    data = common.load_data(args)
    print(f"data: {data['source']}")
    nets = variants()
    shape = data["train"][0].shape[1:]
    for name, net in nets.items():
        print(f"{name}: {jcnn.count_params(net, shape):,} parameters")

    seeds = common.seeds_from(args)
    summary, _ = common.compare_models(nets, data, args, seeds=seeds)

    pool = summary["pool"]
    rival_name = max(
        (k for k in summary if k != "pool"), key=lambda k: summary[k]["mean_val_accuracy"]
    )
    rival = summary[rival_name]
    diff = pool["mean_val_accuracy"] - rival["mean_val_accuracy"]
    n = len(seeds)
    stderr = math.sqrt((pool["std_val_accuracy"] ** 2 + rival["std_val_accuracy"] ** 2) / n)
    verdict = {
        "best": max(summary, key=lambda k: summary[k]["mean_val_accuracy"]),
        "pool_minus_best_other": diff,
        "best_other": rival_name,
        "standard_error_of_difference": stderr,
        "difference_in_standard_errors": diff / stderr if stderr > 0 else None,
        "pool_wins": diff > 0,
        "pool_wins_clearly": diff > 2 * stderr,
    }

    title = (
        f"{len(data['train'][0])} train / {len(data['val'][0])} val, {args.epochs} epochs, "
        f"{n} seeds, Adam {args.lr}, batch {min(args.batch_size, len(data['train'][0]))}"
    )
    common.accuracy_plot(summary, out / "accuracy.png", title=f"downsampling: {title}")
    viz.learning_curves(
        {k: v["mean_history"] for k, v in summary.items()},
        out / "learning_curves.png",
        title=f"mean over seeds; {title}",
    )
    result = {
        "data": data["source"],
        **common.run_settings(data, args),
        "models": summary,
        "verdict": verdict,
    }
    common.write_json(out / "results.json", result)
    parts = ", ".join(
        f"{k} ({v['params']:,} params) {common.format_accuracy(v)}" for k, v in summary.items()
    )
    answer = (
        "yes" if verdict["pool_wins_clearly"] else "marginally" if verdict["pool_wins"] else "no"
    )
    print(
        f"val accuracy over {n} seeds: {parts}; does max-pooling win? {answer} "
        f"(pool - {rival_name} = {diff:+.4f}, {stderr:.4f} s.e.); outputs in {out}"
    )
    return result


if __name__ == "__main__":
    main()
