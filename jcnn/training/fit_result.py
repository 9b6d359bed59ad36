"""What :func:`jcnn.fit` returns (:class:`FitResult`) and raises at a NaN or inf training
loss (:class:`NonFiniteLossError`, by :func:`raise_on_nonfinite`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jcnn.training.state import TrainState

__all__ = ["FitResult", "NonFiniteLossError", "raise_on_nonfinite"]


@dataclass
class FitResult:
    """What :func:`fit` returns: the final train state and the per-epoch history.

    Attributes:
        train_state: the state after the last step (``train_state.ema``: the EMA of the params,
            when ``fit(ema=...)``).
        history: lists per epoch (``epoch``, ``train_<metric>``, ``val_<metric>``,
            ``ema_val_<metric>``, ``lr``, ``seconds``) of the whole run: a resumed run's history
            starts with the epochs trained before the checkpoint.
        resumed_from: the step of the checkpoint this call resumed from; None when it started
            afresh.
        resume_note: what ``fit`` said about the resume; ``""`` when not resumed.
    """

    train_state: TrainState
    history: dict[str, list[float]] = field(default_factory=dict)
    resumed_from: int | None = None
    resume_note: str = ""

    @property
    def params(self) -> Any:
        """The trained params."""
        return self.train_state.params

    @property
    def ema_params(self) -> Any:
        """The EMA of the params (None without ``ema=``)."""
        return self.train_state.ema


class NonFiniteLossError(FloatingPointError):
    """The training loss of a step of :func:`fit` was NaN or inf (``stop_on_nonfinite=True``).

    Raised after the chunk holding that step, before anything of the chunk is checkpointed or
    handed to callbacks.

    Attributes:
        step: optimiser steps taken before the bad step; epoch, index: where (from 0); loss:
            the value.
    """

    def __init__(self, message: str, *, step: int, epoch: int, index: int, loss: float) -> None:
        super().__init__(message)
        self.step, self.epoch, self.index, self.loss = step, epoch, index, loss


def raise_on_nonfinite(
    losses: Any,
    *,
    ts: TrainState,
    epoch: int,
    first: int,
    epochs: int,
    steps_per_epoch: int,
    saved: str,
    mean_before: float | None,
) -> None:
    """Raises :class:`NonFiniteLossError` at the first non-finite loss of a chunk, if any.

    Args:
        losses: the chunk's per-step training losses, ``(num_steps,)``.
        ts: the train state after the chunk (its step dates the bad step).
        epoch, first: the chunk's epoch and the index of its first step in the epoch (from 0).
        epochs, steps_per_epoch: the run's, for the message.
        saved: words on the last checkpoint (``""`` when none).
        mean_before: the mean loss of the epoch's steps before the chunk, or None.
    """
    values = np.asarray(losses, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(values))
    if not bad.size:
        return
    j = int(bad[0])
    step, index, value = int(ts.step) - len(values) + j, first + j, float(values[j])
    before = ", ".join(f"{v:.4g}" for v in values[max(0, j - 3) : j])
    if before:
        before = f", after losses {before}"
    elif mean_before is not None:
        before = f", after a mean loss of {mean_before:.4g} over the epoch's earlier steps"
    raise NonFiniteLossError(
        f"fit: the training loss is {value} at global step {step + 1} (epoch {epoch + 1}/"
        f"{epochs}, step {index + 1}/{steps_per_epoch} of the epoch; counted from "
        f"1){before}. Training stopped; nothing of this chunk was checkpointed{saved}. Likely "
        "causes: a learning rate too high (try one 10x lower), NaN/inf in the data (check "
        "np.isfinite(x).all()), or an operation such as log(0) or x / 0 in the loss or a layer; "
        'jax.config.update("jax_debug_nans", True) raises at the first operation that makes a '
        "NaN. Pass stop_on_nonfinite=False to train on regardless",
        step=step,
        epoch=epoch,
        index=index,
        loss=value,
    )
