"""Every ```python block of README.md and docs/*.md runs as written, from outside the repository.

Each block is one test (id ``README.md:29``, the line of its opening fence). Its text is written
unchanged (only the common indentation of a block nested in a list is removed, as Markdown does)
to ``block.py`` in pytest's ``tmp_path`` and run there in a fresh ``python`` process: the
interpreter running the tests (the repository's virtualenv, jcnn installed editable), with the
repository NOT on ``sys.path`` and NOT the working directory. So a block that reads a path
relative to the checkout, or names something it never imports, fails here as it would for a
reader who pastes it.

The result must not depend on this machine's data or on the network: ``$JCNN_DATA_DIR`` (and the
test suite's ``$JCNN_TEST_MNIST_DIR``) are unset, ``$XDG_CACHE_HOME`` points at an empty folder (so
``~/.cache/jcnn`` is not found), and the HTTP(S) proxies point at a closed local port, so a
download attempt fails at once, as offline. A block that needs data must therefore work with
what jcnn ships (e.g. an offline fallback).

A block that takes longer than :data:`TIMEOUT_S` fails with a message asking for a shorter one:
README examples are read and pasted, not benchmarks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

TIMEOUT_S = 150
"""Seconds a block may run (interpreter start, imports and compiles included) before it fails."""

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)")

# Environment variables whose value would let a block find data on this machine.
_DATA_VARS = ("JCNN_DATA_DIR", "JCNN_TEST_MNIST_DIR", "PYTHONPATH")
_CLOSED_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO).as_posix()}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` whose info string is ``python`` (or ``py``), in order.

    A block ends at a fence of the same character at least as long as the opening one
    (CommonMark); a block left open runs to the end of the file.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        info = m["info"].lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if (
                close
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not close["info"]
            ):
                break
            body.append(lines[i])
            i += 1
        i += 1  # past the closing fence
        if info in ("python", "py", "python3"):
            blocks.append(Block(path, start + 1, textwrap.dedent("\n".join(body)) + "\n"))
    return blocks


BLOCKS = [block for path in DOC_FILES for block in python_blocks(path)]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DATA_VARS}
    env["XDG_CACHE_HOME"] = str(tmp_path / "empty_cache")
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = _CLOSED_PROXY
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    try:  # matplotlib keeps its font cache under XDG_CACHE_HOME: reuse this one (no rebuild)
        import matplotlib

        env.setdefault("MPLCONFIGDIR", matplotlib.get_cachedir())
    except Exception:  # only a speed-up
        pass
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty)"


def _block_lines(block: Block, text: str) -> str:
    """``block.py", line N`` in a traceback, also as the Markdown file's line."""
    found = sorted({int(n) for n in re.findall(r'block\.py", line (\d+)', text)})
    return ", ".join(f"block line {n} = {block.path.name}:{block.line + n}" for n in found)


def test_the_docs_have_python_blocks():
    """The parser finds the README's blocks (a broken fence regex would pass every file)."""
    readme = [b for b in BLOCKS if b.path.name == "README.md"]
    assert len(readme) >= 2, (
        f"expected the README's python blocks, found {[b.where for b in BLOCKS]}"
    )
    assert all(b.code.strip() for b in BLOCKS), [b.where for b in BLOCKS if not b.code.strip()]


def test_the_parser_keeps_blocks_apart(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n```bash\necho no\n```\n\n- item\n\n  ```python\n  x = 1\n  ```\n"
        "````python\nprint('```')\n````\n~~~py\ny = 2\n~~~\n"
    )
    got = [(b.line, b.code) for b in python_blocks(doc)]
    assert got == [(8, "x = 1\n"), (11, "print('```')\n"), (14, "y = 2\n")]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_block_runs_as_written(block: Block, tmp_path: Path):
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=work,
            env=_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        pytest.fail(
            f"{block.where}: the python block ran longer than {TIMEOUT_S} s; make the example "
            f"shorter (fewer epochs or examples).\nstdout tail:\n{_tail(out)}",
            pytrace=False,
        )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        where = _block_lines(block, proc.stderr)
        pytest.fail(
            f"{block.where}: the python block failed as written (exit {proc.returncode}, "
            f"{seconds:.1f} s, run from {work} with {sys.executable})"
            + (f"; failing lines: {where}" if where else "")
            + f"\n--- stderr tail ---\n{_tail(proc.stderr)}\n--- stdout tail ---\n"
            f"{_tail(proc.stdout, 10)}",
            pytrace=False,
        )
