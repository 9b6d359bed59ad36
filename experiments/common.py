"""Shared plumbing of the experiment scripts: flags, output folder, MNIST with a fallback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every experiment shares."""
    p = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with MNIST idx(.gz) files (default: $JCNN_DATA_DIR, the cache, a download)",
    )
    p.add_argument("--out", default=f"runs/{name}", help="output folder for the JSON and PNGs")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="a CI-sized run (seconds, not minutes)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--offline", action="store_true", help="never download; use local files or the fallback"
    )
    return p


def output_dir(path: str | os.PathLike[str]) -> Path:
    """Creates and returns the output folder."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Writes JSON atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _digits_as_mnist() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits resized to 20x20 and centred on a 28x28 canvas, like MNIST."""
    import jax

    from jcnn.data import load_digits_fallback

    images, labels = load_digits_fallback()
    small = np.asarray(jax.image.resize(images, (len(images), 20, 20, 1), "linear"))
    canvas = np.zeros((len(images), 28, 28, 1), np.float32)
    canvas[:, 4:24, 4:24] = np.clip(small, 0.0, 1.0)
    return canvas, labels


def load_mnist_or_fallback(
    data_dir: str | None, *, offline: bool = False, n_train: int | None = None
) -> dict[str, Any]:
    """MNIST splits (see ``jcnn.data.load_mnist_splits``), or scikit-learn's digits if unavailable.

    The fallback (1,797 real handwritten digits shipped with scikit-learn) is resized to 28x28 so
    the same models run; it is split 60/40 into train and validation (val = test). It prints
    why it fell back.
    """
    from jcnn.data import DatasetUnavailableError, load_mnist_splits

    try:
        return load_mnist_splits(data_dir, n_train=n_train, download=not offline)
    except DatasetUnavailableError as err:
        first = str(err).splitlines()[0]
        print(
            f"MNIST is not available ({first}).\nFalling back to scikit-learn's 8x8 digits "
            "(1,797 images, resized to 28x28). Pass --data-dir with the MNIST idx files to "
            "train on MNIST.",
            file=sys.stderr,
        )
    images, labels = _digits_as_mnist()
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.6 * len(images))
    train = (images[order[:cut]], labels[order[:cut]])
    val = (images[order[cut:]], labels[order[cut:]])
    if n_train is not None:
        train = (train[0][:n_train], train[1][:n_train])
    return {
        "train": train,
        "val": val,
        "test": val,
        "source": f"sklearn-digits fallback ({len(train[0])} train, {len(val[0])} val = test)",
    }
