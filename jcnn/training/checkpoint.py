"""Checkpoints of a whole run with orbax-checkpoint: atomic, last-N kept, verified, no pickle.

What is saved is ``{"train_state": TrainState, "meta": {...}, "meta_json": uint8 array,
"checksums": uint32 array, "meta_checksums": uint32 array}``: ``meta`` holds the array values
of the caller's meta dict and ``meta_json`` the UTF-8 JSON of its other values (ints, floats,
strings, bools, None, lists and dicts of them), e.g. the data position (epoch, step within the
epoch), so a resumed run continues with the same batches. ``checksums`` holds a CRC-32 of
every train-state leaf (and ``meta_checksums`` of the meta arrays and the JSON bytes), because
orbax checks its index files but not the array bytes, and a flipped bit there would otherwise
load silently. Restores go into the structure of a freshly initialised ``TrainState``
(``target``): a checkpoint of another architecture, or a damaged one, raises
:class:`CheckpointError` saying what differs.

Nothing is ever unpickled: orbax stores JSON index files and raw array bytes (tensorstore), the
meta values are JSON, so a file planted in the folder can at worst fail to load.

The folder is created by the first :meth:`Checkpointer.save`, never by reading: on a folder that
does not exist, :meth:`~Checkpointer.latest_step` is None and :meth:`~Checkpointer.restore`
raises :class:`CheckpointError`, and nothing is created on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jcnn.layers.arguments import int_at_least

# orbax.checkpoint (and tensorstore under it) is imported by the methods that use it, not here:
# ``import jcnn`` imports this module through ``jcnn.fit`` and would otherwise pay ~0.25 s for it.
# ``jcnn.checkpoint.ocp`` still names it (module ``__getattr__`` below).

__all__ = ["CheckpointError", "Checkpointer"]

_CLEANUP_POLLS = 40  # at most 2 s of 50 ms polls for a failed save's late writes
_TMP_MARK = ".orbax-checkpoint-tmp"  # orbax names a step folder being written <step><_TMP_MARK>*


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be restored into the requested structure, or a failed save."""


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


def _short(err: BaseException, limit: int = 300) -> str:
    """``"TypeName: message"``, cut to ``limit`` characters (orbax errors quote whole specs)."""
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_directory(directory: Path) -> None:
    """Raises NotADirectoryError when ``directory`` (or the nearest existing parent) is a file."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is" if candidate == directory else f"is inside {candidate}, which is"
                raise NotADirectoryError(
                    f"Checkpointer: directory {directory} {where} an existing file, not a "
                    "folder; pass the path of a folder (it is created at the first save)"
                )
            return


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray | jax.Array)


#: NumPy scalar types orbax cannot store: objects, strings, bytes, datetimes, timedeltas.
_NOT_STORABLE = (np.object_, np.str_, np.bytes_, np.datetime64, np.timedelta64)


def _check_array(where: str, value: Any) -> None:
    """TypeError unless ``value`` has a numeric or bool dtype (the dtypes orbax stores)."""
    dtype = getattr(value, "dtype", None)
    try:
        dt = np.dtype(dtype) if dtype is not None else None
    except TypeError:  # e.g. typed PRNG keys: key<fry>
        dt = None
    plain_void = dt is not None and dt.type is np.void and (dt.names or dt.name.startswith("void"))
    if dt is None or issubclass(dt.type, _NOT_STORABLE) or plain_void:
        raise TypeError(
            f"Checkpointer.save: {where} has dtype {dtype}, which cannot be checkpointed; only "
            "numeric and bool arrays can (strings belong in the JSON-able meta values, PRNG "
            "keys as jax.random.key_data(key))"
        )


def _check_train_state(tree: Any) -> None:
    """TypeError naming the first leaf of ``tree`` that is not a numeric/bool array or scalar."""
    for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        where = f"train-state leaf {_path(p) or '<root>'}"
        if not (_is_array(leaf) or isinstance(leaf, np.generic | int | float)):
            raise TypeError(
                f"Checkpointer.save: {where} is a {type(leaf).__name__}, not an array; a train "
                "state holds arrays only"
            )
        _check_array(where, leaf if hasattr(leaf, "dtype") else np.asarray(leaf))


def _jsonable(where: str, value: Any) -> Any:
    """``value`` as plain JSON types; TypeError naming ``where`` for anything else."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"Checkpointer.save: {where} has the key {k!r} ({type(k).__name__}); keys "
                    "must be strings (JSON would turn it into a string silently)"
                )
            out[k] = _jsonable(f"{where}[{k!r}]", v)
        return out
    if _is_array(value):
        raise TypeError(
            f"Checkpointer.save: {where} is an array inside a list or dict; arrays may only be "
            "top-level meta values (meta={'name': array})"
        )
    raise TypeError(
        f"Checkpointer.save: {where} is of type {type(value).__name__} ({value!r:.60}), which "
        "cannot be saved; meta values must be numeric/bool arrays or JSON-able: int, float, "
        "str, bool, None, and lists/dicts of them"
    )


