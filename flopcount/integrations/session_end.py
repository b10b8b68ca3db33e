"""``SessionEnd``: a guard's ledger session never stays ``running`` after its process is gone.

While a session is open (armed), two ways out of the process close it first:

- the interpreter exits (an unhandled exception, ``sys.exit``, the end of the script): the
  session ends ``failed`` with the exception that ended the process, or ``finished``;
- SIGTERM (a scheduler or ``kill``): the session ends ``stopped`` ("terminated by SIGTERM"),
  then the signal's previous handling runs (by default the process dies of SIGTERM). A signal
  that arrives while a charge is being written waits for that charge to be committed.

A hard kill (SIGKILL, power loss) cannot be seen: the session stays open, as any crash does.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref
from typing import Any


class SessionEnd:
    """Close ``guard``'s session at interpreter exit or on SIGTERM while armed."""

    def __init__(self, guard: Any) -> None:
        self._guard = weakref.ref(guard)
        self._armed = False
        self._previous: Any = None  # the SIGTERM handler before ours
        self._pending: int | None = None
        atexit.register(_at_exit, weakref.ref(self))

    def arm(self) -> None:
        """Watch the process's end (called when the session opens)."""
        self._armed = True
        if threading.current_thread() is threading.main_thread() and self._previous is None:
            previous = signal.getsignal(signal.SIGTERM)
            if previous is not signal.SIG_IGN and previous is not None:
                self._previous = previous
                signal.signal(signal.SIGTERM, self._on_sigterm)

    def disarm(self) -> None:
        """Stop watching (the session was closed); restore the previous SIGTERM handler. When a
        handler installed after ours is in place, ours stays in its chain and keeps passing the
        signal on to the handler before it."""
        self._armed = False
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, self._previous)
                self._previous = None

    def deliver_pending(self) -> None:
        """Handle a SIGTERM that arrived while this (the main) thread was writing a charge; the
        handler's work belongs to the main thread (a replica thread of ``nn.DataParallel`` cannot
        restore or re-raise a signal)."""
        if self._pending is not None and threading.current_thread() is threading.main_thread():
            signum, self._pending = self._pending, None
            self._on_sigterm(signum, None)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        guard = self._guard()
        if guard is not None and self._armed:
            if guard.busy == threading.get_ident():  # this thread is writing a charge: after it is committed
                self._pending = signum
                return
            guard.close("stopped", "terminated by SIGTERM")  # waits for another thread's charge (the lock)
        previous = self._previous if self._previous is not None else signal.SIG_DFL
        self.disarm()
        if callable(previous) and previous is not self._on_sigterm:
            previous(signum, frame)
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    def at_exit(self) -> None:
        guard = self._guard()
        if guard is None or not self._armed:
            return
        error = getattr(sys, "last_value", None) or getattr(sys, "last_exc", None)
        if error is None:
            guard.close("finished" if guard.refusal is None else "stopped", guard.refusal)
        elif isinstance(error, KeyboardInterrupt):
            guard.close("stopped", "interrupted (Ctrl-C)")
        else:
            guard.close("failed", f"the process exited on {type(error).__name__}: {error}")


def _at_exit(reference: weakref.ref) -> None:
    end = reference()
    if end is not None:
        end.at_exit()
