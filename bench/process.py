"""A benchmark worker process and its tagged JSON replies (shared by ``python -m bench`` and
``python -m bench.data``)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Worker:
    """``python -m <module> <args>`` in the repository, read by tagged lines on its stdout.

    Args:
        command: the command line (interpreter first).
        timeout: seconds :meth:`read` waits for a reply before it kills the process.
        tag: the prefix of the lines that carry JSON replies.
    """

    def __init__(self, command: list[str], timeout: float, tag: str) -> None:
        self.timeout, self.tag = timeout, tag
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def read(self) -> dict:
        """The next tagged reply, or ``{"skip": why}`` when none comes in time or it exited."""
        deadline = time.monotonic() + self.timeout
        assert self.proc.stdout is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.kill()
                return {"skip": f"no reply within {self.timeout:.0f} s"}
            line = self.proc.stdout.readline()
            if not line:
                return {"skip": f"worker exited (code {self.proc.wait()})"}
            if line.startswith(self.tag):
                return json.loads(line[len(self.tag) :])

    def send(self, line: str) -> None:
        """One line to the worker's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """Stops the worker now."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
