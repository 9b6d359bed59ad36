"""Privacy accounting of DP-SGD runs, by Google's ``dp-accounting`` (never a formula of ours).

Public through :mod:`jcnn.privacy`: :func:`epsilon`, :func:`noise_multiplier_for`,
:func:`run_epsilon` (and ``DPSGD.epsilon``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any

from jcnn.training.state import TrainState

#: The accountants of :func:`epsilon`: Renyi DP (Mironov 2017) and privacy loss distributions.
ACCOUNTANTS = ("rdp", "pld")


def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as err:  # pragma: no cover - the dependency is declared
        raise ImportError(
            "jcnn.privacy accounting needs Google's dp-accounting: pip install dp-accounting"
        ) from err
    return dp_accounting


@contextlib.contextmanager
def _quiet_accountant() -> Iterator[None]:
    """Silences dp-accounting's warnings that an RDP order did not converge: it leaves such
    orders out of the minimum over orders, so epsilon stays a valid (upper) bound."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _accountant(dpa: Any, accountant: str) -> Any:
    if accountant == "rdp":
        return dpa.rdp.RdpAccountant()
    if accountant == "pld":
        return dpa.pld.PLDAccountant()
    raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def _dpsgd_event(dpa: Any, steps: int, sampling_rate: float, noise_multiplier: float) -> Any:
    """``steps`` compositions of the Poisson-subsampled Gaussian mechanism."""
    gaussian = dpa.GaussianDpEvent(noise_multiplier)
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(sampling_rate, gaussian), steps)


def _check_accounting(where: str, steps: Any, sampling_rate: float, delta: float) -> int:
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 0:
        raise ValueError(f"{where}: steps must be an int >= 0, got {steps!r}")
    if not 0 < sampling_rate <= 1:
        raise ValueError(
            f"{where}: sampling_rate (batch_size / num_examples) must be in (0, 1], got "
            f"{sampling_rate!r}"
        )
    if not 0 < delta < 1:
        raise ValueError(f"{where}: delta must be in (0, 1), got {delta!r}")
    return int(steps)


def epsilon(
    steps: int,
    sampling_rate: float,
    noise_multiplier: float,
    delta: float,
    *,
    accountant: str = "rdp",
) -> float:
    """The epsilon of ``steps`` DP-SGD steps at ``delta``, from Google's ``dp-accounting``.

    The mechanism is the Poisson-subsampled Gaussian (each example in a step's batch with
    probability ``sampling_rate``, noise ``noise_multiplier`` times the clipping norm),
    composed ``steps`` times, under add-or-remove-one adjacency: the accounting of TF Privacy's
    ``compute_dp_sgd_privacy`` and of Opacus.

    Args:
        steps: optimiser steps taken.
        sampling_rate: ``q = batch_size / num_examples``.
        noise_multiplier: sigma.
        delta: the target delta (below ``1 / num_examples``, by the usual rule).
        accountant: ``"rdp"`` (Renyi DP, Mironov 2017; the classic) or ``"pld"`` (privacy loss
            distributions, Koskela et al. / Doroshenko et al. 2022; tighter).

    Returns:
        epsilon (``inf`` for ``noise_multiplier=0``; 0 for 0 steps).

    Example:
        >>> round(epsilon(6000, 150 / 60000, 1.3, 1e-5), 4)   # TF Privacy's reference: 0.7242
        0.7242
    """
    steps = _check_accounting("epsilon", steps, sampling_rate, delta)
    if noise_multiplier < 0:
        raise ValueError(f"epsilon: noise_multiplier must be >= 0, got {noise_multiplier!r}")
    dpa = _dp_accounting()
    acc = _accountant(dpa, accountant)
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    with _quiet_accountant():
        acc.compose(_dpsgd_event(dpa, steps, sampling_rate, noise_multiplier))
        return float(acc.get_epsilon(delta))


def noise_multiplier_for(
    target_epsilon: float,
    steps: int,
    sampling_rate: float,
    delta: float,
    *,
    accountant: str = "rdp",
) -> float:
    """The smallest noise multiplier whose :func:`epsilon` is at most ``target_epsilon``.

    Found by ``dp_accounting.calibrate_dp_mechanism`` (Brent's method on the accountant, to
    1e-6 in sigma).

    Example:
        >>> sigma = noise_multiplier_for(1.0, 6000, 150 / 60000, 1e-5)
        >>> round(sigma, 3), epsilon(6000, 150 / 60000, sigma, 1e-5) <= 1.0
        (1.098, True)
    """
    steps = _check_accounting("noise_multiplier_for", steps, sampling_rate, delta)
    if not target_epsilon > 0:
        raise ValueError(f"noise_multiplier_for: target_epsilon must be > 0, got {target_epsilon}")
    if steps == 0:
        return 0.0
    dpa = _dp_accounting()
    _accountant(dpa, accountant)  # checks the name
    with _quiet_accountant():
        sigma = dpa.calibrate_dp_mechanism(
            lambda: _accountant(dpa, accountant),
            lambda s: _dpsgd_event(dpa, steps, sampling_rate, s),
            target_epsilon,
            delta,
        )
    return float(sigma)


def run_epsilon(
    run: Any,
    *,
    num_examples: int,
    batch_size: int,
    noise_multiplier: float,
    delta: float,
    accountant: str = "rdp",
) -> float:
    """The epsilon of a finished private run, from its step count.

    ``run`` is a ``jcnn.FitResult`` or a :class:`jcnn.TrainState`; its ``step``
    counts every optimiser step (all of them, so a run resumed or continued from a non-private
    state is over-counted, never under-counted). Sampling rate ``batch_size / num_examples``,
    Poisson sampling assumed (see :class:`DPSGD`).
    """
    ts = getattr(run, "train_state", run)
    if not isinstance(ts, TrainState):
        raise TypeError(f"run_epsilon: expected a FitResult or a TrainState, got {type(run)}")
    if num_examples < 1 or batch_size < 1:
        raise ValueError(
            f"run_epsilon: num_examples and batch_size must be >= 1, got {num_examples}, "
            f"{batch_size}"
        )
    return epsilon(
        int(ts.step),
        batch_size / num_examples,
        noise_multiplier,
        delta,
        accountant=accountant,
    )
