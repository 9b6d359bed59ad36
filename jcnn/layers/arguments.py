"""Validators of user-given arguments: each checks one value and returns it normalised.

Every validator takes the value and ``name``, the argument as the message names it: a layer's
hyper-parameter as ``"Conv groups"``, an entry point's argument as ``"fit: batch_size"``. Its
error says what was expected and what arrived, so the first thing a user reads names the
argument and the fix. NumPy integers and reals count as ints and reals; bools never do (``True``
is an ``int`` to Python, but nobody means a count or a rate by it).

The error types follow the conventions of the callers, which tests and users rely on:

* :func:`as_int`, :func:`positive_int`: a layer's hyper-parameters, ``ShapeError`` (a
  ``ValueError``) for any mistake.
* :func:`int_at_least`, :func:`real_number`, :func:`as_path`: ``TypeError`` for a value of the
  wrong type, ``ValueError`` for one out of range.
* :func:`count`, :func:`probability`: ``ValueError`` for any mistake.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import TypeIs

import numpy as np


def is_int(value: object) -> TypeIs[int]:
    """True for Python and NumPy integers, not for bools.

    Example:
        >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
        (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> TypeIs[float]:
    """True for Python and NumPy ints and floats (``inf`` and ``nan`` too), not for bools.

    Example:
        >>> is_real(0.5), is_real(np.float32(0.5)), is_real(2), is_real(False), is_real("0.5")
        (True, True, True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _type_name(value: Any) -> str:
    return type(value).__name__


def _shape_error(message: str) -> ValueError:
    # ShapeError is defined in shapes.py, which imports this module's validators: imported when
    # an error is raised, so the two modules import each other without a cycle at load time.
    from jcnn.layers.shapes import ShapeError

    return ShapeError(message)


def as_int(value: Any, name: str) -> int:
    """``value`` as a Python int (NumPy integers accepted); the error names the argument.

    Args:
        value: the argument.
        name: the argument as the message names it, e.g. ``"Conv kernel_size"``.

    Raises:
        ShapeError: ``value`` is not an int (a float, a bool, a string...).

    Example:
        >>> as_int(np.int64(3), "kernel_size")
        3
        >>> as_int(3.0, "Conv kernel_size")
        Traceback (most recent call last):
        jcnn.layers.shapes.ShapeError: Conv kernel_size must be an int, got 3.0 (float)
    """
    if not is_int(value):
        raise _shape_error(f"{name} must be an int, got {value!r} ({_type_name(value)})")
    return int(value)


def positive_int(value: Any, name: str) -> int:
    """:func:`as_int` that also requires ``value >= 1`` (channels, features, groups, counts).

    Raises:
        ShapeError: ``value`` is not an int, or is below 1.

    Example:
        >>> positive_int(np.int32(8), "Conv out_channels")
        8
        >>> positive_int(0, "Conv groups")
        Traceback (most recent call last):
        jcnn.layers.shapes.ShapeError: Conv groups must be a positive int, got 0
    """
    value = as_int(value, name)
    if value < 1:
        raise _shape_error(f"{name} must be a positive int, got {value}")
    return value


def int_at_least(value: Any, name: str, minimum: int, *, hint: str = "") -> int:
    """``value`` as a Python int ``>= minimum``; TypeError for a non-int, ValueError below it.

    Args:
        value: the argument (Python or NumPy int; bools and floats are refused).
        name: the argument as the message names it, e.g. ``"Checkpointer.save: step"``.
        minimum: the least value accepted.
        hint: words added after the expectation, e.g. ``"(or None to keep every one)"``.

    Raises:
        TypeError: ``value`` is not an int: the message names its type.
        ValueError: ``value < minimum``.

    Example:
        >>> int_at_least(np.int64(2), "fsdp_spec: num_shards", 1)
        2
        >>> int_at_least(2.0, "EarlyStopping: patience", 0)
        Traceback (most recent call last):
        TypeError: EarlyStopping: patience must be an int, got float 2.0
        >>> int_at_least(0, "Checkpointer: keep", 1, hint="(or None to keep every one)")
        Traceback (most recent call last):
        ValueError: Checkpointer: keep must be an int >= 1 (or None to keep every one), got 0
    """
    hint = f" {hint}" if hint else ""
    if not is_int(value):
        raise TypeError(f"{name} must be an int{hint}, got {_type_name(value)} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{hint}, got {int(value)}")
    return int(value)


def count(
    value: Any,
    name: str,
    *,
    minimum: int | None = 1,
    maximum: int | None = None,
    optional: bool = False,
) -> Any:
    """``value`` as a Python int in ``minimum..maximum``; ValueError for anything else.

    The counts of the training entry points (batch sizes, epochs, periods); ``minimum=None``
    accepts any int (a seed).

    Args:
        value: the argument (Python or NumPy int; bools and floats are refused).
        name: the argument as the message names it, e.g. ``"fit: batch_size"``.
        minimum, maximum: the bounds, both included (None: unbounded).
        optional: None is accepted (and returned).

    Returns:
        ``int(value)``, or None for an optional None.

    Raises:
        ValueError: ``value`` is not an int, or outside the bounds.

    Example:
        >>> count(np.int32(32), "fit: batch_size"), count(None, "fit: log_every", optional=True)
        (32, None)
        >>> count(8.0, "fit: batch_size")
        Traceback (most recent call last):
        ValueError: fit: batch_size must be a positive int, got 8.0 (float)
        >>> count(5, "top_k_accuracy: k", maximum=3)
        Traceback (most recent call last):
        ValueError: top_k_accuracy: k must be an int in 1..3, got 5 (int)
    """
    if value is None and optional:
        return None
    low_ok = minimum is None or (is_int(value) and value >= minimum)
    high_ok = maximum is None or (is_int(value) and value <= maximum)
    if is_int(value) and low_ok and high_ok:
        return int(value)
    if minimum is not None and maximum is not None:
        expected = f"an int in {minimum}..{maximum}"
    elif maximum is not None:
        expected = f"an int <= {maximum}"
    elif minimum is None:
        expected = "an int"
    else:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    raise ValueError(
        f"{name} must be {expected}{' or None' if optional else ''}, got {value!r} "
        f"({_type_name(value)})"
    )


def _interval(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    """``" in [0, 1)"``, ``" >= 0"``, ``" < 1"`` or ``""``: the bounds as the messages say them."""
    if low is not None and high is not None:
        return f" in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    if low is not None:
        return f" {'>' if open_low else '>='} {low}"
    if high is not None:
        return f" {'<' if open_high else '<='} {high}"
    return ""


def real_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    finite: bool = False,
    hint: str = "",
    type_error: type[Exception] = TypeError,
) -> float:
    """``value`` as a Python float: a real number (not a bool), optionally finite and bounded.

    Args:
        value: the argument (Python or NumPy int or float).
        name: the argument as the message names it, e.g. ``"EarlyStopping: min_delta"``.
        low, high: the bounds (None: unbounded), included unless ``open_low`` / ``open_high``.
        finite: refuse ``inf`` and ``nan`` (with both bounds given they are refused anyway).
        hint: words added after the expectation, e.g. ``"(probability of dropping)"``.
        type_error: the error for a value that is not a real number; ``ValueError`` where an
            API has always raised it for every bad value.

    Raises:
        TypeError (or ``type_error``): ``value`` is not a real number.
        ValueError: ``value`` is not finite (``finite``) or outside the bounds.

    Example:
        >>> real_number(np.float32(0.5), "LayerScale init_value")
        0.5
        >>> real_number("0.1", "EarlyStopping: min_delta", low=0)
        Traceback (most recent call last):
        TypeError: EarlyStopping: min_delta must be a real number >= 0, got str '0.1'
        >>> real_number(0.0, "DPSGD: l2_clip", low=0, open_low=True, finite=True)
        Traceback (most recent call last):
        ValueError: DPSGD: l2_clip must be a finite number > 0, got 0.0
    """
    bounds = _interval(low, high, open_low, open_high)
    hint = f" {hint}" if hint else ""
    both = low is not None and high is not None
    if not is_real(value):
        expected = bounds[1:] if both else f"a real number{bounds}"
        raise type_error(f"{name} must be {expected}{hint}, got {_type_name(value)} {value!r}")
    number = float(value)
    in_bounds = not math.isnan(number)
    if low is not None:
        in_bounds = in_bounds and (number > low if open_low else number >= low)
    if high is not None:
        in_bounds = in_bounds and (number < high if open_high else number <= high)
    if not in_bounds or (finite and not math.isfinite(number)):
        expected = bounds[1:] if both else f"a {'finite ' if finite else ''}number{bounds}"
        raise ValueError(f"{name} must be {expected}{hint}, got {value}")
    return number


def probability(value: Any, name: str, *, include_one: bool = False, hint: str = "") -> float:
    """``value`` as a Python float in ``[0, 1)`` (``[0, 1]`` with ``include_one``).

    Args:
        value: the argument (Python or NumPy real; bools are refused).
        name: the argument as the message names it, e.g. ``"Dropout rate"``.
        include_one: accept 1 (e.g. a layer that may drop everything).
        hint: what the probability means, added after the interval.

    Raises:
        ValueError: ``value`` is not a real number, or outside the interval.

    Example:
        >>> probability(0.25, "Dropout rate")
        0.25
        >>> probability(1.0, "Dropout rate", hint="(probability of dropping)")
        Traceback (most recent call last):
        ValueError: Dropout rate must be in [0, 1) (probability of dropping), got 1.0
        >>> probability(True, "StochasticDepth p", include_one=True)
        Traceback (most recent call last):
        ValueError: StochasticDepth p must be in [0, 1], got bool True
    """
    return real_number(
        value, name, low=0, high=1, open_high=not include_one, hint=hint, type_error=ValueError
    )


def as_path(value: Any, name: str) -> Path:
    """``value`` (a ``str`` or ``os.PathLike``) as a :class:`pathlib.Path`.

    Args:
        value: the argument.
        name: the argument as the message names it, e.g. ``"MetricsLogger: path"``.

    Raises:
        TypeError: ``value`` is neither a string nor a path (the message shows at most 60
            characters of it).

    Example:
        >>> as_path("runs/exp1", "TensorBoard: logdir").as_posix()
        'runs/exp1'
        >>> as_path(3, "MetricsLogger: path")
        Traceback (most recent call last):
        TypeError: MetricsLogger: path must be a path (str or os.PathLike), got int 3
    """
    if not isinstance(value, str | os.PathLike):
        raise TypeError(
            f"{name} must be a path (str or os.PathLike), got {_type_name(value)} {value!r:.60}"
        )
    return Path(value)
