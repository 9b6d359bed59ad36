"""experiments/train_folder.py: the demo folder (layout, determinism), the recipe's parts (weight
decay on kernels only, warm-up + cosine, the evaluation batch), a quick run on the demo folder
(above chance, its JSON and plots) and bad flags (exit status 2, before anything is compiled).

The run trains resnet18 at 32x32 for 2 epochs in this process (``--workers 0``), well under a
minute on 2 CPU cores.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import results_page, train_folder
from jcnn import layers as L
from jcnn.data import normalize_on_device

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "d"
    train_folder.main(["--make-demo-data", str(root)])
    return root


def test_demo_folder_layout_and_determinism(demo, tmp_path, capsys):
    for split, n in (("train", train_folder.DEMO_TRAIN), ("val", train_folder.DEMO_VAL)):
        assert sorted(p.name for p in (demo / split).iterdir()) == list(train_folder.DEMO_CLASSES)
        for kind in train_folder.DEMO_CLASSES:
            files = sorted((demo / split / kind).glob("*.jpg"))
            assert len(files) == n
    with Image.open(demo / "train" / "circles" / "000.jpg") as image:
        assert image.format == "JPEG" and image.size == (64, 64) and image.mode == "RGB"
    again = train_folder.make_demo_data(tmp_path / "again", seed=0)
    other = train_folder.make_demo_data(tmp_path / "other", seed=1)
    name = "val/stripes/003.jpg"
    assert (again / name).read_bytes() == (demo / name).read_bytes()
    assert (other / name).read_bytes() != (demo / name).read_bytes()


def _named(tree) -> dict[str, np.ndarray]:
    return {
        "/".join(str(k.key) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(tree)
    }


def test_weight_decay_reaches_kernels_only():
    net = L.serial(normalize_on_device(0.5, 0.5), L.Conv(2, 3), L.BatchNorm(), L.Dense(3))
    _, params, _ = net.init(jax.random.key(0), (8, 8, 3))
    mask = _named(train_folder.kernel_mask(params))
    assert sorted(k.rsplit("/", 1)[1] for k in mask) == sorted(
        ["kernel", "bias", "scale", "offset", "kernel", "bias"]
    )
    assert all(bool(v) == k.endswith("/kernel") for k, v in mask.items())

    # With zero gradients, one step after the warm-up moves the kernels only (decay).
    optimizer, _ = train_folder.recipe_optimizer(0.1, 0.5, 1, 100)
    opt_state = optimizer.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    for _ in range(3):
        updates, opt_state = optimizer.update(zeros, opt_state, params)
    for path, u in _named(updates).items():
        assert np.any(u != 0) == path.endswith("/kernel"), path


def test_warmup_then_cosine():
    assert train_folder.warmup_steps(10, 100) == 5  # 5% of the steps < one epoch
    assert train_folder.warmup_steps(10, 1000) == 10  # one epoch
    _, schedule = train_folder.recipe_optimizer(0.1, 0.0, 10, 100)
    assert float(schedule(0)) == 0.0 and float(schedule(5)) == pytest.approx(0.1)
    assert float(schedule(50)) < 0.1 and float(schedule(100)) == pytest.approx(0.0, abs=1e-9)


def test_eval_batch_size_divides_when_it_can():
    assert train_folder.eval_batch_size(40, 16) == 10
    assert train_folder.eval_batch_size(50_000, 256) == 250
    assert train_folder.eval_batch_size(97, 16) == 16  # prime: the last batch is partial
    assert train_folder.eval_batch_size(5, 16) == 5


def test_quick_run_on_the_demo_folder(demo, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--data-dir", str(demo), "--quick", "--epochs", "2", "--workers", "0"]
    summary = train_folder.main([*argv, "--no-progress", "--out", str(out)])
    written = json.loads((out / "results.json").read_text())
    assert written["final_val_top1"] == summary["final_val_top1"]
    assert written["classes"] == list(train_folder.DEMO_CLASSES)
    assert written["n_train"] == 160 and written["n_val"] == 40
    assert written["model"] == "resnet18" and written["image_size"] == 32
    settings = written["settings"]
    assert settings["epochs"] == 2 and settings["batch_size"] == train_folder.QUICK_BATCH
    assert settings["lr"] == pytest.approx(0.1 * train_folder.QUICK_BATCH / 256)
    assert settings["label_smoothing"] == 0.1 and settings["workers"] == 0
    hist = written["history"]
    assert hist["epoch"] == [1, 2] and len(hist["lr"]) == 2 and hist["lr"][-1] < hist["lr"][0]
    assert all(v > 0 for v in hist["images_per_second"])
    assert written["images_per_second"]["last_epoch"] > 0
    assert written["top5_k"] == 4 and written["final_val_top5"] == 1.0  # 4 classes
    assert written["final_val_top1"] > 0.5  # chance is 0.25
    for png in ("learning_curves.png", "samples.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("resnet18 on 4 classes after 2 epochs: val top-1 ")
    assert "(chance 0.2500)" in last and "images/s" in last
    (exp,) = [e for e in results_page.EXPERIMENTS if e.name == "train_folder"]
    assert "resnet18 from scratch at 32x32 on 4 classes" in exp.result(written)


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        train_folder.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data-dir", "--model", "--epochs", "--batch-size", "--image-size", "--workers"):
        assert flag in text
    for flag in ("--lr", "--ema", "--mixup", "--cutmix", "--label-smoothing", "--quick"):
        assert flag in text
    for flag in ("--make-demo-data", "--out", "--seed", "--no-progress"):
        assert flag in text


def test_bad_flags_exit_2_naming_the_problem(demo, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out"), "--no-progress", "--workers", "0"]
    with pytest.raises(SystemExit) as exc:
        train_folder.main(["--data-dir", str(tmp_path / "nowhere"), "--quick", *out])
    assert exc.value.code == 2 and str(tmp_path / "nowhere") in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_folder.main(["--data-dir", str(demo), "--quick", "--model", "lenet", *out])
    assert exc.value.code == 2 and "not a zoo model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_folder.main(["--data-dir", str(demo), "--model", "vgg11", "--image-size", "8", *out])
    assert exc.value.code == 2 and "--image-size 8 is too small" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        train_folder.main(["--quick", *out])
    assert exc.value.code == 2 and "--data-dir" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.json").exists()
