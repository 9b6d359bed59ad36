"""What the course CNN learned: its filters, and one digit's feature maps layer by layer.

"5 Convolutional Neural Networks" (inner-layer interpretation) and "Convolutional Neural
Networks: The Convolution" (feature maps) describe looking inside a trained CNN. This script
trains the course CNN (conv 5x5 -> 8, pool, conv 3x3 -> 16, pool, dense 10) briefly on MNIST,
then plots the eight learned 5x5 first-layer filters, the 8x16 second-layer 3x3 kernels, and the
maps of one validation digit after every layer up to the last pooling. Intermediate maps are
obtained by applying the network's children (``net.children``) one after another with their own
params, i.e. the prefixes of the serial; the last prefix reproduces the network's logits.

    python -m experiments.filters_and_maps --data-dir <folder>

Writes ``results.json``, ``filters.png``, ``filters_layer2.png`` and ``feature_maps.png``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

import jcnn
from experiments import common
from jcnn import models, viz
from jcnn.layers.core import Layer


def activations(net: Layer, params: dict, state: dict, x: Any) -> dict[str, np.ndarray]:
    """The output of every child of the serial ``net`` for ONE example ``x``, in order.

    Args:
        net: a ``serial`` network (its ``children`` are ``((key, layer), ...)``).
        params, state: the network's params and state (dicts keyed like the children).
        x: one example, e.g. ``(28, 28, 1)``.

    Returns:
        ``{child_key: output}``; output ``i`` is prefix ``children[: i + 1]`` applied to ``x``.
    """
    out: dict[str, np.ndarray] = {}
    h = jnp.asarray(x)
    for key, layer in net.children:
        h, _ = layer.apply(params[key], state[key], h)
        out[key] = np.asarray(h)
    return out


def child_shapes(net: Layer, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The output shape of every child of the serial ``net`` (``jax.eval_shape``, no compute)."""
    shapes, shape = {}, tuple(input_shape)
    for key, layer in net.children:
        shape = tuple(jcnn.output_shape(layer, shape))
        shapes[key] = shape
    return shapes


def main(argv: list[str] | None = None) -> dict:
    """Trains, plots; returns the summary written to ``results.json``."""
    p = common.parser("filters_and_maps", __doc__.splitlines()[0])
    common.add_training_args(p, epochs=3, batch_size=100, lr=0.005)
    p.add_argument("--index", type=int, default=0, help="which validation digit (default 0)")
    p.add_argument(
        "--layers",
        default=None,
        help="comma-separated children whose maps to plot, e.g. Relu_0,MaxPool_1 "
        "(default: every child with an (H, W, C) output)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 1)

    out = common.output_dir(args.out)
    data = common.load_data(args)
    print(f"data: {data['source']}")
    (x_train, y_train), (x_val, y_val) = data["train"], data["val"]
    net = models.cnn()
    n_params = jcnn.count_params(net, x_train.shape[1:])
    print(f"course cnn: {n_params:,} parameters")
    spatial = [k for k, shape in child_shapes(net, x_train.shape[1:]).items() if len(shape) == 3]
    chosen = args.layers.split(",") if args.layers else spatial
    if any(k not in spatial for k in chosen):
        p.error(f"--layers {args.layers}: choose among the children with (H, W, C) maps {spatial}")
    batch_size = min(args.batch_size, len(x_train))
    (result,) = common.train_seeds(
        net,
        (x_train, y_train),
        (x_val, y_val),
        seeds=[args.seed],
        epochs=args.epochs,
        batch_size=batch_size,
        lr=args.lr,
        loop=args.loop,
        progress=not args.no_progress,
        desc="cnn",
    )
    params, state = result.train_state.params, result.train_state.state
    val_acc = result.history["val_accuracy"][-1]

    digit, label = x_val[args.index], int(y_val[args.index])
    acts = activations(net, params, state, digit)
    logits = np.asarray(net.apply(params, state, jnp.asarray(digit))[0])
    last = list(acts)[-1]
    prefix_error = float(np.abs(acts[last] - logits).max())
    maps = {k: acts[k] for k in chosen}
    # Share of exact zeros in each map after ReLU and pooling (ReLU keeps positive matches only).
    sparsity = {
        k: float((v == 0).mean()) for k, v in acts.items() if v.ndim == 3 and "Conv" not in k
    }

    k1, k2 = np.asarray(params["Conv_0"]["kernel"]), np.asarray(params["Conv_1"]["kernel"])
    viz.filter_grid(k1, out / "filters.png", title=f"learned 5x5 filters (val acc {val_acc:.3f})")
    viz.filter_grid(k2, out / "filters_layer2.png", title="second layer: 3x3 kernels (in x out)")
    viz.feature_maps(
        {f"{k} {v.shape[0]}x{v.shape[1]}x{v.shape[2]}": v for k, v in maps.items()},
        out / "feature_maps.png",
        image=digit,
    )
    summary = {
        "data": data["source"],
        "params": n_params,
        "epochs": args.epochs,
        "batch_size": batch_size,
        "lr": args.lr,
        "loop": args.loop,
        "val_accuracy": val_acc,
        "history": result.history,
        "digit": {
            "index": args.index,
            "label": label,
            "predicted": int(logits.argmax()),
            "logits": logits.tolist(),
        },
        "map_shapes": {k: list(v.shape) for k, v in acts.items()},
        "zero_fraction": sparsity,
        "prefix_vs_network_max_difference": prefix_error,
        "filter_shapes": {"Conv_0": list(k1.shape), "Conv_1": list(k2.shape)},
        "filter_norms": np.sqrt((k1**2).sum(axis=(0, 1, 2))).tolist(),
    }
    common.write_json(out / "results.json", summary)
    shapes = " -> ".join(f"{k} {tuple(v.shape)}" for k, v in maps.items())
    print(
        f"val accuracy {val_acc:.4f} after {args.epochs} epoch(s); digit {label} predicted "
        f"{summary['digit']['predicted']}; maps {shapes}; prefix vs net max difference "
        f"{prefix_error:.1e}; outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
