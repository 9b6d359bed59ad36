"""Hand-crafted 3x3 kernels on an MNIST digit and on a photograph.

"Convolutional Neural Networks: The Convolution" blurs an image with the 1/9 box kernel and finds
vertical edges with a Sobel kernel and diagonals with a diagonal kernel; "Mechanisms of
Convolutional Networks" runs a vertical edge detector over an MNIST digit; "5 Convolutional
Neural Networks" mentions smoothing, sharpening and edge detection. This script applies

    box blur    ones(3, 3) / 9
    sharpen     [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
    sobel_v     [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]   (vertical edges: left-right change)
    sobel_h     sobel_v transposed                      (horizontal edges)
    diagonal    [[2, -1, -1], [-1, 2, -1], [-1, -1, 2]]  (lines running top-left to bottom-right)

as cross-correlations with zero padding ("same" size, ``jcnn.signal.correlate``) to one MNIST
digit and to scikit-learn's bundled photograph ``china.jpg`` (``sklearn.datasets.
load_sample_image``, shipped with scikit-learn, read with pillow, which matplotlib already
requires; no download), in grey levels. The same five kernels set as the weights of one
``Conv(5, 3, padding="SAME")`` layer give the same maps (the difference is printed).

    python -m experiments.handcrafted_kernels --data-dir <folder>

Writes ``results.json`` and ``kernels.png`` (one row per image: input, then each filtered map,
shown clipped to its 1-99th percentiles).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments import common
from jcnn import layers as L
from jcnn import signal, viz

SOBEL_V = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
KERNELS: dict[str, np.ndarray] = {
    "box_blur": np.full((3, 3), 1 / 9, np.float32),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32),
    "sobel_v": SOBEL_V,
    "sobel_h": SOBEL_V.T.copy(),
    "diagonal": np.array([[2, -1, -1], [-1, 2, -1], [-1, -1, 2]], np.float32),
}


def natural_image(step: int) -> tuple[np.ndarray | None, str]:
    """scikit-learn's ``china.jpg`` as grey levels in [0, 1], every ``step``-th pixel.

    Returns:
        ``(image or None, description)``; None when scikit-learn cannot read it (no pillow).

    Shapes:
        image: ``(ceil(427 / step), ceil(640 / step))``.
    """
    try:
        from sklearn.datasets import load_sample_image

        rgb = load_sample_image("china.jpg").astype(np.float32) / 255.0
    except (ImportError, OSError, ValueError) as err:
        return None, f"china.jpg unavailable ({type(err).__name__}: {err})"
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma
    return grey[::step, ::step], f"sklearn.datasets.load_sample_image('china.jpg'), step {step}"


def filter_all(image: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """Every kernel of :data:`KERNELS` applied to ``image`` (correlate, mode "same").

    Returns:
        ``(maps, conv_difference)``: the maps by kernel name, and the largest difference between
        them and a ``Conv(5, 3, padding="SAME")`` layer carrying the same kernels.

    Shapes:
        image: (H, W) -> each map (H, W).
    """
    maps = {k: np.asarray(signal.correlate(image, w, mode="same")) for k, w in KERNELS.items()}
    conv = L.Conv(len(KERNELS), (3, 3), padding="SAME")
    params = {
        "kernel": jnp.asarray(np.stack(list(KERNELS.values()), axis=-1)[:, :, None, :]),
        "bias": jnp.zeros((len(KERNELS),), jnp.float32),
    }
    y, _ = conv.apply(params, {}, jnp.asarray(image)[..., None])
    y = np.asarray(y)
    diff = max(float(np.abs(y[..., i] - m).max()) for i, m in enumerate(maps.values()))
    return maps, diff


def for_display(m: np.ndarray, percent: float = 1.0) -> np.ndarray:
    """``m`` clipped to its [percent, 100 - percent] percentiles, so that a few extreme pixels
    (the zero-padded border) do not wash out the grey scale of the plot."""
    lo, hi = np.percentile(m, [percent, 100.0 - percent])
    return np.clip(m, lo, hi)


def stats(image: np.ndarray, maps: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per kernel: weight sum, output range and mean absolute response (a few key numbers)."""
    return {
        "shape": list(image.shape),
        "kernels": {
            k: {
                "weight_sum": float(KERNELS[k].sum()),
                "min": float(m.min()),
                "max": float(m.max()),
                "mean_abs": float(np.abs(m).mean()),
            }
            for k, m in maps.items()
        },
    }


def main(argv: list[str] | None = None) -> dict:
    """Filters both images; returns the summary written to ``results.json``."""
    p = common.parser("handcrafted_kernels", __doc__.splitlines()[0])
    p.add_argument("--index", type=int, default=0, help="which validation digit (default 0)")
    p.add_argument(
        "--step",
        type=int,
        default=1,
        help="keep every step-th pixel of the photograph (default 1, the full 427x640)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.step = max(args.step, 4)

    out = common.output_dir(args.out)
    data = common.load_data(args)
    print(f"data: {data['source']}")
    x_val, y_val = data["val"]
    digit = x_val[args.index, ..., 0]
    photo, photo_source = natural_image(args.step)
    print(f"natural image: {photo_source}")

    inputs = {"digit": digit} if photo is None else {"digit": digit, "photo": photo}
    images, titles, results = [], [], {}
    for name, image in inputs.items():
        maps, diff = filter_all(image)
        results[name] = {**stats(image, maps), "max_difference_conv_layer": diff}
        images += [image, *(for_display(m) for m in maps.values())]
        titles += [f"{name} {image.shape[0]}x{image.shape[1]}", *maps]
    results["digit"]["label"] = int(y_val[args.index])
    viz.image_grid(images, out / "kernels.png", titles=titles, cols=len(KERNELS) + 1)

    summary = {
        "data": data["source"],
        "natural_image": photo_source if photo is not None else None,
        "kernels": {k: v.tolist() for k, v in KERNELS.items()},
        "images": results,
    }
    common.write_json(out / "results.json", summary)
    diff = max(r["max_difference_conv_layer"] for r in results.values())
    sobel = results["digit"]["kernels"]["sobel_v"]
    print(
        f"{len(KERNELS)} kernels on {' and '.join(inputs)}; correlate vs Conv layer max difference "
        f"{diff:.1e}; digit {results['digit']['label']}: sobel_v range "
        f"[{sobel['min']:.2f}, {sobel['max']:.2f}]; outputs in {out}"
    )
    return summary


if __name__ == "__main__":
    main()
