"""Modules split by concept still offer every public name at their old path, as the same object."""

from __future__ import annotations

import importlib

import pytest

MOVED = {
    "jcnn.training.callbacks": {
        "jcnn.training.hooks": ["Callback", "EpochEnd", "RunInfo"],
        "jcnn.training.loggers": ["MetricsLogger", "TensorBoard"],
        "jcnn.training.monitors": ["EarlyStopping", "KeepBest"],
        "jcnn.training.learning_rate": ["LearningRate", "learning_rate_of"],
    },
    "jcnn.training.fit": {
        "jcnn.training.fit_result": ["FitResult", "NonFiniteLossError"],
        "jcnn.training.fit_args": ["Arrays", "FitArgs"],
        "jcnn.training.epoch_record": ["EpochTracker"],
    },
    "jcnn.data.datasets": {
        "jcnn.data.mnist": ["MNIST_FILES", "load_fashion_mnist", "load_mnist", "load_mnist_splits"],
        "jcnn.data.cifar": ["load_cifar10"],
        "jcnn.data.fallback": [
            "FALLBACK_TRAIN_FRACTION",
            "load_digits_fallback",
            "load_mnist_or_fallback",
        ],
        "jcnn.data.loading": ["PathLike", "normalize"],
    },
    "jcnn.layers.lowering": {
        "jcnn.layers.conv_tangents": [
            "dimension_numbers",
            "patches_by_gather",
            "patches_by_slices",
        ],
    },
    "jcnn.layers.shapes": {"jcnn.layers.arguments": ["as_int", "is_int", "positive_int"]},
}

CASES = [
    (old, new, name) for old, news in MOVED.items() for new, names in news.items() for name in names
]


@pytest.mark.parametrize(("old", "new", "name"), CASES, ids=lambda v: str(v))
def test_the_old_path_gives_the_same_object(old, new, name):
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    )


@pytest.mark.parametrize("module", ["jcnn.training.callbacks", "jcnn.data.datasets"])
def test_all_of_the_old_module_still_resolves(module):
    mod = importlib.import_module(module)
    assert all(hasattr(mod, name) for name in mod.__all__)


def test_the_lowering_rule_reads_the_constants_of_jcnn_lowering(monkeypatch):
    """bench/lowering_loops.py switches the CPU rule by setting jcnn.lowering's constants."""
    lw = importlib.import_module("jcnn.layers.lowering")
    assert lw.resolve_conv_lowering("auto", (3, 3), 64, 1, "cpu") == "canonical"
    monkeypatch.setattr(lw, "CPU_WIDE_CONV", "native")
    monkeypatch.setattr(lw, "PATCHES_MAX_CHANNELS", 0)
    assert lw.resolve_conv_lowering("auto", (3, 3), 64, 1, "cpu") == "native"
    assert lw.resolve_conv_lowering("auto", (3, 3), 1, 1, "cpu") == "native"
