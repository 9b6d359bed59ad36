"""The code is ruff-clean (lint and format), as the style guide asks; CI runs it with the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CODE = ["jcnn", "tests", "bench", "experiments", "conftest.py"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    command = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("check", [("check", *CODE), ("format", "--check", *CODE)], ids=str)
def test_ruff(check):
    result = _ruff(*check)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _public_functions():
    """``(qualified name, function)`` for every public function and method of jcnn's modules."""
    import importlib
    import inspect
    import pkgutil

    import jcnn

    for info in pkgutil.walk_packages(jcnn.__path__, "jcnn."):
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
        for name in names:
            obj = getattr(module, name, None)
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # re-exported: checked where it is defined
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj) and not getattr(obj, "_is_protocol", False):
                for attr, value in vars(obj).items():
                    if inspect.isfunction(value) and (attr[0] != "_" or attr == "__init__"):
                        yield f"{module.__name__}.{name}.{attr}", value


def test_public_functions_are_fully_annotated():
    """Strict typing of the public surface: every parameter and every return is annotated (mypy
    checks the annotations; the private closures of layer rules stay light)."""
    import inspect

    missing = []
    for qualname, fn in _public_functions():
        sig = inspect.signature(fn)
        bare = [
            p.name
            for p in sig.parameters.values()
            if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
        ]
        no_return = sig.return_annotation is inspect.Signature.empty and fn.__name__ != "__init__"
        if bare or no_return:
            missing.append(f"{qualname}: {bare or ''}{' (no return type)' if no_return else ''}")
    assert len(missing) == 0, "\n".join(missing)