def _split_meta(meta: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(arrays, json_values)`` of a meta dict, validated up front."""
    if meta is None:
        return {}, {}
    if not isinstance(meta, Mapping):
        raise TypeError(
            f"Checkpointer.save: meta must be a dict of str -> value, got {type(meta).__name__}"
        )
    arrays: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str):
            raise TypeError(
                f"Checkpointer.save: meta keys must be strings, got {key!r} ({type(key).__name__})"
            )
        if _is_array(value):
            _check_array(f"meta[{key!r}]", value)
            arrays[key] = np.asarray(value)
        else:
            values[key] = _jsonable(f"meta[{key!r}]", value)
    return arrays, values


class Checkpointer:
    """Saves and restores train states under ``directory/<step>``, keeping the newest ``keep``.

    Writes are atomic (orbax writes to a temporary folder and renames it when complete), so a
    run killed mid-save leaves the previous checkpoint intact; the temporary folder of such a
    save, or of a save that failed, is deleted (the next ``Checkpointer`` on the folder removes
    what a killed process left). In multi-process runs every process calls ``save``/``restore``;
    orbax coordinates the writes.

    Args:
        directory: the folder of the checkpoints; created by the first save (never by reading).
        keep: how many of the newest checkpoints to keep: a positive int (NumPy ints too), or
            None to keep every one.

    Raises:
        NotADirectoryError: ``directory`` (or a parent of it) is an existing file.
        ValueError, TypeError: ``keep`` is not a positive int or None.

    Example:
        >>> import tempfile
        >>> from jcnn.train import create_train_state
        >>> ts = create_train_state(models.cnn(), (28, 28, 1), optax.adam(1e-3))
        >>> ckpt = Checkpointer(tempfile.mkdtemp() + "/ckpt", keep=3)
        >>> ckpt.save(int(ts.step), ts, meta={"epoch": 1, "index": 0, "note": "warm-up"})
        >>> restored, meta = ckpt.restore(ts)   # ts is the template: tree and shapes
        >>> meta["epoch"], meta["note"], ckpt.latest_step()
        (1, 'warm-up', 0)
        >>> ckpt.close()
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep: int | None = 3) -> None:
        if keep is not None:
            keep = int_at_least(keep, "Checkpointer: keep", 1, hint="(or None to keep every one)")
        self.directory = Path(directory).absolute()
        _check_directory(self.directory)
        import orbax.checkpoint as ocp

        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=False,
            create=False,  # reading a folder must not create it; save creates it
            cleanup_tmp_directories=True,  # what a run killed mid-save left behind
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def save(self, step: int, train_state: Any, *, meta: Mapping[str, Any] | None = None) -> None:
        """Saves ``train_state`` (and ``meta``) as checkpoint ``step``.

        Args:
            step: a non-negative int (NumPy ints too) greater than every kept step.
            train_state: a pytree of numeric/bool arrays (e.g. a ``TrainState``).
            meta: ``{str: value}``; values are numeric/bool arrays (restored as NumPy arrays, or
                Python scalars when 0-d) or JSON-able (int, float, str, bool, None, lists and
                dicts with str keys of them; restored as the same values, tuples as lists).

        Raises:
            TypeError, ValueError: a bad ``step``, a ``step`` not after the latest checkpoint,
                a meta value that cannot be saved, or a train-state leaf that is not a numeric
                array: checked before anything is written.
            CheckpointError: the write failed (disk full, permissions...): its partial folder
                is deleted, the folder holds only the complete checkpoints.
        """
        step = int_at_least(step, "Checkpointer.save: step", 0)
        latest = self.latest_step()
        if latest is not None and step <= latest:
            raise ValueError(
                f"Checkpointer.save: step {step} is not after the latest checkpoint {latest} in "
                f"{self.directory} (kept steps {self.all_steps()}); save under a step > {latest},"
                " or use another folder for a new run"
            )
        _check_train_state(train_state)
        arrays, values = _split_meta(meta)
        meta_json = np.frombuffer(json.dumps(values).encode(), dtype=np.uint8)
        item: dict[str, Any] = {"train_state": train_state, "meta": arrays, "meta_json": meta_json}
        sums = _checksums(train_state)
        if sums is not None:
            item["checksums"] = sums
        item["meta_checksums"] = _checksums({"meta": arrays, "meta_json": meta_json})
        import orbax.checkpoint as ocp

        try:
            self.manager.save(step, args=ocp.args.StandardSave(item), force=True)
            self.manager.wait_until_finished()
        except Exception as err:
            self._remove_partial(step)
            raise CheckpointError(
                f"saving checkpoint {step} into {self.directory} failed ({_short(err)}); its "
                f"partial folder was deleted, the complete checkpoints {self.all_steps()} are "
                "intact"
            ) from err

    def _remove_partial(self, step: int) -> None:
        """Deletes the temporary folder(s) a failed save of ``step`` left (primary process).

        When one write of a save fails, orbax's other writes of it may still be running in
        their threads and create the temporary folder after a first cleanup; so wait for the
        manager, then remove until the folder has stayed absent for a few polls.
        """
        if jax.process_index() != 0 or not self.directory.is_dir():
            return
        try:
            self.manager.wait_until_finished()
        except Exception:  # noqa: BLE001 - the save already failed; its error is reported
            pass
        quiet = 0
        for _ in range(_CLEANUP_POLLS):
            partial = [
                e for e in self.directory.iterdir() if e.name.startswith(f"{step}{_TMP_MARK}")
            ]
            for entry in partial:
                shutil.rmtree(entry, ignore_errors=True)
            quiet = 0 if partial else quiet + 1
            if quiet >= 3:
                break
            time.sleep(0.05)
        self.manager.reload()

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None (also when the folder does not exist)."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the kept checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def _saved_tree(self, step: int) -> dict[str, Any]:
        try:
            saved = self.manager.item_metadata(step)
        except Exception as err:  # orbax raises several types for damaged folders
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} is unreadable: {_short(err)}"
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
            step: which checkpoint (one of :meth:`all_steps`); the latest by default.

        Returns:
            ``(train_state, meta)``: the state (same type as ``target``) and the saved meta dict.

        Raises:
            CheckpointError: no checkpoint (or no such step, or no such folder), a
                damaged/truncated one (index or array bytes), or one whose arrays do not match
                ``target`` (another architecture); the message lists the differences.
        """
        if step is not None:
            step = int_at_least(step, "Checkpointer.restore: step", 0)
        if not self.directory.is_dir():
            raise CheckpointError(
                f"no checkpoint in {self.directory}: the folder does not exist (check the path;"
                " a Checkpointer creates it at its first save)"
            )
        kept = self.all_steps()
        if step is None:
            step = self.latest_step()
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        if step not in kept:
            raise CheckpointError(
                f"no checkpoint {step} in {self.directory}; the kept steps are {kept}"
            )
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

        import orbax.checkpoint as ocp

        def struct(tree: Any) -> Any:
            return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)

        template: dict[str, Any] = {
            "train_state": struct(target),
            **{k: struct(saved[k]) for k in saved if k != "train_state"},
        }
        try:
            restored = self.manager.restore(step, args=ocp.args.StandardRestore(template))
        except Exception as err:
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} is damaged or truncated: {_short(err)}"
            ) from err
        state = restored["train_state"]
        arrays = restored.get("meta", {})
        meta_json = restored.get("meta_json")
        self._verify(step, "checksums", restored, state)
        if meta_json is not None:
            self._verify(step, "meta_checksums", restored, {"meta": arrays, "meta_json": meta_json})
        meta = {
            k: np.asarray(v).item() if np.ndim(v) == 0 else np.asarray(v) for k, v in arrays.items()
        }
        if meta_json is not None:
            try:
                meta.update(json.loads(np.asarray(meta_json, dtype=np.uint8).tobytes()))
            except ValueError as err:
                raise CheckpointError(
                    f"checkpoint {step} in {self.directory} is corrupted: its meta JSON does "
                    f"not parse ({err})"
                ) from err
        if hasattr(target, "_fields") and not isinstance(state, type(target)):
            fields = target._fields
            state = type(target)(*(state[f] for f in fields) if isinstance(state, dict) else state)
        return state, meta

    def _verify(self, step: int, key: str, restored: dict[str, Any], tree: Any) -> None:
        """Raises CheckpointError when ``tree``'s CRC-32s differ from ``restored[key]``."""
        if key not in restored:
            return
        sums, saved = _checksums(tree), np.asarray(restored[key])
        if sums is None or np.array_equal(sums, saved):
            return
        paths = [_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
        bad = [p for p, a, b in zip(paths, sums, saved) if a != b] or paths
        raise CheckpointError(
            f"checkpoint {step} in {self.directory} is corrupted: the bytes of {bad[:5]} "
            "do not match the checksums written with them"
        )

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self.manager.close()


def __getattr__(name: str) -> Any:
    """``jcnn.checkpoint.ocp``: ``orbax.checkpoint``, imported on first use."""
    if name == "ocp":
        import orbax.checkpoint as ocp

        return ocp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
