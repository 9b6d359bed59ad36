"""experiments/transfer.py on the offline fallback (scikit-learn's digits): a quick run with random
weights (its JSON, its plot, only the head trained, the body bit-identical and its BatchNorm
statistics untouched), a run from a torchvision-layout safetensors file (its body is the file's),
the ``.npz`` reader, and bad ``--weights``, data folder or image size (exit status 2, naming
the file).

The runs use ``--image-size 32`` (a quarter of the default's compute) to keep this file under a
minute; the default 64x64 quick run is the same code.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from experiments import common, results_page, transfer
from jcnn import models

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SIZE = 32
QUICK = ["--quick", "--offline", "--no-progress", "--image-size", str(SIZE)]
#: ResNet-18's children before ``fc``, torchvision's module names.
BODY = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]


@pytest.fixture(autouse=True)
def _no_mnist(tmp_path, monkeypatch):
    """No MNIST anywhere: no $JCNN_DATA_DIR, an empty user cache, no download (--offline)."""
    monkeypatch.delenv("JCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision-layout resnet18 file: ``save_file(to_torchvision(init))``, and its trees."""
    net = models.resnet18()
    with common.fast_prng():  # the experiment's own init program: compiled once for both
        params, state = jax.jit(lambda k: net.init(k, (SIZE, SIZE, 3))[1:])(jax.random.key(7))
    sd = models.to_torchvision("resnet18", params, state)  # C-contiguous arrays
    path = tmp_path_factory.mktemp("weights") / "resnet18.safetensors"
    save_file(sd, str(path))
    return path, sd, params, state


def _same(a, b) -> bool:
    """Bit-identical trees (same structure, dtypes and bytes)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(la, lb, strict=True)
    )


def _body_untouched(run, body_params, body_state) -> None:
    final = run.final
    assert sorted(final.params) == sorted([*BODY, "head"]) == sorted(run.initial.params)
    for key in BODY:
        assert _same(final.params[key], body_params[key]), key
        assert _same(final.state[key], body_state[key]), key  # BatchNorm in inference mode
        assert _same(run.initial.params[key], body_params[key]), key


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        transfer.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data-dir", "--out", "--quick", "--offline", "--seed", "--model", "--weights"):
        assert flag in text
    for flag in ("--image-size", "--n-train", "--n-val", "--epochs", "--batch-size", "--lr"):
        assert flag in text


def test_quick_run_with_random_weights_trains_only_the_head(tmp_path, capsys):
    out = tmp_path / "out"
    run = transfer.run([*QUICK, "--out", str(out)])
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(run.summary, default=common._plain))
    assert (out / "accuracy.png").read_bytes()[:8] == PNG_MAGIC
    text = capsys.readouterr().out
    assert f"weights: {transfer.RANDOM_NOTE}" in text
    assert text.strip().splitlines()[-1].startswith("resnet18 (random weights), new head trained")

    assert "sklearn-digits fallback" in written["data"]
    assert written["model"] == "resnet18" and written["weights"] is None
    assert written["random_weights"] is True and written["weights_note"] == transfer.RANDOM_NOTE
    assert written["input_shape"] == [SIZE, SIZE, 3] and written["replaced_head"] == "fc"
    assert written["frozen"] == BODY
    assert written["normalisation"]["mean"] == list(transfer.IMAGENET_MEAN)
    assert written["params_trainable"] == 512 * 10 + 10
    assert written["params_total"] == 11_689_512 - (512 * 1000 + 1000) + 5_130
    assert written["params_frozen"] == written["params_total"] - written["params_trainable"]
    assert written["n_train"] == transfer.QUICK_TRAIN and written["n_val"] == transfer.QUICK_VAL
    assert written["epochs"] == 2 and written["batch_size"] == 32
    assert written["history"]["epoch"] == [1, 2]
    assert 0.0 <= written["final_val_accuracy"] <= written["best_val_accuracy"] <= 1.0
    seconds = written["seconds"]
    for key in ("conversion", "training", "evaluation", "final_evaluation", "total"):
        assert seconds[key] > 0, key

    # Only the head changed; the body is from_torchvision's, bit for bit, state included.
    params, state = run.converted
    _body_untouched(run, params, state)
    assert not _same(run.final.params["head"], run.initial.params["head"])
    assert run.final.params["head"]["kernel"].shape == (512, 10)

    # The results page summarises it.
    (exp,) = [e for e in results_page.EXPERIMENTS if e.name == "transfer"]
    assert "resnet18 with random weights" in exp.result(written)


def test_weights_file_gives_its_body(resnet18_file, tmp_path, capsys):
    path, _, params, state = resnet18_file
    out = tmp_path / "out"
    run = transfer.run([*QUICK, "--epochs", "1", "--weights", str(path), "--out", str(out)])
    text = capsys.readouterr().out
    assert transfer.RANDOM_NOTE not in text and f"weights: {path}" in text
    written = json.loads((out / "results.json").read_text())
    assert written["weights"] == str(path) and written["random_weights"] is False
    assert written["history"]["epoch"] == [1]
    _body_untouched(run, params, state)


def test_npz_weights_read_as_the_safetensors_file(resnet18_file, tmp_path):
    path, sd, params, _ = resnet18_file
    npz = tmp_path / "resnet18.npz"
    np.savez(npz, **sd)
    from_npz, from_st = transfer.load_state_dict(npz), transfer.load_state_dict(path)
    assert sorted(from_npz) == sorted(from_st) == sorted(sd)
    assert all(_same(from_npz[k], from_st[k]) for k in sd)
    _, got, _ = models.from_torchvision("resnet18", from_npz)
    assert _same(got["layer1"], params["layer1"])


@pytest.mark.parametrize("case", ["missing", "wrong_model", "pickle", "corrupt", "folder"])
def test_bad_weights_exit_2_naming_the_file(case, resnet18_file, tmp_path, capsys):
    argv = [*QUICK, "--out", str(tmp_path / "out")]
    if case == "missing":
        path, expected = tmp_path / "nope.safetensors", "no such file"
    elif case == "wrong_model":
        path, expected = resnet18_file[0], "not a state dict of torchvision.models.resnet34"
        argv += ["--model", "resnet34"]
    elif case == "pickle":
        path, expected = tmp_path / "resnet18.pth", "pickled"
        path.write_bytes(b"\x80\x04not read")
    elif case == "corrupt":
        path, expected = tmp_path / "broken.safetensors", "cannot read it"
        path.write_bytes(b"\x00" * 20)
    else:
        path, expected = tmp_path, "is a folder"
    with pytest.raises(SystemExit) as exc:
        transfer.main([*argv, "--weights", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the fallback's notice
    assert err.startswith(f"error: --weights {path}: ") and expected in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_bad_data_dir_or_image_size_exit_2_before_compiling(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no_mnist_here"
    monkeypatch.setenv("JCNN_DATA_DIR", str(missing))  # explicit: never a silent fallback
    with pytest.raises(SystemExit) as exc:
        transfer.main([*QUICK, "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and str(missing) in capsys.readouterr().err
    monkeypatch.delenv("JCNN_DATA_DIR")
    with pytest.raises(SystemExit) as exc:
        transfer.main([*QUICK, "--model", "vgg11", "--image-size", "8"])
    assert exc.value.code == 2
    assert "error: --image-size 8 is too small for vgg11" in capsys.readouterr().err
