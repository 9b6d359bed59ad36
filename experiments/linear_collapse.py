"""Stacked linear convolutions collapse into one; a ReLU between them prevents it.

"Mechanisms of Convolutional Networks" argues from associativity that three 3x3 convolutions in a
row equal a single convolution with one composed filter, so depth adds nothing until a
nonlinearity (ReLU) sits between the layers. Three parts:

1. Exactness: three random multi-channel 3x3 ``Conv`` layers (with biases) and the one 7x7
   ``Conv`` from ``jcnn.signal.compose_conv`` applied to MNIST digits agree to rounding, in
   float64 (``jax.enable_x64``) and in float32.
2. With ReLU between the same layers they no longer agree, and no 7x7 convolution can make them:
   the least-squares best 7x7 filter (fitted on the digits) leaves a large part of the ReLU
   stack's output unexplained, and none of the linear stack's.
3. Training: a linear stack (3x Conv 3x3 -> 4, Dense 10) against the same stack with ReLUs. The
   linear stack is a linear classifier whatever its depth; after training it is collapsed into
   one 7x7 Conv + Dense with identical predictions.

    python -m experiments.linear_collapse --data-dir <folder>
    python -m experiments.linear_collapse --quick

Writes ``results.json``, ``collapse.png`` (a digit through both stacks and the composed filter)
and ``learning_curves.png`` in ``--out``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jcnn
from experiments import common
from jcnn import layers as L
from jcnn import signal, viz
from jcnn.layers.core import Layer

CHANNELS = (4, 4, 2)  # random stack of part 1/2: 1 -> 4 -> 4 -> 2 channels
FLOAT32_TOLERANCE = 1e-4  # relative to the output's scale


def stack(channels: tuple[int, ...], relu: bool, head: bool = False) -> Layer:
    """Three 3x3 VALID convolutions (ReLU after the first two if ``relu``), optional Dense 10."""
    layers: list[Layer] = []
    for i, c in enumerate(channels):
        layers.append(L.Conv(c, (3, 3)))
        if relu and (i < len(channels) - 1 or head):
            layers.append(L.Relu())
    if head:
        layers += [L.Flatten(), L.Dense(10)]
    return L.serial(*layers)


def random_conv_params(rng: np.random.Generator, c_in: int, channels: tuple[int, ...]) -> dict:
    """float64 params of :func:`stack` (no head): kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1²)."""
    params: dict[str, Any] = {}
    for i, c in enumerate(channels):
        fan_in = 9 * c_in
        params[f"Conv_{i}"] = {
            "kernel": rng.standard_normal((3, 3, c_in, c)) / np.sqrt(fan_in),
            "bias": 0.1 * rng.standard_normal(c),
        }
        c_in = c
    return params


def collapse(params: dict) -> dict:
    """One Conv's params equal to ``Conv_0 -> Conv_1 -> Conv_2`` (``jcnn.signal.compose_conv``)."""
    return signal.compose_conv(
        signal.compose_conv(params["Conv_0"], params["Conv_1"]), params["Conv_2"]
    )


def run(net: Layer, params: dict, x: Any) -> jax.Array:
    """Applies ``net`` (no state) to a batch."""
    state = {k: {} for k in params}
    return jcnn.batched(net.apply)(params, state, jnp.asarray(x))[0]


def stack_params(params: dict, relu: bool) -> dict:
    """``params`` (keys Conv_i) plus the empty entries of the ReLUs of :func:`stack`."""
    out = dict(params)
    if relu:
        out.update({"Relu_0": {}, "Relu_1": {}})
    return out


def best_single_conv(x: np.ndarray, y: np.ndarray, size: int) -> tuple[float, np.ndarray]:
    """Least-squares best ``size``x``size`` conv (with bias) from ``x`` to ``y``.

    Returns:
        ``(unexplained, kernel)``: the fraction of ``y``'s variance (around its per-channel mean)
        the best filter leaves unexplained, and that filter.

    Shapes:
        x: (N, H, W, C_in); y: (N, H - size + 1, W - size + 1, C_out).
    """
    win = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
    patches = win.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * x.shape[-1])
    design = np.concatenate([patches, np.ones((len(patches), 1))], axis=1)
    target = y.reshape(-1, y.shape[-1])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coef
    centred = target - target.mean(axis=0)
    return float((residual**2).sum() / (centred**2).sum()), coef[:-1]


def exactness(images: np.ndarray, seed: int) -> tuple[dict, dict]:
    """Parts 1 and 2: errors of the composed filter against the linear and the ReLU stack."""
    rng = np.random.default_rng(seed)
    params = random_conv_params(rng, images.shape[-1], CHANNELS)
    single = L.serial(L.Conv(CHANNELS[-1], (7, 7)))
    report: dict[str, Any] = {"channels": [images.shape[-1], *CHANNELS], "n_images": len(images)}
    with jax.enable_x64(True):
        x64 = images.astype(np.float64)
        composed = collapse(params)
        y_single = np.asarray(run(single, {"Conv_0": composed}, x64))
        y_linear = np.asarray(run(stack(CHANNELS, False), stack_params(params, False), x64))
        y_relu = np.asarray(run(stack(CHANNELS, True), stack_params(params, True), x64))
        scale = float(np.abs(y_linear).max())
        report["composed_kernel_shape"] = list(composed["kernel"].shape)
        report["float64_max_abs_error"] = float(np.abs(y_linear - y_single).max())
        report["float64_relative_error"] = report["float64_max_abs_error"] / scale
        report["relu_max_abs_difference"] = float(np.abs(y_relu - y_single).max())
        report["relu_relative_difference"] = report["relu_max_abs_difference"] / float(
            np.abs(y_relu).max()
        )
    params32 = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    composed32 = collapse(params32)
    x32 = images.astype(np.float32)
    y32_single = np.asarray(run(single, {"Conv_0": composed32}, x32))
    y32_linear = np.asarray(run(stack(CHANNELS, False), stack_params(params32, False), x32))
    report["float32_max_abs_error"] = float(np.abs(y32_linear - y32_single).max())
    report["float32_relative_error"] = report["float32_max_abs_error"] / scale
    report["float32_tolerance"] = FLOAT32_TOLERANCE
    report["linear_unexplained_by_best_7x7"], _ = best_single_conv(x64, y_linear, 7)
    report["relu_unexplained_by_best_7x7"], _ = best_single_conv(x64, y_relu, 7)
    maps = {"linear": y_linear[0, ..., 0], "single": y_single[0, ..., 0], "relu": y_relu[0, ..., 0]}
    return report, maps


