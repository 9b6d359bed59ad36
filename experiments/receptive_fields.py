"""Receptive fields of the course CNN, AlexNet and VGG-19, layer by layer (analytic).

The course text "5 Convolutional Neural Networks" contrasts AlexNet's large early kernels
(11x11 stride 4) with VGG's stacks of 3x3 convolutions, which reach a similar receptive field
with small filters. For every windowed layer this prints the kernel, stride, low-side padding,
dilation, output size, receptive field ``r``, jump ``j`` and the centre ``start`` of the first
unit's field (see :mod:`jcnn.receptive`), and plots ``r`` against depth.

    python -m experiments.receptive_fields --out runs/receptive_fields

Writes ``results.json`` and ``receptive_fields.png`` in ``--out``, its only flag: nothing is
trained, read or allocated (shapes come from ``jax.eval_shape``), so it takes no data, seed or
quick-mode flags.
"""

from __future__ import annotations

from experiments import common
from jcnn import models
from jcnn.tools.receptive import network_receptive_field, receptive_table, rows_as_dicts

#: (label, constructor, input shape of one example).
NETWORKS = (
    ("course CNN", models.cnn, (28, 28, 1)),
    ("AlexNet", models.alexnet, (224, 224, 3)),
    ("VGG-19", models.vgg19, (224, 224, 3)),
)


def plot(results: dict, path) -> None:
    """Receptive field against depth (windowed layers only), log scale, pools marked."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    from jcnn.course.viz import plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, (name, entry) in enumerate(results.items()):
        rows = entry["layers"]
        depth = list(range(1, len(rows) + 1))
        rf = [row["rf"][0] for row in rows]
        ax.plot(depth, rf, "-", color=f"C{i}", label=f"{name} (input {entry['input_shape'][0]})")
        convs = [(d, r) for d, r, row in zip(depth, rf, rows) if row["kind"].startswith("Conv")]
        pools = [(d, r) for d, r, row in zip(depth, rf, rows) if not row["kind"].startswith("Conv")]
        for points, marker in ((convs, "o"), (pools, "s")):
            if points:
                ax.plot(*zip(*points), marker, color=f"C{i}", ms=4)
        ax.axhline(entry["input_shape"][0], color=f"C{i}", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("windowed layer (conv or pool), counted from the input")
    ax.set_ylabel("receptive field r (input pixels, log scale)")
    ax.set_title("receptive field vs depth", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="gray", marker="o", ls="", ms=4, label="conv layer"),
        Line2D([], [], color="gray", marker="s", ls="", ms=4, label="pooling layer"),
        Line2D([], [], color="gray", ls=":", lw=0.8, label="input size (same colour)"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = common.parser("receptive_fields", __doc__.splitlines()[0], data=False, seed=False)
    args = p.parse_args(argv)
    out = common.output_dir(args.out)

    results = {}
    for name, make, shape in NETWORKS:
        net = make()
        rows = network_receptive_field(net, shape)
        print(f"\n{name}, input {shape}:")
        print(receptive_table(rows))
        last = rows[-1]
        results[name] = {
            "input_shape": list(shape),
            "layers": rows_as_dicts(rows),
            "final_rf": list(last.rf),
            "final_jump": list(last.jump),
            "conv_layers": sum(r.spec.kind.startswith("Conv") for r in rows),
        }
    plot(results, out / "receptive_fields.png")
    summary = {
        "networks": results,
        "formula": "r += (d*(k-1)) * j; start += (d*(k-1)/2 - p) * j; j *= s",
    }
    common.write_json(out / "results.json", summary)
    print(
        "final receptive field: "
        + ", ".join(
            f"{name} {e['final_rf'][0]} px (jump {e['final_jump'][0]}, {e['conv_layers']} convs, "
            f"input {e['input_shape'][0]})"
            for name, e in results.items()
        )
        + f"; outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
