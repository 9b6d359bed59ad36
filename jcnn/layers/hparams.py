"""Hyper-parameters as values: an immutable, hashable mapping, and how a layer prints them."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping, Sequence
from typing import Any


def _freeze(key: str, value: Any) -> Any:
    """``value`` as a hashable, immutable hyper-parameter (lists become tuples)."""
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        value = tuple(_freeze(key, v) for v in value)
    elif isinstance(value, Mapping) and not isinstance(value, Hparams):
        value = Hparams(value)
    elif isinstance(value, set):
        value = frozenset(value)
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"hyper-parameter {key}={value!r} is not hashable; layers are immutable values, so "
            "give hyper-parameters as Python numbers, strings, tuples or functions (not arrays)"
        ) from None
    return value


class Hparams(Mapping[str, Any]):
    """An immutable, hashable mapping of normalised hyper-parameters, in the factory's order.

    Example:
        >>> hp = Hparams({"stride": [1, 2]})
        >>> hp["stride"], hash(hp) == hash(Hparams({"stride": (1, 2)}))
        ((1, 2), True)
    """

    __slots__ = ("_items",)
    _items: tuple[tuple[str, Any], ...]

    def __init__(self, items: Mapping[str, Any] | Sequence[tuple[str, Any]] = ()) -> None:
        pairs = dict(items).items()
        object.__setattr__(self, "_items", tuple((k, _freeze(k, v)) for k, v in pairs))

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self._items) == dict(other.items())

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"Hparams are immutable (tried to set {name!r})")

    def __repr__(self) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in self._items)


def _show(value: Any) -> str:
    """A short printable form of a hyper-parameter (functions by name)."""
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__.replace(".<locals>", "")
    if isinstance(value, enum.Enum):
        return str(value)
    return repr(value)


#: Hyper-parameter values ``repr`` leaves out as the usual defaults (a tuple of them too).
_USUAL = {
    "stride": 1,
    "dilation": 1,
    "groups": 1,
    "use_bias": True,
    "lowering": "auto",
    "count_include_pad": True,
    "output_padding": 0,
    "unbiased_running_var": False,
    "axis_name": "batch",
    "axis": -1,
    "padding": "VALID",
    "padding_mode": "zeros",
}


#: Hyper-parameters not printed: the layer's own functions (elementwise, custom), and the rank
#: (``ndim``), which the kernel size shows.
_FUNCTIONS = frozenset({"fn", "init", "apply", "output_shape", "ndim"})


def _usual(hparams: Mapping[str, Any], key: str, value: Any) -> bool:
    if value is None or key in _FUNCTIONS:
        return True
    if key == "stride" and value == hparams.get("window"):  # pools: stride defaults to window
        return True
    usual = _USUAL.get(key, ...)
    return value == usual or (isinstance(value, tuple) and all(v == usual for v in value))


def _visible(hparams: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in hparams.items() if not _usual(hparams, k, v))
