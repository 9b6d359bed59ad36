"""The bookkeeping of one epoch of :func:`jcnn.fit`: the running sums of its per-step metrics
(:class:`EpochTracker`) and the entries callbacks add to its record (:func:`extra_entries`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jcnn.training.hooks import Callback

__all__ = ["EpochTracker", "extra_entries"]


def extra_entries(callback: Callback, got: Any, record: dict[str, float]) -> dict[str, float]:
    """A callback's ``extend_record`` result as ``{name: float}``: a mapping of scalars whose
    names are new to the record."""
    name = type(callback).__name__
    if got is None:
        return {}
    if not isinstance(got, Mapping):
        raise TypeError(
            f"fit: {name}.extend_record must return a mapping {{name: scalar}} (or None), got a "
            f"{type(got).__name__}"
        )
    shapes = {k: np.shape(v) for k, v in got.items() if np.ndim(v) != 0}
    if shapes:
        raise ValueError(
            f"fit: {name}.extend_record returned non-scalar values {shapes}: return scalars"
        )
    taken = sorted(set(got) & set(record))
    if taken:
        raise ValueError(
            f"fit: {name}.extend_record returned {taken}, which the record already holds (from "
            "fit or an earlier callback); give your entries their own names"
        )
    return {k: float(v) for k, v in got.items()}


@dataclass
class EpochTracker:
    """The running sums of one epoch's per-step metrics (restored when a resumed run cut it)."""

    epoch: int
    index: int
    started: float
    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    ended: bool = False

    @classmethod
    def start(cls, epoch: int, index: int, partial: dict[str, Any]) -> EpochTracker:
        seconds = float(partial.get("seconds", 0.0)) if index else 0.0
        sums = dict(partial.get("sums", {})) if index else {}
        steps = int(partial.get("steps", 0)) if index else 0
        return cls(epoch, index, time.perf_counter() - seconds, sums, steps)

    def add(self, metrics: dict[str, Any], num_steps: int) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(np.sum(np.asarray(v, np.float64)))
        self.index += num_steps
        self.steps += num_steps

    def means(self) -> dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}

    def partial(self) -> dict[str, Any]:
        return {"sums": self.sums, "steps": self.steps, "seconds": self.seconds()}

    def seconds(self) -> float:
        return time.perf_counter() - self.started
