"""experiments/results_page.py: docs/experiments.md from the experiments' results under runs/.

The page is written into a temporary folder from two experiments run through ``--run`` (the
analytic ones, seconds each), a hand-made ``downsampling`` result and an oversized PNG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import results_page


def _downsampling_result() -> dict:
    def model(finals: list[float], params: int) -> dict:
        return {
            "params": params,
            "seeds": [0, 1, 2],
            "final_val_accuracy": finals,
            "mean_val_accuracy": float(np.mean(finals)),
            "std_val_accuracy": float(np.std(finals, ddof=1)),
            "seconds": 12.0,
        }

    return {
        "data": "mnist:t10k-only (train = t10k[0:5000] (5000), val = test = t10k[5000:10000] "
        "(5000)) from /somewhere/private/mnist",
        "models": {
            "pool": model([0.97, 0.96, 0.965], 9098),
            "stride3": model([0.95, 0.955, 0.96], 9098),
        },
        "verdict": {
            "best": "pool",
            "best_other": "stride3",
            "pool_minus_best_other": 0.01,
            "difference_in_standard_errors": 2.4,
            "pool_wins": True,
            "pool_wins_clearly": True,
        },
    }


def test_the_page_is_written_from_runs_with_one_command(tmp_path):
    runs, page, images = tmp_path / "runs", tmp_path / "docs" / "experiments.md", tmp_path / "img"
    (runs / "downsampling").mkdir(parents=True)
    (runs / "downsampling" / "results.json").write_text(json.dumps(_downsampling_result()))
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    Image.fromarray(noise).save(runs / "downsampling" / "accuracy.png")
    assert (runs / "downsampling" / "accuracy.png").stat().st_size > 1_000_000

    argv = ["--runs", str(runs), "--page", str(page), "--images", str(images)]
    text = results_page.main([*argv, "--run", "convolution_math", "receptive_fields"])
    assert page.read_text() == text
    assert "python -m experiments.results_page --run all --data-dir <folder>" in text
    rows = {line.split(" | ")[0][3:-1]: line for line in text.splitlines() if line[:3] == "| `"}
    assert set(rows) >= {e.name for e in results_page.EXPERIMENTS}
    assert (
        "correlation does not commute (difference 2.3: the expected non-zero result)"
        in (rows["convolution_math"])
    )
    assert "Final receptive field: course CNN 12 px (jump 4" in rows["receptive_fields"]
    assert "`python -m experiments.receptive_fields`" in rows["receptive_fields"]
    assert (
        "pool 0.9650 ± 0.0050, stride3 0.9550 ± 0.0050 (3 seeds). Max-pooling wins clearly"
        in (rows["downsampling"])
    )
    assert "`python -m experiments.downsampling --data-dir <folder>`" in rows["downsampling"]
    assert "not run yet" in rows["seed_mnist"] and "not run yet" in rows["localization"]
    # Timing of the runs (wall / user CPU), recorded beside their results.
    timing = json.loads((runs / "receptive_fields" / "timing.json").read_text())
    assert timing["command"] == "python -m experiments.receptive_fields"
    assert timing["wall_seconds"] > 0 and rows["receptive_fields"].rstrip(" |").endswith(" s")
    # The data source without its folder; no folder of this machine anywhere.
    assert "* `downsampling`: mnist:t10k-only (train = t10k[0:5000] (5000)" in text
    assert "/somewhere/private" not in text and str(tmp_path) not in text
    # Plots: copied, each small, linked relative to the page, with their captions.
    pngs = sorted(p.name for p in images.iterdir())
    assert pngs == [
        "convolution_math_convolution_math.png",
        "downsampling_accuracy.png",
        "receptive_fields_receptive_fields.png",
    ]
    assert all((images / p).stat().st_size < results_page.MAX_IMAGE_BYTES for p in pngs)
    assert Image.open(images / "downsampling_accuracy.png").size[0] < 900  # shrunk to fit
    assert "](../img/downsampling_accuracy.png)" in text
    assert "*final validation accuracy: dots one per seed; square and bar: mean ± sample std" in (
        text
    )


def test_a_page_naming_a_local_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="would name the local folder"):
        results_page._check_no_local_paths(f"data from {Path.cwd().absolute()}/x", tmp_path)


def test_a_failed_run_is_an_error_quoting_its_log(tmp_path):
    bad = results_page.Experiment(
        "receptive_fields", "", str, uses_data=False, extra_args=("--no-such-flag",)
    )
    with pytest.raises(RuntimeError, match="(?s)exited with status 2:.*unrecognized arguments"):
        results_page.run_experiment(bad, tmp_path, None)


def test_helpers():
    assert results_page._ahead_from([0.5, 0.7, 0.9], [0.6, 0.6, 0.8]) == 2
    assert results_page._ahead_from([0.5, 0.5], [0.6, 0.6]) is None
    assert results_page._to(0.0) == "exactly" and results_page._to(2.2e-16) == "to 2e-16"
    row = results_page._unlisted_row("seed_mnist")
    assert row.startswith("| `seed_mnist` | The course's MNIST comparison")
