"""The learning rate in fit's history: :class:`LearningRate` and :func:`learning_rate_of`.

An optimiser made with ``optax.inject_hyperparams`` holds its learning rate in its state, and fit
reads it from there with :func:`learning_rate_of`; one built with a bare optax schedule does not,
and the :class:`LearningRate` callback adds the schedule's value to each epoch's record instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jcnn.training.hooks import Callback, EpochEnd

__all__ = ["LearningRate", "learning_rate_of"]


class LearningRate(Callback):
    """Adds ``"lr"``, the learning rate of the epoch's last step, to each epoch's record.

    For an optimiser built with a bare optax schedule (``optax.adam(schedule)``), whose state
    does not hold the learning rate: the value is ``schedule(step - 1)``, where ``step`` is the
    train state's step after the epoch (the schedule is called with the count of steps before
    a step, so ``step - 1`` is the last step's). An optimiser made with
    ``optax.inject_hyperparams`` needs no callback: fit reads its rate with
    :func:`learning_rate_of`.

    Args:
        schedule: ``step -> learning rate`` (an optax schedule, or any callable).

    Raises:
        TypeError: ``schedule`` is not callable (e.g. a float: a constant needs no logging).

    Example:
        >>> from types import SimpleNamespace
        >>> lr = LearningRate(optax.linear_schedule(1.0, 0.0, transition_steps=100))
        >>> ts = SimpleNamespace(step=jnp.array(51))   # 51 steps done: the last one was 50
        >>> lr.extend_record(EpochEnd(0, {}, {}, ts))
        {'lr': 0.5}
    """

    def __init__(self, schedule: Callable[[Any], Any]) -> None:
        if not callable(schedule):
            raise TypeError(
                f"LearningRate: schedule must be a callable step -> learning rate (an optax "
                f"schedule), got {type(schedule).__name__} {schedule!r:.60}; a constant "
                "learning rate needs no callback"
            )
        self.schedule = schedule

    def extend_record(self, end: EpochEnd) -> dict[str, float]:
        """``{"lr": schedule(step - 1)}`` (``schedule(0)`` before any step)."""
        step = max(int(end.train_state.step) - 1, 0)
        return {"lr": float(self.schedule(step))}


def _is_hyperparams_entry(path: tuple, value: Any) -> bool:
    parent = path[-2] if len(path) >= 2 else None
    return getattr(parent, "name", None) == "hyperparams" and np.size(value) >= 1


def learning_rate_of(opt_state: Any) -> float | None:
    """The learning rate held in an ``optax.inject_hyperparams`` state, or None.

    Searches the whole ``opt_state`` (chains, ``multi_transform``/``masked`` nesting, wrappers)
    for an ``InjectHyperparamsState``'s ``hyperparams["learning_rate"]``. When several
    transformations hold one (a ``multi_transform`` with a rate per group), the first in tree
    order is returned. After step ``t`` the state holds the rate of step ``t - 1``, the last
    step taken (the same as :class:`LearningRate` reports); before any step, the first one's.

    Args:
        opt_state: an optax optimiser state (e.g. ``train_state.opt_state``).

    Returns:
        The learning rate as a float, or None when no transformation holds one (an optimiser
        built with a float or a bare schedule; use :class:`LearningRate` for the latter).

    Example:
        >>> opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.25)
        >>> learning_rate_of(opt.init({"w": jnp.ones(3)}))   # float32 in the state: 0.25 is exact
        0.25
        >>> learning_rate_of(optax.adam(0.1).init({"w": jnp.ones(3)})) is None
        True
    """
    import optax.tree_utils as otu

    found = [
        (path, value)
        for path, value in otu.tree_get_all_with_path(opt_state, "learning_rate")
        if _is_hyperparams_entry(path, value)
    ]
    if not found:
        return None
    value = np.asarray(jax.device_get(found[0][1]))
    return float(value.reshape(-1)[0])  # replicated copies (one per device) are all equal
