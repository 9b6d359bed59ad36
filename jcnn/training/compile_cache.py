"""JAX's persistent compilation cache, on by default: the first call is fast on every rerun.

XLA compiles every jitted program at its first call (seconds for a ResNet train step). With the
persistent cache on, the compiled executable is written to disk and a later *process* that
compiles the same program (same code, shapes, dtypes, JAX version and device) loads it instead.
:func:`jcnn.fit`, the experiments and the bench call :func:`enable` when they start.

The folder: ``$JCNN_COMPILE_CACHE`` when set (``0``, ``off``, ``false`` or ``no`` turn the cache
off), else ``$XDG_CACHE_HOME/jcnn/xla`` (``~/.cache/jcnn/xla`` when ``XDG_CACHE_HOME`` is not
set). A cache folder the user already configured (``jax.config.update(
"jax_compilation_cache_dir", ...)`` or ``$JAX_COMPILATION_CACHE_DIR``) is kept as it is, with its
thresholds. When jcnn sets the folder it also caches every program, however small or quick to
compile (``jax_persistent_cache_min_compile_time_secs = 0``, ``..._min_entry_size_bytes = 0``);
JAX's defaults skip programs that compile in under a second. The folder grows without bound:
delete it (or :func:`default_dir`) to reclaim the space.

Example (a temporary folder; the user's real cache is not touched):
    >>> import tempfile
    >>> from jcnn import compile_cache
    >>> folder = Path(tempfile.mkdtemp()) / "xla"
    >>> compile_cache.resolve(folder, env={})  # where enable(folder) would put the cache
    PosixPath('...xla')
    >>> compile_cache.resolve(None, env={"JCNN_COMPILE_CACHE": "0"}) is None  # turned off
    True
    >>> compile_cache.resolve(None, env={"XDG_CACHE_HOME": "/c"})
    PosixPath('/c/jcnn/xla')
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

import jax

__all__ = ["ENV", "default_dir", "enable", "resolve"]

ENV = "JCNN_COMPILE_CACHE"
"""The environment variable: a folder for the cache, or ``0`` to turn it off."""

_OFF = frozenset({"0", "off", "false", "no"})
_lock = threading.Lock()


def default_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/jcnn/xla``, or ``~/.cache/jcnn/xla`` when ``XDG_CACHE_HOME`` is unset."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "jcnn" / "xla"


def resolve(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path | None:
    """The folder :func:`enable` would use, or None when ``$JCNN_COMPILE_CACHE`` turns it off.

    ``JCNN_COMPILE_CACHE=0`` (or ``off``/``false``/``no``) wins over everything, ``path`` then
    ``$JCNN_COMPILE_CACHE`` then :func:`default_dir`. Ignores what JAX is configured with.
    """
    env = os.environ if env is None else env
    value = env.get(ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if path is not None:
        return Path(path).expanduser()
    if value:
        return Path(value).expanduser()
    return default_dir(env)


def enable(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Turns JAX's persistent compilation cache on; returns the folder in use, or None if off.

    Idempotent and cheap: call it wherever a program starts. When a cache folder is already
    configured (by the user, ``$JAX_COMPILATION_CACHE_DIR`` or an earlier call) it is returned
    unchanged and nothing is set. Otherwise the folder is :func:`resolve`'s (``path``, else
    ``$JCNN_COMPILE_CACHE``, else :func:`default_dir`), created if needed, and the thresholds are
    lowered so every program is cached. ``JCNN_COMPILE_CACHE=0`` turns it off: nothing is set
    and None is returned (a folder the user configured is still returned). A folder that cannot
    be created leaves the cache off (None), never an error.
    """
    with _lock:
        current = jax.config.values.get("jax_compilation_cache_dir")
        if current:
            return Path(current)
        folder = resolve(path)
        if folder is None:
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        jax.config.update("jax_compilation_cache_dir", str(folder))
        return folder
