"""jcnn.compile_cache: a second process loads what the first compiled; the env var semantics.

Cache hits are counted with ``jax.monitoring`` events (``/jax/compilation_cache/cache_hits``;
``.../cache_misses`` is recorded when a compiled program is written), never with timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jcnn import compile_cache

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh process: records the cache events, calls enable() (after ``PRE``), compiles a
# tiny program and prints what happened as JSON.
_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp
events = []
jax.monitoring.register_event_listener(lambda event, **kw: events.append(event))
from jcnn import compile_cache
{pre}
first = compile_cache.enable()
second = compile_cache.enable()
x = jnp.arange(8.0)
jax.block_until_ready(jax.jit(lambda v: jnp.tanh(v) * 3.0 + v.sum())(x))
print(json.dumps({{
    "enabled": None if first is None else str(first),
    "idempotent": first == second,
    "dir": jax.config.values["jax_compilation_cache_dir"],
    "min_time": jax.config.values["jax_persistent_cache_min_compile_time_secs"],
    "hits": events.count("/jax/compilation_cache/cache_hits"),
    "writes": events.count("/jax/compilation_cache/cache_misses"),
}}))
"""


def _run(env_extra: dict[str, str], pre: str = "") -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        # tests/conftest.py configures a cache for the test process: the children start bare.
        if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE", "JCNN_COMPILE"))
        and k != "XDG_CACHE_HOME"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(pre=pre)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_hits_the_cache(tmp_path):
    folder = tmp_path / "xla"
    cold = _run({compile_cache.ENV: str(folder)})
    assert cold["enabled"] == str(folder) == cold["dir"] and cold["idempotent"]
    assert cold["min_time"] == 0  # small programs are cached too
    assert cold["hits"] == 0 and cold["writes"] >= 1, cold
    assert any(folder.iterdir())
    warm = _run({compile_cache.ENV: str(folder)})
    assert warm["hits"] >= 1 and warm["writes"] == 0, warm


def test_enable_after_a_first_compile_still_caches(tmp_path):
    # A program compiled before enable() (the user's own jit before fit) does not stop the cache.
    pre = "jax.block_until_ready(jax.jit(lambda v: v * 2)(jnp.ones(3)))"
    folder = tmp_path / "xla"
    _run({compile_cache.ENV: str(folder)}, pre=pre)
    warm = _run({compile_cache.ENV: str(folder)}, pre=pre)
    assert warm["hits"] >= 1 and warm["writes"] == 0, warm


@pytest.mark.parametrize("off", ["0", "off", "false", "no"])
def test_env_zero_turns_it_off(off):
    assert compile_cache.resolve(None, env={compile_cache.ENV: off}) is None
    assert compile_cache.resolve("/explicit", env={compile_cache.ENV: off}) is None


def test_env_zero_in_a_process(tmp_path):
    got = _run({compile_cache.ENV: "0", "XDG_CACHE_HOME": str(tmp_path)})
    assert got["enabled"] is None and got["dir"] is None and got["hits"] == got["writes"] == 0
    assert not (tmp_path / "jcnn").exists()


def test_default_folder_and_override(tmp_path):
    assert compile_cache.resolve(None, env={"XDG_CACHE_HOME": "/c"}) == Path("/c/jcnn/xla")
    home = compile_cache.resolve(None, env={})
    assert home == Path.home() / ".cache" / "jcnn" / "xla"
    env = {"XDG_CACHE_HOME": "/c", compile_cache.ENV: "/mine"}
    assert compile_cache.resolve(None, env=env) == Path("/mine")
    assert compile_cache.resolve("/arg", env=env) == Path("/arg")  # an explicit path wins
    got = _run({"XDG_CACHE_HOME": str(tmp_path)})  # no JCNN_COMPILE_CACHE: the user cache
    assert got["enabled"] == got["dir"] == str(tmp_path / "jcnn" / "xla")
    assert got["writes"] >= 1


def test_user_configured_dir_is_respected(tmp_path):
    mine, theirs = tmp_path / "jcnn", tmp_path / "user"
    # $JAX_COMPILATION_CACHE_DIR: kept, with JAX's own thresholds.
    got = _run({compile_cache.ENV: str(mine), "JAX_COMPILATION_CACHE_DIR": str(theirs)})
    assert got["enabled"] == got["dir"] == str(theirs) and got["min_time"] == 1.0
    # jax.config.update before enable(): kept too, even with JCNN_COMPILE_CACHE=0.
    pre = f"jax.config.update('jax_compilation_cache_dir', {str(theirs)!r})"
    got = _run({compile_cache.ENV: "0"}, pre=pre)
    assert got["enabled"] == got["dir"] == str(theirs)
    assert not mine.exists()


def test_in_process_keeps_the_test_cache():
    # tests/conftest.py configured a folder: enable() returns it and changes nothing.
    before = jax.config.values["jax_compilation_cache_dir"]
    assert before
    assert compile_cache.enable() == Path(before) == compile_cache.enable()
    assert jax.config.values["jax_compilation_cache_dir"] == before


def test_fit_turns_the_cache_on(tmp_path):
    script = (
        "import json, jax, numpy as np, jcnn\n"
        "from jcnn import layers as L\n"
        "rng = np.random.default_rng(0)\n"
        "x, y = rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 2, 32)\n"
        "jcnn.fit(L.serial(L.Dense(2)), (x, y), epochs=1, batch_size=16, progress=False)\n"
        "print(json.dumps(jax.config.values['jax_compilation_cache_dir']))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env[compile_cache.ENV] = str(tmp_path / "xla")
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == str(tmp_path / "xla")
    assert any((tmp_path / "xla").iterdir())
