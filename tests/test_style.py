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
