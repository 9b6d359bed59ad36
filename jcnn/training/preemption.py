"""Preemption: SIGTERM or SIGINT during :func:`jcnn.fit` ends the run cleanly.

Colab and TPU VMs send SIGTERM before they take a machine away (a TPU VM gives 30 s). While
``fit`` trains, :class:`PreemptionGuard` turns the first SIGTERM or SIGINT into a request that
``fit`` honours between chunks of steps (a chunk is a couple of seconds of work): it writes a
checkpoint when it has a ``checkpoint_dir``, says what it saved (or what is lost without one)
and raises :class:`Preempted`, a ``SystemExit`` whose code is ``128 + signal`` (the shell's
convention). A second SIGINT interrupts at once (``KeyboardInterrupt``).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(SystemExit):
    """:func:`jcnn.fit` stopped on a signal after saving what it could.

    Attributes:
        signum: the signal's number.
        step: the optimiser steps taken (and saved, with a checkpoint dir).
        message: what was saved or lost.
    """

    def __init__(self, signum: int, step: int, message: str) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.message = signum, step, message

    def __str__(self) -> str:
        return self.message


class PreemptionGuard:
    """Context manager: records the first SIGTERM/SIGINT instead of dying of it.

    Only the main thread can install signal handlers; elsewhere the guard does nothing (and
    :attr:`requested` stays None). The previous handlers are restored on exit.

    Example:
        >>> import os
        >>> with PreemptionGuard() as guard:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     guard.requested == signal.SIGTERM
        True
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.requested = signum

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        """The requested signal's name (``"SIGTERM"``), or ``""``."""
        return "" if self.requested is None else signal.Signals(self.requested).name
