"""Checkpoints of a whole run with orbax-checkpoint: atomic, last-N kept, verified, no pickle.

What is saved is ``{"train_state": TrainState, "meta": {...}, "checksums": uint32 array}``:
``meta`` holds the data position (epoch, step within the epoch), so a resumed run continues with
the same batches; ``checksums`` holds a CRC-32 of every train-state leaf, because orbax checks
its index files but not the array bytes, and a flipped bit there would otherwise load silently.
Restores go into the structure of a freshly initialised ``TrainState`` (``target``): a
checkpoint of another architecture, or a damaged one, raises :class:`CheckpointError` saying
what differs.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into the requested structure."""


def _path(path: Any) -> str:
    """``"params/Conv_0/kernel"`` from a ``jax.tree_util`` key path."""
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def _describe(tree: Any) -> dict[str, tuple]:
    """``{"params/Conv_0/kernel": (shape, dtype), ...}`` for saved metadata or live arrays."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        _path(p): (
            tuple(getattr(v, "shape", np.shape(v))),
            str(np.dtype(getattr(v, "dtype", None) or np.asarray(v).dtype)),
        )
        for p, v in flat
    }


def _checksums(tree: Any) -> np.ndarray | None:
    """CRC-32 of each leaf's bytes, in tree order; None when arrays span several processes."""
    leaves = jax.tree_util.tree_leaves(tree)
    if any(not getattr(leaf, "is_fully_addressable", True) for leaf in leaves):
        return None
    return np.asarray(
        [zlib.crc32(np.ascontiguousarray(jax.device_get(leaf)).tobytes()) for leaf in leaves],
        dtype=np.uint32,
    )


class Checkpointer:
    """Saves and restores train states under ``directory/<step>``, keeping the newest ``keep``.

    Writes are atomic (orbax writes to a temporary folder and renames it when complete), so a
    run killed mid-save leaves the previous checkpoint intact. In multi-process runs every
    process calls ``save``/``restore``; orbax coordinates the writes.

    Example:
        >>> import tempfile
        >>> from jcnn.train import create_train_state
        >>> ts = create_train_state(models.cnn(), (28, 28, 1), optax.adam(1e-3))
        >>> ckpt = Checkpointer(tempfile.mkdtemp() + "/ckpt", keep=3)
        >>> ckpt.save(int(ts.step), ts, meta={"epoch": 1, "index": 0})
        >>> restored, meta = ckpt.restore(ts)   # ts is the template: tree and shapes
        >>> int(meta["epoch"]), ckpt.latest_step()
        (1, 0)
        >>> ckpt.close()
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep: int = 3) -> None:
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def save(self, step: int, train_state: Any, *, meta: dict[str, Any] | None = None) -> None:
        """Saves ``train_state`` (and ``meta``, a dict of ints/arrays) as checkpoint ``step``."""
        item = {
            "train_state": train_state,
            "meta": {k: np.asarray(v) for k, v in (meta or {}).items()},
        }
        sums = _checksums(train_state)
        if sums is not None:
            item["checksums"] = sums
        self.manager.save(step, args=ocp.args.StandardSave(item), force=True)
        self.manager.wait_until_finished()

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the kept checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def _saved_tree(self, step: int) -> dict[str, Any]:
        try:
            saved = self.manager.item_metadata(step)
        except Exception as err:  # orbax raises several types for damaged folders
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} is unreadable: {err}"
            ) from err
        tree = getattr(saved, "tree", saved)
        if not isinstance(tree, dict) or "train_state" not in tree:
            raise CheckpointError(f"checkpoint {step} in {self.directory} is not a jcnn checkpoint")
        return tree

    def restore(self, target: Any, *, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores checkpoint ``step`` (default: latest) into the structure of ``target``.

        Args:
            target: a train state of the right architecture (e.g. freshly initialised); only
                its structure, shapes and dtypes are used.
            step: which checkpoint; the latest by default.

        Returns:
            ``(train_state, meta)``: the state (same type as ``target``) and the saved meta dict.

        Raises:
            CheckpointError: no checkpoint, a damaged/truncated one (index or array bytes), or
                one whose arrays do not match ``target`` (another architecture); the message
                lists the differences.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        saved = self._saved_tree(step)
        want, got = _describe(target), _describe(saved["train_state"])
        if want != got:
            missing = sorted(set(want) - set(got))[:5]
            extra = sorted(set(got) - set(want))[:5]
            differ = [
                f"{k}: saved {got[k]} vs expected {want[k]}"
                for k in want
                if k in got and got[k] != want[k]
            ]
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} does not match the target (another "
                f"architecture?): shape/dtype mismatches {differ[:5]}, missing {missing}, "
                f"unexpected {extra}"
            )
        template: dict[str, Any] = {
            "train_state": jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target),
            "meta": jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, saved.get("meta", {})),
        }
        if "checksums" in saved:
            template["checksums"] = ocp.utils.to_shape_dtype_struct(saved["checksums"])
        try:
            restored = self.manager.restore(step, args=ocp.args.StandardRestore(template))
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} is damaged or truncated: "
                f"{type(err).__name__}: {err}"
            ) from err
        state = restored["train_state"]
        if "checksums" in restored:
            sums = _checksums(state)
            if sums is not None and not np.array_equal(sums, np.asarray(restored["checksums"])):
                paths = [_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
                bad = [
                    p for p, a, b in zip(paths, sums, np.asarray(restored["checksums"])) if a != b
                ]
                raise CheckpointError(
                    f"checkpoint {step} in {self.directory} is corrupted: the bytes of {bad[:5]} "
                    "do not match the checksums written with them"
                )
        meta = {
            k: np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v)
            for k, v in restored.get("meta", {}).items()
        }
        if hasattr(target, "_fields") and not isinstance(state, type(target)):
            fields = target._fields
            state = type(target)(*(state[f] for f in fields) if isinstance(state, dict) else state)
        return state, meta

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self.manager.close()
