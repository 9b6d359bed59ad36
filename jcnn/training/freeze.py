"""Frozen parameters: an optimiser that leaves the params matched by path patterns fixed."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch
from typing import Any

import jax
import optax

from jcnn.layers import paths


def freeze(
    optimizer: optax.GradientTransformation, params: Any, frozen: Sequence[str]
) -> optax.GradientTransformation:
    """``optimizer`` for every parameter except those whose path matches a pattern in ``frozen``.

    Paths join dict keys with ``/``, e.g. ``"features/Conv_0/kernel"``; patterns are fnmatch
    globs, and a pattern also matches everything below it (``"features"`` freezes the whole
    sub-network named ``features``). Frozen leaves get zero updates (``optax.set_to_zero``) and
    no optimiser state. Built on ``optax.multi_transform``.

    Raises:
        TypeError: ``frozen`` is a string (a sequence of patterns is expected).
        ValueError: a pattern that matches no parameter path and no layer without params (a
            typo would freeze nothing).
    """
    _check_patterns(frozen)
    leaves = [path for path, _ in paths.leaf_paths(params)]

    # A layer without params (Relu_0: {}) is a name a pattern may hold too (a whole body).
    def no_params(v: Any) -> bool:
        return isinstance(v, dict) and not v

    empty = jax.tree_util.tree_flatten_with_path(params, is_leaf=no_params)[0]
    names = leaves + [param_path(p) for p, v in empty if no_params(v)]
    unmatched = [pat for pat in frozen if not any(_matches(p, pat) for p in names)]
    if unmatched:
        more = f", ... ({len(leaves)} in all)" if len(leaves) > 12 else ""
        shown = ", ".join(leaves[:12]) + more
        raise ValueError(
            f"freeze: {unmatched} match no parameter path, so they would freeze nothing; paths "
            f"are {shown} (patterns are fnmatch globs; a pattern also matches everything below "
            "it, e.g. 'features' freezes features/...)"
        )
    labels = param_labels(params, frozen)
    return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def _check_patterns(frozen: Sequence[str]) -> None:
    if isinstance(frozen, str):
        raise TypeError(
            f"frozen must be a sequence of path patterns, got the string {frozen!r} (which "
            f"would be read letter by letter): use [{frozen!r}]"
        )


def _matches(path: str, pattern: str) -> bool:
    """Whether ``pattern`` matches the parameter ``path`` or a folder above it."""
    return fnmatch(path, pattern) or fnmatch(path, pattern.rstrip("/") + "/*")


#: ``"a/b/kernel"`` from a ``jax.tree_util`` key path: :func:`jcnn.layers.paths.key_path`, the
#: one way jcnn writes a parameter's address (kept under this name for the train side).
param_path = paths.key_path


def param_labels(params: Any, frozen: Sequence[str]) -> Any:
    """``"frozen"`` or ``"train"`` per leaf, by path pattern (see :func:`freeze`)."""

    _check_patterns(frozen)

    def label(path, _):
        p = param_path(path)
        return "frozen" if any(_matches(p, pat) for pat in frozen) else "train"

    return jax.tree_util.tree_map_with_path(label, params)
