"""Plots saved as PNG files (matplotlib, Agg backend): learning curves, filters, feature maps."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Saves atomically: write a temporary file beside the target, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def learning_curves(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Loss and accuracy per epoch for several runs on shared axes.

    Args:
        runs: ``{run_name: history}``; a history has ``epoch`` and any of ``train_loss``,
            ``val_loss``, ``train_accuracy``, ``val_accuracy`` (as :func:`jcnn.fit.fit` returns).
        path: PNG file to write.
        title: figure title.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, hist in runs.items():
        epochs = hist.get("epoch") or list(range(1, len(next(iter(hist.values()))) + 1))
        for split, style in (("train", "--"), ("val", "-")):
            if f"{split}_loss" in hist:
                ax_loss.plot(epochs, hist[f"{split}_loss"], style, label=f"{name} {split}")
            if f"{split}_accuracy" in hist:
                ax_acc.plot(epochs, hist[f"{split}_accuracy"], style, label=f"{name} {split}")
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def filter_grid(kernel: Any, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """First-layer filters as images: one panel per (output channel, input channel).

    Args:
        kernel: a 2-D conv kernel ``(kh, kw, C_in, C_out)``.
    """
    k = np.asarray(kernel)
    if k.ndim != 4:
        raise ValueError(
            f"filter_grid: expected a 2-D conv kernel (kh, kw, C_in, C_out), got {k.shape}"
        )
    c_in, c_out = k.shape[2], k.shape[3]
    fig, axes = plt.subplots(c_in, c_out, figsize=(1.4 * c_out, 1.4 * c_in + 0.4), squeeze=False)
    bound = float(np.abs(k).max()) or 1.0
    for i in range(c_in):
        for o in range(c_out):
            ax = axes[i][o]
            ax.imshow(k[:, :, i, o], cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"#{o}", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def feature_maps(
    maps: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    image: Any = None,
    max_channels: int = 16,
) -> Path:
    """Feature maps of one input, one row per layer.

    Args:
        maps: ``{layer_name: activation (H, W, C)}``.
        image: optional input ``(H, W, C)`` shown first.
        max_channels: channels shown per layer.
    """
    rows = list(maps.items())
    if image is not None:
        rows.insert(0, ("input", image))
    cols = min(max(np.asarray(m).shape[-1] for _, m in rows), max_channels)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols, 1.4 * len(rows)), squeeze=False)
    for r, (name, m) in enumerate(rows):
        m = np.asarray(m)
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < m.shape[-1]:
                ax.imshow(m[..., c], cmap="gray" if name == "input" else "viridis")
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(name, fontsize=8)
    return _save(fig, path)


def image_grid(
    images: Sequence[Any],
    path: str | os.PathLike[str],
    *,
    titles: Sequence[str] = (),
    cols: int = 6,
) -> Path:
    """Images side by side (e.g. an input and its filtered versions), with titles."""
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(a for row in axes for a in row):
        ax.axis("off")
        if i < len(images):
            img = np.asarray(images[i])
            ax.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap="gray")
            if i < len(titles):
                ax.set_title(titles[i], fontsize=9)
    return _save(fig, path)
