"""Stopping a run on a signal without losing it.

SIGTERM (preemption, `docker stop`, Slurm) and a first SIGINT (Ctrl-C) ask training to stop:
the loop finishes the update it is in, writes checkpoint_last.pt and raises `TrainingStopped`
(exit code 128 + the signal: 143, 130). Inside `interruptible()` (validation and test
decoding, which write nothing until they are done) the signal raises `Interrupted` at once
instead. A second SIGINT stops at once (KeyboardInterrupt), since every file of the run is
written atomically; one within DUPLICATE seconds of the first is the same Ctrl-C, passed on by
a launcher (torchrun sends the SIGINT it got to processes that had it from the terminal too).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DUPLICATE = 0.25  # seconds


class Interrupted(Exception):
    """A stop signal arrived during work that can be dropped and redone."""


class TrainingStopped(Exception):
    """Training stopped on a signal after saving; rerunning the command resumes it."""

    def __init__(self, step: int, signum: int) -> None:
        super().__init__(f"stopped at step {step}; rerun the same command to resume")
        self.step, self.signum = step, signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Catches SIGTERM and SIGINT while training (a context manager; main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._at = 0.0  # when it was received
        self._interruptible = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received, self._at = signum, time.monotonic()
        elif signum == signal.SIGINT and time.monotonic() - self._at > DUPLICATE:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if self._interruptible:
            raise Interrupted

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A stop signal raises `Interrupted` in here (at once if one came already)."""
        if self.received is not None:
            raise Interrupted
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False
