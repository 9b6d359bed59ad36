"""The course experiments in quick mode: each script's JSON, PNGs and key numbers.

Every script runs in-process through its ``main(argv)`` on the MNIST test files (skipped when they
are absent) with ``--quick --offline --no-progress``. The numbers checked are worked out by hand
(parameter counts, map shapes, the course's tables) or recomputed here independently (NumPy loops,
``np.convolve``, exact fractions).
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import jcnn
from experiments import (
    channel_mixing,
    common,
    convolution_math,
    downsampling,
    filters_and_maps,
    handcrafted_kernels,
    linear_collapse,
    seed_mnist,
)
from jcnn import layers as L
from jcnn.data import load_mnist_or_fallback
from jcnn.training import fit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPTS = (
    seed_mnist,
    downsampling,
    channel_mixing,
    linear_collapse,
    handcrafted_kernels,
    convolution_math,
    filters_and_maps,
)


def quick(module, mnist_path: Path, out: Path, *extra: str) -> dict:
    """Runs ``module.main`` in quick mode; checks that results.json holds what main returned."""
    summary = module.main(
        ["--data-dir", str(mnist_path), "--quick", "--offline", "--no-progress", "--out", str(out)]
        + list(extra)
    )
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(summary, default=common._plain))
    return written


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


# Flags and helpers -----------------------------------------------------------------------------


DATA_FLAGS = ("--data-dir", "--quick", "--no-progress", "--offline")


@pytest.mark.parametrize(
    "module", [m for m in SCRIPTS if m is not convolution_math], ids=lambda m: m.__name__[12:]
)
def test_help_lists_the_shared_flags(module, capsys):
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--seed", *DATA_FLAGS):
        assert flag in text


def test_convolution_math_takes_only_the_flags_it_uses(capsys):
    with pytest.raises(SystemExit) as exc:
        convolution_math.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and "--seed" in text and "LTI checks" in text  # what --seed seeds
    for flag in DATA_FLAGS:
        assert flag not in text
    for flag in (["--data-dir", "x"], ["--offline"], ["--quick"], ["--no-progress"]):
        with pytest.raises(SystemExit) as exc:
            convolution_math.main(flag)
        assert exc.value.code == 2
        assert f"unrecognized arguments: {flag[0]}" in capsys.readouterr().err


def test_accuracy_plot_says_what_the_dots_and_bars_are(tmp_path, monkeypatch):
    figures = []

    def keep(fig, path):
        figures.append(fig)
        return Path(path)

    monkeypatch.setattr(common, "save_figure", keep)
    entry = {"final_val_accuracy": [0.9, 0.92, 0.94], "params": 10}
    entry.update(mean_val_accuracy=0.92, std_val_accuracy=0.02)
    common.accuracy_plot({"a": entry, "b": entry}, tmp_path / "acc.png", title="t")
    (ax,) = figures[0].axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "one seed's final val accuracy (3 seeds)",
        "mean ± sample std over the 3 seeds",
    ]
    assert ax.get_ylabel() == "final validation accuracy"
    common.accuracy_plot({"a": {**entry, "final_val_accuracy": [0.9]}}, tmp_path / "b.png")
    labels = [t.get_text() for t in figures[1].axes[0].get_legend().get_texts()]
    assert labels[0] == "one seed's final val accuracy (1 seed)"


def test_mean_std_is_the_sample_std():
    assert common.mean_std([0.5]) == (0.5, 0.0)
    mean, std = common.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(
        np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    )
    hist = common.mean_history(
        [{"epoch": [1, 2], "acc": [0.2, 0.4]}, {"epoch": [1, 2], "acc": [0.4, 0.8]}]
    )
    assert hist == {"epoch": [1.0, 2.0], "acc": [pytest.approx(0.3), pytest.approx(0.6)]}


def test_load_data_quick_says_which_images_and_never_falls_back_from_data_dir(
    tmp_path, mnist_path, capsys
):
    args = common.parser("x", "x").parse_args(["--data-dir", str(mnist_path), "--quick"])
    data = common.load_data(args)
    assert data["source"] == (
        "mnist:t10k-only (train = 1000 random of t10k[0:5000] (seed 0), "
        f"val = test = t10k[9500:10000] (500)) from {mnist_path}"
    )
    assert [len(data[k][0]) for k in ("train", "val")] == [1000, 500]
    args.data_dir = str(tmp_path / "missing")
    with pytest.raises(SystemExit) as exc:
        common.load_data(args)
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: data_dir {tmp_path / 'missing'} does not")


def test_train_seeds_is_fits_host_loop_and_equals_the_device_loop(rng):
    """Same seed, same data order and steps: train_seeds reproduces fit (host loop), and its
    host and device loops agree."""
    x = rng.random((60, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 10, 60).astype(np.int32)
    net = L.serial(L.Flatten(), L.Dense(10))
    kwargs = dict(seeds=[3, 4], epochs=2, batch_size=20, lr=0.01, progress=False)
    host = common.train_seeds(net, (x, y), (x, y), loop="host", **kwargs)
    device = common.train_seeds(net, (x, y), (x, y), loop="device", **kwargs)
    ref = fit(
            net, (x, y), val=(x, y), optimizer=optax.adam(0.01), epochs=2, batch_size=20,
            seed=4, on_device=False, progress=False,
        )  # fmt: skip
    np.testing.assert_allclose(host[1].history["train_loss"], ref.history["train_loss"], rtol=1e-6)
    np.testing.assert_allclose(
        host[1].history["val_accuracy"], ref.history["val_accuracy"], rtol=1e-6
    )
    for h, d in zip(host, device):
        np.testing.assert_allclose(h.history["train_loss"], d.history["train_loss"], rtol=1e-5)
    assert host[0].history["train_loss"] != host[1].history["train_loss"]  # seeds differ
    assert [len(r.history["epoch"]) for r in host] == [2, 2]


# Scripts without training ------------------------------------------------------------------------


def test_convolution_math_tables(tmp_path, capsys):
    s = convolution_math.main(["--out", str(tmp_path)])
    assert json.loads((tmp_path / "results.json").read_text())["dice"]["total"] == pytest.approx(1)
    assert_png(tmp_path / "convolution_math.png")
    ma = {(r["padding"], r["stride"]): r for r in s["moving_average"]}
    expected = {  # hand-worked in the course ("5 Convolutional Neural Networks", 5.3.1)
        (2, 1): [1 / 3, 1, 2, 2, 2, 2, 2, 2, 2, 5 / 3, 1],
        (0, 1): [2] * 7,
        (1, 2): [1, 2, 2, 2, 5 / 3],
    }
    for case, values in expected.items():
        np.testing.assert_allclose(ma[case]["values"], values, atol=1e-12)
        assert ma[case]["formula_length"] == ma[case]["conv_output_size"] == len(values)
        assert ma[case]["max_difference_conv_layer"] < 1e-5
    dz = s["dice"]
    assert dz["support"] == list(range(2, 10))
    assert dz["pmf_fractions"][2] == "1/24" and dz["pmf_fractions"][4] == "1/6"
    assert dz["pmf_fractions"][9] == "1/24" and dz["course_values_match"]
    by_hand = {
        t: sum(
            Fraction(1, 6) * p
            for a, p in ((1, Fraction(1, 4)), (2, Fraction(1, 2)), (3, Fraction(1, 4)))
            if 1 <= t - a <= 6
        )
        for t in range(2, 10)
    }  # noqa: E501
    np.testing.assert_allclose(
        [dz["pmf"][t] for t in range(2, 10)], [float(by_hand[t]) for t in range(2, 10)], atol=1e-15
    )  # noqa: E501
    poly = s["polynomials"]
    np.testing.assert_array_equal(poly["z"], np.convolve(poly["x"], poly["y"]))
    assert poly["T_x_shape"] == [8, 6] and poly["T_y_shape"] == [8, 3]
    assert poly["T_x_is_course_toeplitz"] and poly["max_difference"] < 1e-12
    errors = s["lti"]["max_errors"]
    np.testing.assert_allclose(s["lti"]["impulse_response"][:3], s["lti"]["h"], atol=1e-15)
    for key in ("impulse_response_minus_kernel", "superposition", "linearity", "time_invariance"):
        assert errors[key] < 1e-12, key
    assert errors["convolution_commutes"] < 1e-12 and errors["correlation_commutes"] > 0.1
    assert errors["correlation_swapped_is_reversed"] < 1e-12
    # The one check whose expected value is not 0 says so, in the JSON and in the output.
    assert s["lti"]["expected"] == {
        k: "non-zero" if k == "correlation_commutes" else "0" for k in errors
    }
    assert all(s["lti"]["as_expected"].values()) and s["lti"]["all_as_expected"]
    printed = capsys.readouterr().out
    (line,) = [ln for ln in printed.splitlines() if ln.strip().startswith("correlation_commutes")]
    assert "2.3e+00  expected non-zero: ok (correlation does not commute" in line
    assert sum("expected 0: ok" in ln for ln in printed.splitlines()) == len(errors) - 1
    assert "p(2), p(4), p(9) = 1/24, 1/6, 1/24" in printed.strip().splitlines()[-1]
    assert "LTI checks all as expected" in printed.strip().splitlines()[-1]


def test_convolution_math_plot_has_labels_and_integer_ticks(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(common, "save_figure", lambda fig, path: figures.append(fig))
    convolution_math.main(["--out", str(tmp_path)])
    fig = figures[0]
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 4
    for ax in panels:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
    # No two panel titles overlap (constrained layout).
    boxes = [ax.title.get_window_extent() for ax in panels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)  # T(x)'s value scale


def _correlate_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    padded = np.pad(image, 1)
    out = np.zeros_like(image)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            out[i, j] = (padded[i : i + 3, j : j + 3] * kernel).sum()
    return out


def test_handcrafted_kernels(tmp_path, mnist_path, capsys):
    s = quick(handcrafted_kernels, mnist_path, tmp_path)
    assert_png(tmp_path / "kernels.png")
    digit = s["images"]["digit"]
    sums = {k: v["weight_sum"] for k, v in digit["kernels"].items()}
    assert sums == pytest.approx(
        {"box_blur": 1, "sharpen": 1, "sobel_v": 0, "sobel_h": 0, "diagonal": 0}
    )
    assert digit["max_difference_conv_layer"] < 1e-5
    # Independent reference: a NumPy loop over the zero-padded digit.
    data = load_mnist_or_fallback(mnist_path, download=False, n_train=1000, n_val=500)
    image = data["val"][0][0, ..., 0].astype(np.float64)  # the script's digit (--index 0)
    for name, kernel in handcrafted_kernels.KERNELS.items():
        ref = _correlate_same(image, kernel.astype(np.float64))
        assert digit["kernels"][name]["min"] == pytest.approx(ref.min(), abs=1e-5)
        assert digit["kernels"][name]["max"] == pytest.approx(ref.max(), abs=1e-5)
        assert digit["kernels"][name]["mean_abs"] == pytest.approx(np.abs(ref).mean(), abs=1e-5)
    if s["natural_image"] is not None:  # scikit-learn + pillow: china.jpg, every 4th pixel
        assert s["images"]["photo"]["shape"] == [107, 160]
        assert s["images"]["photo"]["max_difference_conv_layer"] < 1e-4
    assert "correlate vs Conv layer max difference" in last_line(capsys)


# The models of the training scripts, without training ---------------------------------------


def test_downsampling_nets_share_one_budget():
    nets = downsampling.variants()
    counts = {k: jcnn.count_params(net, (28, 28, 1)) for k, net in nets.items()}
    # SAME padding: 28 -> 14 -> 7 in every net, so the dense layer has 7*7*C_2*10 + 10 weights.
    assert counts["pool"] == counts["stride3"] == 8 * 10 + 16 * 73 + 7 * 7 * 16 * 10 + 10 == 9098
    assert counts["stride5"] == 6 * 26 + 14 * (25 * 6 + 1) + 7 * 7 * 14 * 10 + 10 == 9140
    assert all(jcnn.output_shape(net, (28, 28, 1)) == (10,) for net in nets.values())


def test_channel_mixing_layers_have_the_articles_shapes():
    mix = {
        k: channel_mixing.mixing_layer(n, (28, 28, 1)) for k, n in channel_mixing.variants().items()
    }
    # The article: 26x26x4 maps in; option one (24, 24, 32), option two (24, 24, 8).
    assert all(m["input_shape"] == [26, 26, 4] for m in mix.values())
    assert mix["option_one"] == {
        "input_shape": [26, 26, 4], "kernel_shape": [3, 3, 1, 32], "params": 32 * (9 + 1),
        "output_shape": [24, 24, 32],
    }  # fmt: skip
    assert (
        mix["option_two"]["kernel_shape"] == [3, 3, 4, 8] and mix["option_two"]["params"] == 8 * 37
    )
    assert mix["option_two"]["output_shape"] == [24, 24, 8]
    assert mix["option_two_32"]["params"] == 32 * 37


def test_linear_collapse_parts_without_training(rng):
    images = rng.random((6, 12, 12, 1), dtype=np.float32)
    report, maps = linear_collapse.exactness(images, seed=0)
    assert report["composed_kernel_shape"] == [7, 7, 1, 2]
    assert report["float64_max_abs_error"] < 1e-12
    assert report["float32_relative_error"] < linear_collapse.FLOAT32_TOLERANCE
    assert report["relu_relative_difference"] > 0.05
    assert report["linear_unexplained_by_best_7x7"] < 1e-20
    assert report["relu_unexplained_by_best_7x7"] > 1e-3
    assert maps["linear"].shape == maps["relu"].shape == (6, 6)
    # The least-squares fit recovers a known 7x7 filter exactly (independent of compose_conv).
    kernel = rng.standard_normal((7, 7, 1, 1))
    target = np.zeros((6, 6, 6, 1))
    for n, i, j in np.ndindex(6, 6, 6):
        target[n, i, j, 0] = (images[n, i : i + 7, j : j + 7] * kernel[..., 0]).sum() + 0.5
    unexplained, fitted = linear_collapse.best_single_conv(images.astype(np.float64), target, 7)
    assert unexplained < 1e-20
    np.testing.assert_allclose(fitted.reshape(7, 7), kernel[..., 0, 0], atol=1e-8)
    # A linear stack with a dense head collapses into one 7x7 conv + dense with the same logits.
    net = linear_collapse.stack((4, 4, 4), relu=False, head=True)
    _, params, _ = net.init(jax.random.key(0), (12, 12, 1))
    labels = rng.integers(0, 10, 6)
    out = linear_collapse.collapse_trained(net, params, (images, labels))
    assert out["collapsed_params"] == 7 * 7 * 4 + 4 + 6 * 6 * 4 * 10 + 10
    assert out["relative_logit_difference"] < 1e-5 and out["same_predictions"] == 1.0


# Scripts that train --------------------------------------------------------------------------


def test_seed_mnist(tmp_path, mnist_path, capsys):
    s = quick(seed_mnist, mnist_path, tmp_path)
    assert_png(tmp_path / "learning_curves.png")
    assert (
        s["models"]["mlp"]["params"] == 784 * 200 + 200 + 200 * 100 + 100 + 100 * 10 + 10 == 178_110
    )
    assert s["models"]["cnn"]["params"] == 8 * 26 + 16 * (9 * 8 + 1) + 400 * 10 + 10 == 5_386
    assert (s["n_train"], s["n_val"], s["epochs"], s["batch_size"], s["lr"]) == (
        1000,
        500,
        2,
        250,
        0.005,
    )
    for m in s["models"].values():
        assert len(m["history"]["val_accuracy"]) == 2
        assert m["final_val_accuracy"] > 0.3  # chance is 0.1
        assert m["best_val_accuracy"] == max(m["history"]["val_accuracy"])
    line = last_line(capsys)
    assert "mlp (178,110 params)" in line and "cnn (5,386 params)" in line


def test_downsampling(tmp_path, mnist_path, capsys):
    s = quick(downsampling, mnist_path, tmp_path)
    assert_png(tmp_path / "accuracy.png")
    assert_png(tmp_path / "learning_curves.png")
    models = s["models"]
    # SAME padding: 28 -> 14 -> 7 in every net, so the dense layer has 7*7*C_2*10 + 10 weights.
    assert (
        models["pool"]["params"]
        == models["stride3"]["params"]
        == 8 * 10 + 16 * 73 + 7 * 7 * 16 * 10 + 10
    )
    assert models["stride5"]["params"] == 6 * 26 + 14 * (25 * 6 + 1) + 7 * 7 * 14 * 10 + 10 == 9140
    for m in models.values():
        assert m["seeds"] == [0, 1] and len(m["final_val_accuracy"]) == 2
        mean, std = np.mean(m["final_val_accuracy"]), np.std(m["final_val_accuracy"], ddof=1)
        assert m["mean_val_accuracy"] == pytest.approx(mean) and m[
            "std_val_accuracy"
        ] == pytest.approx(std)
        assert m["mean_val_accuracy"] > 0.3
    v = s["verdict"]
    best = max(models, key=lambda k: models[k]["mean_val_accuracy"])
    assert v["best"] == best and v["pool_wins"] == (best == "pool")
    assert "does max-pooling win?" in last_line(capsys)


@pytest.mark.slow  # three architectures to compile: ~20 s of CPU
def test_channel_mixing(tmp_path, mnist_path):
    s = quick(channel_mixing, mnist_path, tmp_path)
    assert_png(tmp_path / "accuracy.png")
    mix = {k: v["mixing_layer"] for k, v in s["models"].items()}
    # The article's shapes: 26x26x4 maps in; option one (24, 24, 32), option two (24, 24, 8).
    assert all(m["input_shape"] == [26, 26, 4] for m in mix.values())
    assert (
        mix["option_one"]["kernel_shape"] == [3, 3, 1, 32]
        and mix["option_one"]["params"] == 32 * 10
    )
    assert mix["option_one"]["output_shape"] == [24, 24, 32]
    assert (
        mix["option_two"]["kernel_shape"] == [3, 3, 4, 8] and mix["option_two"]["params"] == 8 * 37
    )
    assert mix["option_two"]["output_shape"] == [24, 24, 8]
    assert mix["option_two_32"]["params"] == 32 * 37
    assert s["models"]["option_one"]["params"] == 40 + 320 + 12 * 12 * 32 * 10 + 10
    assert s["models"]["option_two"]["params"] == 40 + 296 + 12 * 12 * 8 * 10 + 10
    assert all(m["mean_val_accuracy"] > 0.3 for m in s["models"].values())


@pytest.mark.slow  # three architectures to compile: ~20 s of CPU
def test_linear_collapse(tmp_path, mnist_path, capsys):
    s = quick(linear_collapse, mnist_path, tmp_path)
    assert_png(tmp_path / "collapse.png")
    assert_png(tmp_path / "learning_curves.png")
    e = s["exactness"]
    assert e["composed_kernel_shape"] == [7, 7, 1, 2]
    assert e["float64_max_abs_error"] < 1e-12
    assert e["float32_relative_error"] < e["float32_tolerance"]
    assert e["relu_max_abs_difference"] > 0.1  # ReLU breaks associativity
    assert e["linear_unexplained_by_best_7x7"] < 1e-20
    assert e["relu_unexplained_by_best_7x7"] > 1e-3
    t = s["training"]["linear_stack_collapsed"]
    assert t["collapsed_params"] == 7 * 7 * 4 + 4 + 22 * 22 * 4 * 10 + 10
    assert t["relative_logit_difference"] < 1e-4 and t["same_predictions"] == 1.0
    assert t["accuracy_collapsed"] == t["accuracy_stack"]
    assert t["accuracy_stack"] == pytest.approx(
        s["training"]["models"]["linear"]["final_val_accuracy"][0]
    )
    assert "composed = stacked" in last_line(capsys)


def test_filters_and_maps(tmp_path, mnist_path, capsys):
    s = quick(filters_and_maps, mnist_path, tmp_path)
    for png in ("filters.png", "filters_layer2.png", "feature_maps.png"):
        assert_png(tmp_path / png)
    assert s["params"] == 5386
    assert s["map_shapes"] == {
        "Conv_0": [24, 24, 8], "Relu_0": [24, 24, 8], "MaxPool_0": [12, 12, 8],
        "Conv_1": [10, 10, 16], "Relu_1": [10, 10, 16], "MaxPool_1": [5, 5, 16],
        "Flatten_0": [400], "Dense_0": [10],
    }  # fmt: skip
    assert s["filter_shapes"] == {"Conv_0": [5, 5, 1, 8], "Conv_1": [3, 3, 8, 16]}
    assert s["prefix_vs_network_max_difference"] < 1e-5
    assert all(0.0 <= z <= 1.0 for z in s["zero_fraction"].values())
    assert s["digit"]["predicted"] == int(np.argmax(s["digit"]["logits"]))
    assert s["val_accuracy"] > 0.3
    assert "prefix vs net max difference" in last_line(capsys)
    with pytest.raises(SystemExit):
        filters_and_maps.main(
            ["--data-dir", str(mnist_path), "--quick", "--offline", "--no-progress",
             "--out", str(tmp_path / "bad"), "--layers", "Relu_0,Dense_0"]
        )  # fmt: skip
