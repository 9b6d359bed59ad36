"""Multi-channel filters: "option one" (each map filtered separately) vs "option two" (full depth).

"Mechanisms of Convolutional Networks" stacks 4 filters of 3x3 on a 28x28 digit (26x26x4 maps),
then asks how 8 second-layer filters should meet those 4 maps. Option one applies every 3x3x1
filter to every map separately, giving 24x24x32 maps that never combine two first-layer features
(the text says this "will not work"); option two gives each filter the full depth, 3x3x4, giving
24x24x8 maps that mix all four. In jcnn, option one is a grouped (depthwise) convolution with a
channel multiplier, ``Conv(8 * 4, 3, groups=4)``, and option two the ordinary ``Conv(8, 3)``.

    option_one      Conv 3x3 -> 4, ReLU; Conv 3x3 -> 32, groups=4, ReLU; MaxPool 2; Dense 10
    option_two      Conv 3x3 -> 4, ReLU; Conv 3x3 -> 8, ReLU;            MaxPool 2; Dense 10
    option_two_32   as option_two with 32 full-depth filters (option one's output width)

The second layers have 320 (option one) and 296 (option two) parameters; the dense heads differ
with the number of maps, so option_two_32 compares both options at the same width. Note that the
dense head mixes all maps anyway, so option one is not deprived of mixing altogether; what it
lacks is mixing *before* the nonlinearity and pooling.

    python -m experiments.channel_mixing --data-dir <folder>
    python -m experiments.channel_mixing --quick

Writes ``results.json``, ``accuracy.png`` and ``learning_curves.png`` in ``--out``.
"""

from __future__ import annotations

import jcnn
from experiments import common
from jcnn import layers as L
from jcnn import viz
from jcnn.layers.core import Layer

FIRST = 4  # first-layer filters (the article's example)
SECOND = 8  # second-layer filters


def variants() -> dict[str, Layer]:
    """The three nets of the module docstring; the mixing layer is named ``mix``."""

    def net(mix: Layer) -> Layer:
        return L.serial(
            L.Conv(FIRST, (3, 3)),
            L.Relu(),
            mix.named("mix"),
            L.Relu(),
            L.MaxPool((2, 2)),
            L.Flatten(),
            L.Dense(10),
        )

    return {
        "option_one": net(L.Conv(SECOND * FIRST, (3, 3), groups=FIRST)),
        "option_two": net(L.Conv(SECOND, (3, 3))),
        "option_two_32": net(L.Conv(SECOND * FIRST, (3, 3))),
    }


def mixing_layer(net: Layer, input_shape: tuple[int, ...]) -> dict:
    """Input shape, kernel shape, parameter count and output shape of the ``mix`` layer."""
    children = dict(net.children)
    mid_shape = jcnn.output_shape(L.serial(children["Conv_0"], children["Relu_0"]), input_shape)
    out_shape, params, _ = jcnn.init_shapes(children["mix"], mid_shape)
    return {
        "input_shape": list(mid_shape),
        "kernel_shape": list(params["kernel"].shape),
        "params": jcnn.count_params(children["mix"], mid_shape),
        "output_shape": list(out_shape),
    }


def main(argv: list[str] | None = None) -> dict:
    """Runs the comparison; returns the summary written to ``results.json``."""
    p = common.parser("channel_mixing", __doc__.splitlines()[0])
    common.add_training_args(p, epochs=10, batch_size=100, lr=0.005, seeds=2)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = min(args.epochs, 1), min(args.seeds, 1)

    out = common.output_dir(args.out)
    data = common.load_data(args)
    print(f"data: {data['source']}")
    nets = variants()
    shape = data["train"][0].shape[1:]
    layers = {name: mixing_layer(net, shape) for name, net in nets.items()}
    for name, info in layers.items():
        print(
            f"{name}: second layer kernel {tuple(info['kernel_shape'])}, {info['params']:,} "
            f"parameters, maps {tuple(info['output_shape'])}; whole net "
            f"{jcnn.count_params(nets[name], shape):,} parameters"
        )

    seeds = common.seeds_from(args)
    summary, _ = common.compare_models(nets, data, args, seeds=seeds)
    for name, info in layers.items():
        summary[name]["mixing_layer"] = info

    title = (
        f"{len(data['train'][0])} train / {len(data['val'][0])} val, {args.epochs} epochs, "
        f"{len(seeds)} seed(s)"
    )
    common.accuracy_plot(summary, out / "accuracy.png", title=f"channel mixing: {title}")
    viz.learning_curves(
        {k: v["mean_history"] for k, v in summary.items()},
        out / "learning_curves.png",
        title=f"mean over seeds; {title}",
    )
    result = {
        "data": data["source"],
        **common.run_settings(data, args),
        "models": summary,
    }
    common.write_json(out / "results.json", result)
    parts = ", ".join(
        f"{k} (mix {layers[k]['params']} / net {v['params']:,} params) {common.format_accuracy(v)}"
        for k, v in summary.items()
    )
    print(f"val accuracy over {len(seeds)} seed(s): {parts}; outputs in {out}")
    return result


if __name__ == "__main__":
    main()
