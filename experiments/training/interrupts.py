"""Ctrl-C during training: stop at the next step boundary, checkpoint, say how to resume."""

from __future__ import annotations

import signal
import threading

INTERRUPTED = "interrupted (Ctrl-C)"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run cleanly at a step boundary: the last finished ``step`` is
    checkpointed and the ledger records the run as stopped, interrupted. Running the same
    command again resumes it."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class InterruptFlag:
    """While entered (in the main thread), SIGINT sets ``raised`` instead of raising, so the
    loop stops at the next step boundary; a second Ctrl-C raises at once."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
