"""Ctrl-C, SIGTERM and SIGHUP as one exception, and held back while files are renamed.

Python turns Ctrl-C (SIGINT) into ``KeyboardInterrupt`` wherever the program is, so every
``finally`` and ``except BaseException`` cleans up after it; the command line makes SIGTERM
and SIGHUP raise :class:`Terminated`, a ``KeyboardInterrupt``, so that the same clean-up runs
for all (see :mod:`attnviz.cli.interrupt`). What must happen whole (renaming files into
place) holds them back with :func:`held`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

# SIGHUP is POSIX's: Windows has none.
STOPPING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                  if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP, ``signum``) arrived: stop and clean up, as for Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


@contextmanager
def held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP until the block ends, then deliver them.

    For a handful of quick steps that must all happen or all be undone (renaming files into
    place): an interrupt in their middle would leave some files new and some old. Only the
    main thread runs signal handlers, so elsewhere there is nothing to hold.

    A kernel signal mask would not do: a signal sent to the process goes to any thread that
    does not block it (torch starts worker threads), and Python then runs the handler in the
    main thread anyway. So the Python-level handlers are swapped for one that only notes the
    signal, and the noted signal is raised again once the old handlers are back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    try:
        # Each old handler is put back even when a signal arrives while another one is.
        with ExitStack() as restore:
            for signum in STOPPING:
                handler = signal.getsignal(signum)
                if handler is None or handler is signal.SIG_IGN:  # None: set outside Python
                    continue
                restore.callback(signal.signal, signum, handler)
                signal.signal(signum, lambda number, frame: noted.append(number))
            yield
    finally:
        if noted:
            signal.raise_signal(noted[0])  # the first one is enough to stop
