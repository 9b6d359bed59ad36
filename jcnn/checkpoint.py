"""Checkpoints of a whole run with orbax-checkpoint: atomic, last-N kept, nothing unpickled.

What is saved is a dict ``{"train_state": TrainState, "meta": {...}}`` of arrays; ``meta`` holds
the data position (epoch, step within the epoch) and the data-shuffling key, so a resumed run
continues with the same batches. Restores go into the structure of a freshly initialised
``TrainState`` (``target``): a checkpoint of another architecture, or a damaged one, raises
:class:`CheckpointError` saying what differs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into the requested structure."""


def _path(path: Any) -> str:
    names = (getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path)
    return "/".join(str(n) for n in names)


def _describe(tree: Any) -> dict[str, tuple]:
    """``{"train_state/params/Conv_0/kernel": shape, ...}`` for saved metadata or live arrays."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path(p): tuple(getattr(v, "shape", np.shape(v))) for p, v in flat}


class Checkpointer:
    """Saves and restores train states under ``directory/<step>``, keeping the newest ``keep``.

    Writes are atomic (orbax writes to a temporary folder and renames it when complete), so a
    run killed mid-save leaves the previous checkpoint intact.

    Example:
        >>> ckpt = Checkpointer("runs/mnist/ckpt", keep=3)
        >>> ckpt.save(int(ts.step), ts, meta={"epoch": 1, "index": 0})
        >>> ts, meta = ckpt.restore(ts_template)
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep: int = 3) -> None:
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, train_state: Any, *, meta: dict[str, Any] | None = None) -> None:
        """Saves ``train_state`` (and ``meta``, a dict of ints/arrays) as checkpoint ``step``."""
        item = {"train_state": train_state, "meta": {k: np.asarray(v) for k, v in (meta or {}).items()}}
        self.manager.save(step, args=ocp.args.StandardSave(item), force=True)
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the kept checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def restore(
        self, target: Any, *, meta: dict[str, Any] | None = None, step: int | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint ``step`` (default: latest) into the structure of ``target``.

        Args:
            target: a train state of the right architecture (e.g. freshly initialised); only
                its structure, shapes and dtypes are used.
            meta: a dict with the same keys as the one saved (values are examples).
            step: which checkpoint; the latest by default.

        Raises:
            CheckpointError: no checkpoint, a damaged/truncated one, or one whose arrays do not
                match ``target`` (another architecture); the message lists the differences.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        template = {"train_state": target, "meta": {k: np.asarray(v) for k, v in (meta or {}).items()}}
        try:
            saved = self.manager.item_metadata(step)
        except Exception as err:  # orbax raises several types for damaged folders
            raise CheckpointError(f"checkpoint {step} in {self.directory} is unreadable: {err}") from err
        saved_tree = getattr(saved, "tree", saved)
        if saved_tree is not None:
            want, got = _describe(template), _describe(saved_tree)
            if want != got:
                missing = sorted(set(want) - set(got))[:5]
                extra = sorted(set(got) - set(want))[:5]
                shapes = [f"{k}: saved {got[k]} vs expected {want[k]}" for k in want if k in got and got[k] != want[k]][:5]
                raise CheckpointError(
                    f"checkpoint {step} in {self.directory} is from another architecture: "
                    f"missing {missing}, unexpected {extra}, shape mismatches {shapes}"
                )
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        try:
            restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} is damaged or truncated: "
                f"{type(err).__name__}: {err}"
            ) from err
        meta_out = {k: np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v) for k, v in restored["meta"].items()}
        return type(target)(*restored["train_state"]) if isinstance(target, tuple) else restored["train_state"], meta_out

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self.manager.close()
