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
            ``val_loss``, ``train_accuracy``, ``val_accuracy`` (as :func:`jcnn.fit` returns).
        path: PNG file to write.
        title: figure title.
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, hist in runs.items():
        series = [v for k, v in hist.items() if k != "epoch"]
        count = max((len(v) for v in series), default=0)
        epochs = list(hist.get("epoch") or range(1, count + 1))
        for split, style in (("train", "--"), ("val", "-")):
            # Markers, so a run of one epoch (--quick) still shows its points.
            for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
                values = hist.get(f"{split}_{metric}")
                if values:
                    ax.plot(
                        epochs[: len(values)],
                        values,
                        style,
                        marker="o",
                        markersize=3,
                        label=f"{name} {split}",
                    )
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(
                0.5,
                0.5,
                "no epochs recorded",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="gray",
            )
    fig.suptitle(title or "learning curves")
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
    fig, axes = plt.subplots(
        c_in, c_out, figsize=(1.4 * c_out + 1.2, 1.4 * c_in + 0.6), squeeze=False
    )
    bound = float(np.abs(k).max()) or 1.0
    image = None
    for i in range(c_in):
        for o in range(c_out):
            ax = axes[i][o]
            image = ax.imshow(k[:, :, i, o], cmap="RdBu_r", vmin=-bound, vmax=bound)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"filter {o}", fontsize=8)
            if o == 0:
                ax.set_ylabel(f"input ch {i}", fontsize=8)
    assert image is not None  # c_in, c_out >= 1
    bar = fig.colorbar(image, ax=axes, shrink=0.8)
    bar.set_label("weight (red > 0, blue < 0; one scale for all)")
    fig.suptitle(title or f"{c_out} filters of {k.shape[0]}x{k.shape[1]} over {c_in} channel(s)")
    return _save(fig, path)


def feature_maps(
    maps: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    image: Any = None,
    max_channels: int = 16,
    title: str = "",
) -> Path:
    """Feature maps of one input, one row per layer, each row on one colour scale (colorbar).

    Args:
        maps: ``{layer_name: activation (H, W, C)}``.
        image: optional input ``(H, W, C)`` shown first.
        max_channels: channels shown per layer.
        title: figure title (default says what is shown and how it is scaled).
    """
    rows = list(maps.items())
    if image is not None:
        rows.insert(0, ("input", image))
    cols = min(max(np.asarray(m).shape[-1] for _, m in rows), max_channels)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.3 * cols + 1.2, 1.4 * len(rows) + 0.6), squeeze=False
    )
    for r, (name, m) in enumerate(rows):
        m = np.asarray(m)
        shown = m[..., :cols]
        # One colour scale per row (layer), so channels of a layer compare directly.
        lo, hi = float(shown.min()), float(shown.max())
        image_r = None
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < m.shape[-1]:
                cmap = "gray" if name == "input" else "viridis"
                image_r = ax.imshow(m[..., c], cmap=cmap, vmin=lo, vmax=hi)
                if r == 0 or (r == 1 and image is not None):
                    ax.set_title(f"ch {c}", fontsize=7)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(name, fontsize=8)
        if image_r is not None:
            fig.colorbar(image_r, ax=list(axes[r]), shrink=0.8, pad=0.01).ax.tick_params(
                labelsize=6
            )
    fig.suptitle(title or "feature maps of one input (one colour scale per row)")
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
