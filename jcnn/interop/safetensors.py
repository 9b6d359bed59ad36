"""jcnn params and state in safetensors files: :func:`save_safetensors`, :func:`load_safetensors`.

A file holds the trees' leaves keyed by their paths (``"params/layer1/0/conv1/kernel"``,
:mod:`jcnn.layers.paths`) in jcnn's layouts, and says ``format: jcnn`` in its metadata. Nothing in
a safetensors file executes on load. A torchvision-layout file is read with
:func:`jcnn.models.from_torchvision`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jcnn.layers import paths

__all__ = ["SAFETENSORS_FORMAT", "load_safetensors", "save_safetensors"]

#: ``save_safetensors`` marks its files so ``load_safetensors`` can tell them from a torch file.
SAFETENSORS_FORMAT = "jcnn"


def _flatten_tree(tree: Any, top: str) -> dict[str, Any]:
    """``{"params/layer1/Conv_0/kernel": leaf, ...}``: "/"-joined dict keys; empty dicts vanish."""
    out: dict[str, Any] = {}

    def walk(node, path):
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str) or "/" in key:
                    raise ValueError(
                        f"save_safetensors: key {key!r} under {path!r} must be a str without '/'"
                    )
                walk(value, paths.join(path, key))
        else:
            out[path] = node

    walk(tree, top)
    return out


def save_safetensors(path: Any, params: Any, state: Any) -> None:
    """Writes jcnn ``params`` and ``state`` to a safetensors file, atomically.

    Keys are the trees' paths joined by ``/`` under ``params/`` and ``state/``
    (``"params/layer1/0/conv1/kernel"``), in jcnn's layouts;
    the file's metadata says ``format: jcnn``. Nothing in a safetensors file executes on load.
    For a torchvision-layout file use :func:`jcnn.models.to_torchvision` and
    ``safetensors.numpy.save_file``.

    Raises:
        ValueError: a leaf that is not an array (a Python number, None) or a key with ``/``.
    """
    import os
    import pathlib
    import tempfile

    from safetensors.numpy import save_file

    flat = {**_flatten_tree(params, "params"), **_flatten_tree(state, "state")}
    arrays = {}
    for key, value in flat.items():
        if not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise ValueError(
                f"save_safetensors: {key} is a {type(value).__name__}, not an array; params and "
                "state hold arrays only"
            )
        arrays[key] = np.asarray(value, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    target = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata={"format": SAFETENSORS_FORMAT})
        os.replace(tmp, target)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def load_safetensors(path: Any, net: Any, input_shape: Sequence[int]) -> tuple[dict, dict]:
    """Reads :func:`save_safetensors`'s file for ``net``: ``(params, state)`` as jax arrays.

    Every key, shape and dtype is checked against ``net``'s init tree at ``input_shape`` (one
    ``jax.eval_shape``, no weights initialised) before anything is returned.

    Raises:
        ValueError: a file in torchvision's layout (use
            ``jcnn.models.from_torchvision(name, safetensors.numpy.load_file(path))``), or
            keys missing, left over, or of the wrong shape or dtype, each named with its path.
    """
    import jax
    from safetensors import safe_open

    from jcnn.layers.core import init_shapes

    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
        keys = list(f.keys())
        if meta.get("format") != SAFETENSORS_FORMAT and not all(
            k.startswith(("params/", "state/")) for k in keys
        ):
            raise ValueError(
                f"load_safetensors: {path} is not a jcnn file (metadata {meta}, keys like "
                f"{keys[:3]}); a torchvision-layout file loads with "
                "jcnn.models.from_torchvision(name, safetensors.numpy.load_file(path))"
            )
        _, p_shapes, s_shapes = init_shapes(net, tuple(input_shape))
        expected = {**_flatten_tree(p_shapes, "params"), **_flatten_tree(s_shapes, "state")}
        missing = [k for k in expected if k not in keys]
        extra = [k for k in keys if k not in expected]
        if missing or extra:
            raise ValueError(
                f"load_safetensors: {path} does not fit this net at input {tuple(input_shape)}: "
                f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}, "
                f"left over {extra[:6]}{' ...' if len(extra) > 6 else ''}"
            )
        flat = {}
        for key, want in expected.items():
            value = f.get_tensor(key)
            if value.shape != tuple(want.shape) or value.dtype != want.dtype:
                raise ValueError(
                    f"load_safetensors: {key} is {value.dtype}{list(value.shape)} in {path}, "
                    f"but the net needs {want.dtype}{list(want.shape)}"
                )
            flat[key] = jax.numpy.asarray(value)

    def rebuild(template: Any, top: str) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda keys, _: flat[paths.join(top, paths.key_path(keys))], template
        )

    return rebuild(p_shapes, "params"), rebuild(s_shapes, "state")