def collapse_trained(net: Layer, params: dict, val: tuple[np.ndarray, np.ndarray]) -> dict:
    """Part 3: the trained linear stack as one 7x7 Conv + Dense; same logits and accuracy."""
    collapsed = L.serial(
        L.Conv(params["Conv_2"]["kernel"].shape[-1], (7, 7)), L.Flatten(), L.Dense(10)
    )
    small = {"Conv_0": collapse(params), "Flatten_0": {}, "Dense_0": params["Dense_0"]}
    x, y = val
    logits = np.asarray(run(net, params, x))
    logits_collapsed = np.asarray(run(collapsed, small, x))
    return {
        "collapsed_params": jcnn.count_params(collapsed, x.shape[1:]),
        "max_abs_logit_difference": float(np.abs(logits - logits_collapsed).max()),
        "relative_logit_difference": float(
            np.abs(logits - logits_collapsed).max() / np.abs(logits).max()
        ),
        "accuracy_stack": float((logits.argmax(-1) == y).mean()),
        "accuracy_collapsed": float((logits_collapsed.argmax(-1) == y).mean()),
        "same_predictions": float((logits.argmax(-1) == logits_collapsed.argmax(-1)).mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    """Runs the three parts; returns the summary written to ``results.json``."""
    p = common.parser("linear_collapse", __doc__.splitlines()[0])
    common.add_training_args(p, epochs=10, batch_size=100, lr=0.005, seeds=2)
    p.add_argument(
        "--n-images", type=int, default=200, help="digits for parts 1 and 2 (default 200)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds, args.n_images = min(args.epochs, 1), 1, min(args.n_images, 20)

    out = common.output_dir(args.out)
    data = common.load_data(args)
    print(f"data: {data['source']}")
    x_val = data["val"][0]

    report, maps = exactness(x_val[: args.n_images], args.seed)
    print(
        f"3 linear 3x3 convs {report['channels']} vs one composed "
        f"{tuple(report['composed_kernel_shape'])} conv on {report['n_images']} digits: max error "
        f"{report['float64_max_abs_error']:.2e} (float64), {report['float32_max_abs_error']:.2e} "
        f"(float32, relative {report['float32_relative_error']:.1e} <= {FLOAT32_TOLERANCE:g}); "
        f"with ReLUs: max difference {report['relu_max_abs_difference']:.3f}"
    )
    print(
        "variance left unexplained by the least-squares best 7x7 conv: linear stack "
        f"{report['linear_unexplained_by_best_7x7']:.1e}, ReLU stack "
        f"{report['relu_unexplained_by_best_7x7']:.3f}"
    )
    digit = x_val[0]
    viz.image_grid(
        [digit, maps["linear"], maps["single"], maps["linear"] - maps["single"], maps["relu"],
         maps["relu"] - maps["single"]],
        out / "collapse.png",
        titles=[
            "digit",
            "3 linear convs (ch 0)",
            "one composed 7x7 conv",
            f"difference (max {report['float64_max_abs_error']:.0e})",
            "3 convs with ReLU",
            f"ReLU - composed (max {report['relu_max_abs_difference']:.2f})",
        ],
        cols=3,
    )  # fmt: skip

    nets = {"linear": stack((4, 4, 4), False, head=True), "relu": stack((4, 4, 4), True, head=True)}
    seeds = common.seeds_from(args)
    summary, runs = common.compare_models(nets, data, args, seeds=seeds)
    trained = collapse_trained(nets["linear"], runs["linear"][0].train_state.params, data["val"])
    viz.learning_curves(
        {f"{k} stack": v["mean_history"] for k, v in summary.items()},
        out / "learning_curves.png",
        title=f"3 convs 3x3 -> 4 + Dense 10, linear vs ReLU; mean over {len(seeds)} seed(s)",
    )
    result = {
        "data": data["source"],
        "exactness": report,
        "training": {
            **common.run_settings(data, args),
            "models": summary,
            "linear_stack_collapsed": trained,
        },
    }
    common.write_json(out / "results.json", result)
    print(
        f"composed = stacked to {report['float64_max_abs_error']:.1e} (float64); ReLU stack off by "
        f"{report['relu_max_abs_difference']:.2f}; trained val accuracy: linear stack "
        f"{common.format_accuracy(summary['linear'])}, ReLU stack "
        f"{common.format_accuracy(summary['relu'])}; seed {seeds[0]}'s linear stack as one 7x7 "
        f"conv: accuracy {trained['accuracy_collapsed']:.4f} (stack {trained['accuracy_stack']:.4f}),"
        f" same predictions {trained['same_predictions']:.0%}; outputs in {out}"
    )
    return result


if __name__ == "__main__":
    main()
