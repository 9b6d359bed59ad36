"""experiments/private_mnist.py in quick mode on the offline fallback (scikit-learn's digits):
its JSON, its PNGs, and numbers recomputed here (steps, sampling rate, epsilon by the
accountant, accuracies in range, more noise -> smaller epsilon)."""

from __future__ import annotations

import json

import pytest

from experiments import common, private_mnist
from jcnn import privacy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_help_lists_the_shared_and_private_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        private_mnist.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data-dir", "--out", "--quick", "--no-progress", "--offline", "--seed"):
        assert flag in text
    for flag in ("--noise", "--l2-clip", "--delta", "--epochs", "--batch-size", "--lr"):
        assert flag in text


@pytest.mark.parametrize("noise", ["0,1", "1,x", ""])
def test_bad_noise_levels_are_usage_errors(noise, capsys):
    with pytest.raises(SystemExit) as exc:
        private_mnist.main(["--noise", noise, "--quick", "--offline", "--no-progress"])
    assert exc.value.code == 2 and "--noise" in capsys.readouterr().err


def test_quick_run_on_the_offline_fallback(tmp_path, monkeypatch, capsys):
    # No MNIST anywhere: no $JCNN_DATA_DIR, an empty user cache, no download (--offline).
    monkeypatch.delenv("JCNN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))
    out = tmp_path / "out"
    summary = private_mnist.main(["--quick", "--offline", "--no-progress", "--out", str(out)])
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(summary, default=common._plain))
    for png in ("accuracy_vs_epsilon.png", "learning_curves.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC

    assert "sklearn-digits fallback" in written["data"]
    assert written["params"] == 5_386 and written["n_train"] == 1000
    assert written["epochs"] == 2 and written["batch_size"] == 250
    assert written["steps"] == 2 * (1000 // 250) and written["sampling_rate"] == 0.25
    runs = written["private"]
    assert [r["noise_multiplier"] for r in runs] == [1.0, 3.0]
    for r in runs:
        assert r["history"]["epoch"] == [1, 2]
        assert 0.0 <= r["final_val_accuracy"] <= 1.0
        for acc in ("rdp", "pld"):
            expected = privacy.epsilon(8, 0.25, r["noise_multiplier"], 1e-5, accountant=acc)
            assert r[f"epsilon_{acc}"] == pytest.approx(expected)
    assert runs[1]["epsilon_rdp"] < runs[0]["epsilon_rdp"]
    # Two epochs of Adam learn the digits well beyond chance (10%) without privacy.
    assert written["non_private"]["final_val_accuracy"] > 0.3
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("after 2 epochs at delta 1e-05: non-private acc")
