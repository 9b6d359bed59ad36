"""Regenerates docs/experiments.md from the experiments' results under runs/ (and can run them).

    python -m experiments.results_page                                  # runs/ -> the page
    python -m experiments.results_page --run all --data-dir <folder>    # run each one first

Reads ``runs/<name>/results.json`` (``metrics.json`` for ``train_mnist``) of every experiment in
:data:`EXPERIMENTS`, writes the page (``--page``, default ``docs/experiments.md``) with one table
row per experiment (what it shows, its command, the measured result) and one section of plots
per experiment, copying its PNGs into ``--images`` (default ``docs/images``, each shrunk below
:data:`MAX_IMAGE_BYTES`). An experiment without results gets a row saying how to produce them.

``--run NAME ...`` (or ``--run all``) first runs those experiments with their default (full)
settings, one after another, as ``python -m experiments.<name> --data-dir <folder> --offline
--no-progress`` (the flags each one takes), logging to ``runs/<name>/log.txt`` and recording wall
and CPU time and the load average in ``runs/<name>/timing.json``. Folder names of this machine
never reach the page: the data source is shown without its folder and commands say
``--data-dir <folder>``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_IMAGE_BYTES = 200_000
"""Largest PNG copied into the docs; bigger ones are re-saved smaller."""


@dataclass(frozen=True)
class Experiment:
    """One row of the page.

    Attributes:
        name: the module ``experiments.<name>``.
        shows: what it shows (Markdown).
        result: ``result(results) -> Markdown`` of the measured numbers.
        uses_data: whether it takes ``--data-dir`` / ``--offline`` / ``--no-progress``.
        results_file: the JSON it writes in its ``--out``.
        extra_args: flags of its documented full run besides the data flags.
        note: a sentence after the result (e.g. a setting smaller than the default).
    """

    name: str
    shows: str
    result: Callable[[Mapping[str, Any]], str]
    uses_data: bool = True
    results_file: str = "results.json"
    extra_args: tuple[str, ...] = ()
    note: str = ""

    def argv(self, data_dir: str | None) -> list[str]:
        """The flags of its full run (``--data-dir`` only when it reads data and one is given)."""
        flags = list(self.extra_args)
        if self.uses_data and data_dir is not None:
            flags = ["--data-dir", data_dir, *flags]
        return flags

    def command(self) -> str:
        """Its command as shown on the page (``--data-dir <folder>``)."""
        return " ".join(["python", "-m", f"experiments.{self.name}", *self.argv("<folder>")])


def run_experiment(exp: Experiment, runs: Path, data_dir: str | None) -> dict[str, Any]:
    """Runs ``exp``'s full setting in a subprocess; writes and returns its ``timing.json``.

    Raises:
        RuntimeError: the experiment exited with a non-zero status (the log's end is quoted).
    """
    out = runs / exp.name
    out.mkdir(parents=True, exist_ok=True)
    argv = exp.argv(data_dir) + ["--out", str(out)]
    if exp.uses_data:
        argv += ["--offline", "--no-progress"]
    cmd = [sys.executable, "-m", f"experiments.{exp.name}", *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        tail = (out / "log.txt").read_text()[-2000:]
        raise RuntimeError(f"experiments.{exp.name} exited with status {rc}:\n{tail}")
    timing = {
        "command": exp.command(),
        "wall_seconds": wall,
        "user_cpu_seconds": after.ru_utime - before.ru_utime,
        "system_cpu_seconds": after.ru_stime - before.ru_stime,
        "load_average_after": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }
    (out / "timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    return timing


# Results as Markdown --------------------------------------------------------------------------


def _acc(entry: Mapping[str, Any]) -> str:
    """``"0.9644 ± 0.0050"`` of a ``common.compare_models`` entry."""
    return f"{entry['mean_val_accuracy']:.4f} ± {entry['std_val_accuracy']:.4f}"


def _seeds(models: Mapping[str, Mapping[str, Any]]) -> str:
    n = sorted({len(m["seeds"]) for m in models.values()})
    return "/".join(map(str, n)) + (" seed" if n == [1] else " seeds")


def _train_mnist(r: Mapping[str, Any]) -> str:
    if r.get("final_val_accuracy") is None:
        return "no epochs recorded"
    return (
        f"validation accuracy {r['final_val_accuracy']:.4f} after {r['epochs']} epochs (best "
        f"{r['best_val_accuracy']:.4f}); {r['median_epoch_seconds_after_compile']:.2f} s per epoch "
        f"after the first (the first, which compiles: {r['first_epoch_seconds']:.1f} s), "
        f"{r['loop']} loop."
    )


def _to(value: float) -> str:
    """``"exactly"`` for 0, else ``"to 2e-16"``."""
    return "exactly" if value == 0 else f"to {value:.0e}"


def _ahead_from(ahead: Sequence[float], behind: Sequence[float]) -> int | None:
    """The first epoch (from 1) from which ``ahead`` stays above ``behind``; None if never."""
    for start in range(len(ahead)):
        if all(a > b for a, b in zip(ahead[start:], behind[start:])):
            return start + 1
    return None


def _seed_mnist(r: Mapping[str, Any]) -> str:
    mlp, cnn = r["models"]["mlp"], r["models"]["cnn"]
    text = (
        f"MLP {mlp['final_val_accuracy']:.4f} (best {mlp['best_val_accuracy']:.4f}), CNN "
        f"{cnn['final_val_accuracy']:.4f} (best {cnn['best_val_accuracy']:.4f}) after "
        f"{r['epochs']} epochs"
    )
    start = _ahead_from(cnn["history"]["val_accuracy"], mlp["history"]["val_accuracy"])
    ratio = mlp["params"] / cnn["params"]
    if start is None:
        return text + f"; the CNN ({ratio:.0f}x fewer parameters) does not stay ahead of the MLP."
    return (
        text + f"; the CNN is ahead of the MLP from epoch {start} on with {ratio:.0f}x fewer "
        "parameters, as the course says."
    )


def _downsampling(r: Mapping[str, Any]) -> str:
    m, v = r["models"], r["verdict"]
    parts = ", ".join(f"{k} {_acc(e)}" for k, e in m.items())
    if v["pool_wins_clearly"]:
        verdict = "Max-pooling wins clearly"
    elif v["pool_wins"]:
        verdict = "Max-pooling wins, marginally"
    else:
        verdict = f"Max-pooling does not win ({v['best']} is best)"
    sigma = v["difference_in_standard_errors"]
    times = ", ".join(f"{k} {e['seconds']:.0f} s" for k, e in m.items())
    return (
        f"{parts} ({_seeds(m)}). {verdict}: {v['pool_minus_best_other']:+.4f} over "
        f"{v['best_other']}"
        + (f" ({sigma:.1f} standard errors)" if sigma is not None else "")
        + f". Training time, all seeds: {times}."
    )


def _channel_mixing(r: Mapping[str, Any]) -> str:
    m = r["models"]
    names = {
        "option_one": "option one",
        "option_two": "option two",
        "option_two_32": "option two x32",
    }
    parts = ", ".join(
        f"{names.get(k, k)} {_acc(e)} ({e['params']:,} parameters)" for k, e in m.items()
    )
    one, two = m["option_one"], m["option_two"]
    spread = one["std_val_accuracy"] + two["std_val_accuracy"]
    gap = one["mean_val_accuracy"] - two["mean_val_accuracy"]
    if abs(gap) <= spread:
        verdict = (
            f"no real difference (option one - option two = {gap:+.4f}, within the seeds' spread). "
            'The article\'s "this will not work" does not hold here, because the dense head '
            "mixes all maps anyway; option one only lacks mixing before the ReLU and the pooling"
        )
    else:
        verdict = f"option one - option two = {gap:+.4f}, beyond the seeds' spread ({spread:.4f})"
    return f"{parts} ({_seeds(m)}): {verdict}."


def _linear_collapse(r: Mapping[str, Any]) -> str:
    e, t = r["exactness"], r["training"]
    c, m = t["linear_stack_collapsed"], t["models"]
    return (
        f"On {e['n_images']} digits: max error {e['float64_max_abs_error']:.1e} in float64, "
        f"{e['float32_max_abs_error']:.1e} in float32 (relative {e['float32_relative_error']:.1e}, "
        f"tolerance {e['float32_tolerance']:.0e}); the ReLU stack differs by up to "
        f"{e['relu_max_abs_difference']:.2f}; the least-squares best 7x7 conv leaves "
        f"{e['linear_unexplained_by_best_7x7']:.1e} of the linear stack's variance unexplained and "
        f"{e['relu_unexplained_by_best_7x7']:.1%} of the ReLU stack's. Trained ({_seeds(m)}): "
        f"linear stack {_acc(m['linear'])} (a linear classifier, whatever its depth), ReLU stack "
        f"{_acc(m['relu'])}; seed {m['linear']['seeds'][0]}'s trained linear stack collapsed into "
        f"one 7x7 conv + Dense ({c['collapsed_params']:,} parameters) gives the same prediction on "
        f"{c['same_predictions']:.0%} of the {t['n_val']:,} images ({c['accuracy_collapsed']:.4f} vs "
        f"{c['accuracy_stack']:.4f}; logits within {c['max_abs_logit_difference']:.1e})."
    )


def _handcrafted_kernels(r: Mapping[str, Any]) -> str:
    digit = r["images"]["digit"]
    sobel = digit["kernels"]["sobel_v"]
    text = f"`correlate` vs `Conv` layer: max difference {digit['max_difference_conv_layer']:.1e}"
    photo = r["images"].get("photo")
    if photo:
        h, w = photo["shape"]
        text += f" on the digit, {photo['max_difference_conv_layer']:.1e} on the {h}x{w} photo"
    return text + (
        f"; on the digit (a {digit['label']}) the vertical Sobel ranges over "
        f"[{sobel['min']:.2f}, {sobel['max']:.2f}], 0 on flat areas (weights sum to 0)."
    )


def _convolution_math(r: Mapping[str, Any]) -> str:
    ma, dz, poly, lti = r["moving_average"], r["dice"], r["polynomials"], r["lti"]
    lengths = " / ".join(str(len(row["values"])) for row in ma)
    tables = ", ".join(f"[{' '.join(row['fractions'])}]" for row in ma)
    pmf = ", ".join(dz["pmf_fractions"][str(t)] for t in dz["support"])
    err = lti["max_errors"]
    zero = max(v for k, v in err.items() if lti["expected"][k] == "0")
    course = "confirmed" if dz["course_values_match"] else "NOT confirmed"
    shape = "x".join(map(str, poly["T_x_shape"])), "x".join(map(str, poly["T_y_shape"]))
    return (
        f"Lengths {lengths}: {tables}; p({dz['support'][0]}..{dz['support'][-1]}) = {pmf} (the "
        f"course's 1/24, 1/6, 1/24 {course}); T(x) {shape[0]}, T(y) {shape[1]}, z = T(x) y = "
        f"T(y) x = np polymul {_to(poly['max_difference'])}; impulse response = kernel, "
        f"superposition, linearity, time invariance and commutativity of convolution hold "
        f"{_to(zero)}; correlation does not commute (difference {err['correlation_commutes']:.1f}: "
        "the expected non-zero result), swapping its arguments reverses it "
        f"({_to(err['correlation_swapped_is_reversed'])})."
    )


def _filters_and_maps(r: Mapping[str, Any]) -> str:
    shapes = [s for k, s in r["map_shapes"].items() if k.startswith(("Conv", "MaxPool"))]
    chain = " -> ".join("x".join(map(str, s)) for s in shapes)
    zeros = r["zero_fraction"]
    return (
        f"val accuracy {r['val_accuracy']:.4f} after {r['epochs']} epochs; digit "
        f"{r['digit']['label']} predicted {r['digit']['predicted']}; maps {chain}; prefixes "
        f"reproduce the logits {_to(r['prefix_vs_network_max_difference'])}; "
        f"{zeros['Relu_0']:.0%} of the first ReLU's outputs are exactly 0, {zeros['Relu_1']:.0%} "
        "of the second's."
    )


def _receptive_fields(r: Mapping[str, Any]) -> str:
    nets = r["networks"]
    parts = "; ".join(
        f"{name} {e['final_rf'][0]} px (jump {e['final_jump'][0]}, {e['conv_layers']} convs, "
        f"input {e['input_shape'][0]})"
        for name, e in nets.items()
    )
    text = f"Final receptive field: {parts}."
    alex, vgg = nets.get("AlexNet"), nets.get("VGG-19")
    if alex and vgg:
        first = alex["layers"][0]["rf"][0]
        depth = next((i + 1 for i, row in enumerate(vgg["layers"]) if row["rf"][0] >= first), None)
        if depth is not None:
            text += (
                f" AlexNet's first 11x11 stride-4 conv sees {first} px at once; VGG-19's 3x3 "
                f"stack needs {depth} windowed layers to see as much."
            )
    return text + f" Rule per layer: `{r['formula']}`."


def _localization(r: Mapping[str, Any]) -> str:
    v = r["val"]
    return (
        f"val accuracy {v['accuracy']:.4f} (presence {v['presence_accuracy']:.4f}, class "
        f"{v['class_accuracy']:.4f} over canvases with a digit), mean IoU {v['mean_iou']:.3f} on "
        f"{r['val_canvases']:,} validation canvases ({r['val_empty_fraction']:.0%} empty) after "
        f"{r['epochs']} epochs; {r['params']:,} parameters, {r['wall_seconds']:.0f} s of training."
    )


def _transfer(r: Mapping[str, Any]) -> str:
    if r["random_weights"]:
        weights = "random weights (so the pipeline, not pretrained features)"
    else:
        weights = f"the weights of `{Path(r['weights']).name}`"
    s, size = r["seconds"], r["image_size"]
    return (
        f"{r['model']} with {weights}: held-out accuracy {r['final_val_accuracy']:.4f} on "
        f"{r['n_val']:,} digits (best {r['best_val_accuracy']:.4f}) after {r['epochs']} epochs "
        f"on {r['n_train']:,} at {size}x{size}, training {r['params_trainable']:,} of "
        f"{r['params_total']:,} parameters; conversion {s['conversion']:.1f} s, training "
        f"{s['training']:.0f} s, evaluation {s['evaluation']:.0f} s."
    )


def _train_folder(r: Mapping[str, Any]) -> str:
    st, speed, size = r["settings"], r["images_per_second"], r["image_size"]
    shown = speed["median_after_first"] or speed["last_epoch"]
    ema = f" (EMA: {r['final_ema_val_top1']:.4f})" if "final_ema_val_top1" in r else ""
    return (
        f"{r['model']} from scratch at {size}x{size} on {r['num_classes']} classes "
        f"({r['n_train']:,} train / {r['n_val']:,} val JPEGs): val top-1 "
        f"{r['final_val_top1']:.4f}{ema} (chance {r['chance']:.2f}), top-{r['top5_k']} "
        f"{r['final_val_top5']:.4f} after {st['epochs']} epochs of batch {st['batch_size']}; "
        f"{shown:.0f} images/s after the first epoch ({st['workers']} workers)."
    )


def _segmentation(r: Mapping[str, Any]) -> str:
    ious = ", ".join(f"{name} {v:.3f}" for name, v in r["val_iou"].items())
    return (
        f"validation mean IoU {r['val_mean_iou']:.3f} (all background: "
        f"{r['chance_mean_iou']:.3f}), pixel accuracy {r['val_pixel_accuracy']:.3f}; IoU {ious}; "
        f"{r['params']:,} parameters, {r['epochs']} epochs on {r['n_train']:,} canvases of "
        f"{r['size']}x{r['size']}, {r['wall_seconds']:.0f} s of training."
    )


def _private_mnist(r: Mapping[str, Any]) -> str:
    levels = ", ".join(
        f"noise {run['noise_multiplier']:g}: {run['final_val_accuracy']:.4f} at epsilon "
        f"{run['epsilon_rdp']:.2f}"
        for run in r["private"]
    )
    return (
        f"held-out accuracy after {r['epochs']} epochs on {r['n_train']:,} digits: non-private "
        f"{r['non_private']['final_val_accuracy']:.4f}; DP-SGD (clip {r['l2_clip']:g}, delta "
        f"{r['delta']:g}, RDP accountant) {levels}; {r['wall_seconds']:.0f} s in all."
    )


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        "train_mnist",
        "The main job: the course CNN (conv 5x5 -> 8, pool, conv 3x3 -> 16, pool, dense 10; "
        "5,386 parameters), Adam lr 0.005, batch 1,000, 30 epochs, on-device epochs.",
        _train_mnist,
        results_file="metrics.json",
    ),
    Experiment(
        "seed_mnist",
        'The comparison of "5 Convolutional Neural Networks": the dense MLP (178,110 '
        "parameters) against the course CNN (5,386) trained on 5,000 images, Adam lr 0.005, "
        "batch 1,000. The text gives neither its number of epochs nor its accuracies, so 30 "
        "epochs (as `train_mnist`).",
        _seed_mnist,
    ),
    Experiment(
        "downsampling",
        '"Mechanisms of Convolutional Networks": 3x3 conv + 2x2 max-pool vs 3x3 stride-2 conv '
        "vs 5x5 stride-2 conv, two stages each with SAME padding (28 -> 14 -> 7), Dense 10; "
        "9,098 / 9,098 / 9,140 parameters (the 5x5 net has 6 and 14 channels instead of 8 and "
        "16 to stay on budget); 3 seeds, 10 epochs, batch 100.",
        _downsampling,
    ),
    Experiment(
        "channel_mixing",
        '"Option one" (each 3x3x1 filter on each map separately: `Conv(32, 3, groups=4)`, maps '
        '24x24x32, 320 parameters) vs "option two" (full-depth 3x3x4 filters: `Conv(8, 3)`, '
        "24x24x8, 296 parameters) after `Conv(4, 3)`, then max-pool and Dense 10; plus option "
        "two with 32 filters (option one's width); 2 seeds, 10 epochs, batch 100.",
        _channel_mixing,
    ),
    Experiment(
        "linear_collapse",
        "Associativity: three linear 3x3 convs (1 -> 4 -> 4 -> 2 channels, with biases) equal "
        "one 7x7 conv from `jcnn.signal.compose_conv`; with ReLUs they do not, and no 7x7 conv "
        "fits them; trained on MNIST, 3x Conv 3x3 -> 4 + Dense 10, linear vs ReLU, 2 seeds, "
        "10 epochs, batch 100.",
        _linear_collapse,
    ),
    Experiment(
        "handcrafted_kernels",
        "Box blur, sharpen, Sobel vertical/horizontal and a diagonal-line kernel, "
        'cross-correlated with zero padding ("same") on an MNIST digit and on scikit-learn\'s '
        'bundled `china.jpg` (read offline through pillow), as in "Convolutional Neural '
        'Networks: The Convolution"; a `Conv(5, 3, padding="SAME")` with the same weights '
        "gives the same maps.",
        _handcrafted_kernels,
    ),
    Experiment(
        "convolution_math",
        'The worked examples of "5 Convolutional Neural Networks": moving average of x = '
        "[1 2 3 1 2 3 1 2 3] with h = [1 1 1]/3 (P=2, S=1 / P=0, S=1 / P=1, S=2) via "
        "`conv_matrix`, a 1-D `Conv` and the output-size formula; the pmf of payoff X (1, 2, 3 "
        "w.p. 1/4, 1/2, 1/4) plus a fair die; polynomial product and its Toeplitz matrices "
        "(`conv_matrix(..., flip=True)`); LTI impulse response, superposition, linearity, time "
        "invariance, commutativity. No data, no training: flags `--out` and `--seed` only.",
        _convolution_math,
        uses_data=False,
    ),
    Experiment(
        "filters_and_maps",
        "Inner-layer interpretation: the course CNN trained briefly (3 epochs, batch 100), its "
        "8 first-layer 5x5 filters, its 8x16 second-layer 3x3 kernels, and one digit's maps "
        "after every layer (children applied one after another; the last prefix equals the "
        "net's logits). `--layers Relu_0,MaxPool_1` picks the rows.",
        _filters_and_maps,
    ),
    Experiment(
        "receptive_fields",
        "Receptive field, jump and start of every windowed layer of the course CNN, AlexNet "
        "and VGG-19 (`jcnn.receptive`, analytic: nothing trained or allocated; flag `--out` "
        "only).",
        _receptive_fields,
        uses_data=False,
    ),
    Experiment(
        "localization",
        "Object localization (course section 5.8.1): digits rescaled to 16-28 px at random "
        "places on a 48x48 canvas, a fifth empty; 3 conv stages + dense 128 + the head "
        "[p_c, x, y, w, h, p_0..p_9] with the course's squared-error loss; 12 epochs, batch "
        "100, Adam 0.002, host loop.",
        _localization,
    ),
    Experiment(
        "private_mnist",
        "Differentially private training (DP-SGD, `jcnn.fit(privacy=jcnn.privacy.DPSGD(...))`: "
        "per-example gradients clipped to norm 1, Gaussian noise) of the course CNN on 5,000 "
        "digits at several noise levels, against the same training without privacy; epsilon "
        "from Google's "
        "dp-accounting (RDP and PLD), batch 250, Adam 0.005, 15 epochs.",
        _private_mnist,
    ),
    Experiment(
        "transfer",
        "Transfer learning: a torchvision model (`--model`, default resnet18) through "
        "`jcnn.models.from_torchvision`, its `fc` replaced by a new `Dense(10)` head, every "
        "other parameter frozen by name and the body in inference mode (BatchNorm running "
        "statistics); only the head trained, Adam 0.001, batch 32, 3 epochs, on 1,500 digits "
        "resized to 64x64, grey to RGB, ImageNet-normalised.",
        _transfer,
        note="Without `--weights` (as here) the weights are random; `--weights "
        "resnet18.safetensors` (a torchvision state dict in safetensors or npz) uses yours.",
    ),
    Experiment(
        "train_folder",
        "A zoo model trained on a folder of images (`DIR/train/<class>/...`, `DIR/val/...`) "
        "through `jcnn.data.image_folder` and `jcnn.fit`: SGD Nesterov 0.9, linear warm-up + "
        "cosine decay, weight decay on kernels only, label smoothing 0.1 (optional EMA, mixup, "
        "cutmix); here on the synthetic demo folder it writes itself (4 classes of coloured "
        "shapes and textures, 64x64 JPEGs), `--quick`: resnet18 at 32x32.",
        _train_folder,
        uses_data=False,
        extra_args=(
            "--make-demo-data",
            "runs/train_folder/demo",
            "--data-dir",
            "runs/train_folder/demo",
            "--quick",
            "--no-progress",
        ),
        note="On your own images: `--data-dir DIR` (defaults: resnet18, 224x224, batch 256, "
        "90 epochs, lr 0.1 x batch / 256, CPU cores - 1 workers).",
    ),
    Experiment(
        "segmentation",
        "Semantic segmentation: `jcnn.models.unet(4, base=16, depth=3)` (SAME padding, "
        "transposed-conv decoder) trained with the per-pixel cross entropy "
        "(`jcnn.training.segmentation`) on generated noisy canvases of discs, squares and "
        "triangles (48x48, 1,200 train / 300 val), Adam 0.003, batch 8, 15 epochs; IoU per "
        "class from the summed confusion matrix.",
        _segmentation,
        uses_data=False,
        extra_args=("--no-progress",),
    ),
)

CAPTIONS: dict[str, str] = {
    "segmentation/segmentation.png": "validation canvases, true and predicted masks",
    "segmentation/learning_curves.png": "pixel cross entropy and mean IoU per epoch",
    "train_mnist/learning_curves.png": "loss and accuracy per epoch (dashed: train, solid: val)",
    "train_mnist/filters.png": "the 8 learned first-layer 5x5 filters",
    "seed_mnist/learning_curves.png": "MLP vs CNN per epoch (dashed: train, solid: val)",
    "downsampling/accuracy.png": (
        "final validation accuracy: dots one per seed; square and bar: mean ± sample std over "
        "the seeds"
    ),
    "downsampling/learning_curves.png": "mean over seeds per epoch (dashed: train, solid: val)",
    "channel_mixing/accuracy.png": (
        "final validation accuracy: dots one per seed; square and bar: mean ± sample std over "
        "the seeds"
    ),
    "channel_mixing/learning_curves.png": "mean over seeds per epoch (dashed: train, solid: val)",
    "linear_collapse/collapse.png": "the stacked and the composed conv on one digit",
    "linear_collapse/learning_curves.png": "linear vs ReLU stack, mean over seeds",
    "handcrafted_kernels/kernels.png": "each kernel on the digit and on the photo",
    "convolution_math/convolution_math.png": "the four worked examples",
    "filters_and_maps/filters.png": "first-layer filters",
    "filters_and_maps/filters_layer2.png": "second-layer kernels (input channel x filter)",
    "filters_and_maps/feature_maps.png": "one digit's maps after every layer",
    "receptive_fields/receptive_fields.png": "receptive field against depth",
    "localization/localization.png": "validation canvases: true box green, predicted red dashed",
    "private_mnist/accuracy_vs_epsilon.png": "held-out accuracy against epsilon, one point per "
    "noise level, the non-private run as a line",
    "private_mnist/learning_curves.png": "learning curves per epoch, non-private and each noise level",
    "transfer/accuracy.png": "the new head's train and held-out accuracy per epoch",
    "train_folder/learning_curves.png": "loss and top-1 accuracy per epoch (dashed: train, solid: "
    "val)",
    "train_folder/samples.png": "training views (random-resized-crop, flip) as the network gets "
    "them",
}
"""Caption of each plot on the page, by ``<experiment>/<file>``; other PNGs get their name."""


def _shrunk_png(source: Path, dest: Path, limit: int = MAX_IMAGE_BYTES) -> Path:
    """Copies ``source`` to ``dest``; above ``limit`` bytes, re-saves it with fewer colours,
    then smaller, until it fits (pillow, which matplotlib requires)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.stat().st_size <= limit:
        shutil.copyfile(source, dest)
        return dest
    from PIL import Image

    image = Image.open(source).convert("RGB")
    scale = 1.0
    while True:
        size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
        small = image.resize(size, Image.LANCZOS) if scale < 1 else image
        small.quantize(colors=256).save(dest, format="PNG", optimize=True)
        if dest.stat().st_size <= limit or scale < 0.2:
            return dest
        scale *= 0.8


def _plain_source(source: str) -> str:
    """A results ``data`` string without its folders (they name the machine it ran on)."""
    return source.split(" from ")[0]


def _check_no_local_paths(text: str, runs: Path) -> None:
    """Raises ValueError when ``text`` names a folder of this machine."""
    for folder in {str(Path.home()), str(Path.cwd().absolute()), str(runs.absolute())}:
        if len(folder) > 1 and folder in text:
            raise ValueError(f"results_page: the page would name the local folder {folder}")


NOT_EXPERIMENTS = {"__init__", "common", "results_page"}


def unlisted_experiments() -> list[str]:
    """Modules in ``experiments/`` that :data:`EXPERIMENTS` does not describe (yet)."""
    known = {e.name for e in EXPERIMENTS} | NOT_EXPERIMENTS
    return sorted(f.stem for f in Path(__file__).parent.glob("*.py") if f.stem not in known)


def _unlisted_row(name: str) -> str:
    """A row for an experiment module that the page does not summarise yet."""
    doc = ast.get_docstring(ast.parse((Path(__file__).parent / f"{name}.py").read_text())) or ""
    shows = doc.strip().splitlines()[0] if doc.strip() else ""
    return (
        f"| `{name}` | {shows} | `python -m experiments.{name} --help` | not summarised on this "
        "page yet (add it to `EXPERIMENTS` in `experiments/results_page.py`) | |"
    )


def _row(exp: Experiment, runs: Path) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    """``(markdown row, results or None, timing)`` of ``exp``."""
    path = runs / exp.name / exp.results_file
    timing_path = runs / exp.name / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
    command = f"`{exp.command()}`"
    if not path.is_file():
        result = f"not run yet: no `{exp.name}/{exp.results_file}` under the runs folder"
        return f"| `{exp.name}` | {exp.shows} | {command} | {result} | |", None, timing
    results = json.loads(path.read_text())
    result = exp.result(results) + (f" {exp.note}" if exp.note else "")
    took = ""
    if timing:
        took = f"{timing['wall_seconds']:.0f} s / {timing['user_cpu_seconds']:.0f} s"
    return f"| `{exp.name}` | {exp.shows} | {command} | {result} | {took} |", results, timing


HEADER = """# Course experiments

<!-- Generated by `python -m experiments.results_page` from the experiments' results under
runs/; edit experiments/results_page.py (or rerun the experiments), not this file. -->

Regenerate this page with one command, from the repository root:

```bash
python -m experiments.results_page --run all --data-dir <folder>  # run every experiment, then write the page
python -m experiments.results_page                                # only rewrite it from runs/<name>/
```

`<folder>` holds the MNIST idx files (or set `$JCNN_DATA_DIR` and leave `--data-dir` out);
`--run downsampling localization` reruns only those. The plots are copied into `docs/images/`.

Runnable scripts in `experiments/` that test the claims and recompute the worked examples of the
course texts. Each one is `python -m experiments.<name>` with `--help`, takes `--out` (default
`runs/<name>`), writes `results.json` and one or more PNGs there, and ends with a one-line
summary. Those that read MNIST also take `--data-dir`, `--seed`, `--quick` (a CI-sized run of
seconds), `--no-progress` (they show a tqdm bar while training) and `--offline`; the training
scripts also take `--epochs`, `--batch-size`, `--lr` (Adam), `--loop device|host` (default
`device`: the data on the device, chunks of steps in one compiled `fori_loop`) and, where they compare models, `--seeds`.
`convolution_math` takes only `--out` and `--seed`, `receptive_fields` only `--out`.

Data: `--data-dir <folder>`, else `$JCNN_DATA_DIR`, the cache or a download
(`jcnn.data.load_mnist_or_fallback`). A `--data-dir` that does not exist or holds no MNIST files
is an error (exit status 2). Without any MNIST the scripts fall back to scikit-learn's 8x8
digits resized to 28x28 and print why. With the t10k files only, every training script uses the
course's split, the first 5,000 test images to train and the last 5,000 to validate; `--quick`
keeps 1,000 random training images and the last 500 validation images. Each results file's
`data` says exactly which images were used.
"""

QUICK = """## Quick mode and tests

`--quick` of each script takes seconds of compute (tens of seconds under load);
`tests/experiments/test_exp_course.py` runs `seed_mnist`, `downsampling`, `filters_and_maps`,
`handcrafted_kernels` and `convolution_math` in quick mode and checks the models and the
exactness parts of `channel_mixing` and `linear_collapse` without training (their quick runs are
marked `slow`: `pytest -m slow`); `tests/experiments/test_exp_receptive_localization.py` runs
`receptive_fields` and a quick `localization`; `tests/experiments/test_exp_transfer.py` runs a
quick `transfer` at 32x32 and checks that only its head changes;
`tests/experiments/test_exp_train_folder.py` writes the demo folder and trains on it (`--quick`,
2 epochs, no workers); `tests/experiments/test_exp_segmentation.py` runs a quick `segmentation`
and checks its mean IoU is more than twice the all-background one.
"""


def render(runs: Path, images: Path, page: Path) -> str:
    """The page's Markdown from ``runs``; copies the plots into ``images``.

    Image links are relative to ``page``'s folder.
    """
    rows, plots, sources, timings = [], [], {}, []
    for exp in EXPERIMENTS:
        row, results, timing = _row(exp, runs)
        rows.append(row)
        if results is None:
            continue
        if "data" in results:
            sources.setdefault(_plain_source(results["data"]), []).append(exp.name)
        if timing:
            timings.append(timing)
        order = [k.split("/", 1)[1] for k in CAPTIONS if k.startswith(f"{exp.name}/")]
        pngs = sorted(
            (runs / exp.name).glob("*.png"),
            key=lambda f: (order.index(f.name) if f.name in order else len(order), f.name),
        )
        if pngs:
            plots.append(f"### `{exp.name}`\n")
            for png in pngs:
                dest = _shrunk_png(png, images / f"{exp.name}_{png.name}")
                link = os.path.relpath(dest, page.parent)
                caption = CAPTIONS.get(f"{exp.name}/{png.name}", png.stem.replace("_", " "))
                plots.append(f"![{exp.name}: {caption}]({link})\n\n*{caption}*\n")
    setting = ["## Measured with the defaults\n"]
    data_lines = [
        f"* {', '.join(f'`{n}`' for n in names)}: {source}" for source, names in sources.items()
    ]
    setting.append(
        "One run each with the default settings, one after another, `--offline`, data:\n\n"
        + "\n".join(data_lines)
        + "\n"
    )
    if timings:
        cpus = sorted({t["cpu_count"] for t in timings})
        loads = [t["load_average_after"][0] for t in timings]
        when = sorted(t["finished"][:10] for t in timings)
        setting.append(
            f"Time is wall / user CPU seconds of the whole command, measured on a "
            f"{'/'.join(map(str, cpus))}-core CPU machine shared with other jobs (1-minute load "
            f"average {min(loads):.1f} to {max(loads):.1f}; {when[0]}"
            + (f" to {when[-1]}" if when[-1] != when[0] else "")
            + "), so times are indicative only. Accuracies are validation accuracies after the "
            'last epoch; "± x" is the sample standard deviation over the seeds '
            "(`--seed`, `--seed`+1, ...).\n"
        )
    table = [
        "| Experiment | What it shows | Command | Result (defaults) | Time |",
        "|---|---|---|---|---|",
        *rows,
        *(_unlisted_row(name) for name in unlisted_experiments()),
    ]
    text = (
        "\n".join([HEADER, *setting, "\n".join(table) + "\n", "## Plots\n", *plots, QUICK]).rstrip()
        + "\n"
    )
    _check_no_local_paths(text, runs)
    return text


def main(argv: list[str] | None = None) -> str:
    """Runs the experiments asked for, then writes the page; returns its text."""
    names = [e.name for e in EXPERIMENTS]
    p = argparse.ArgumentParser(
        prog="python -m experiments.results_page", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--runs", default="runs", help="folder of the experiments' outputs (default runs)"
    )
    p.add_argument("--page", default="docs/experiments.md", help="the page to write")
    p.add_argument("--images", default="docs/images", help="folder the plots are copied into")
    p.add_argument(
        "--run",
        nargs="+",
        default=[],
        metavar="NAME",
        choices=["all", *names],
        help=f"run these experiments first with their defaults ('all' or of: {', '.join(names)})",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="MNIST folder for --run (default: $JCNN_DATA_DIR, the cache, the fallback)",
    )
    args = p.parse_args(argv)
    runs, page = Path(args.runs), Path(args.page)
    chosen = names if "all" in args.run else [n for n in names if n in args.run]
    for exp in EXPERIMENTS:
        if exp.name in chosen:
            print(f"running experiments.{exp.name} ...", flush=True)
            timing = run_experiment(exp, runs, args.data_dir)
            print(f"  {timing['wall_seconds']:.0f} s", flush=True)
    text = render(runs, Path(args.images), page)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)
    print(f"wrote {page} ({len(EXPERIMENTS)} experiments) and its plots in {args.images}")
    return text


if __name__ == "__main__":
    main()
