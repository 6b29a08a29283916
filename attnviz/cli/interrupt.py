"""Ctrl-C, SIGTERM and SIGHUP: one exception for all, held back while files are renamed.

Python turns Ctrl-C (SIGINT) into ``KeyboardInterrupt`` wherever the program is, so every
``finally`` and ``except BaseException`` cleans up after it. SIGTERM (``kill``, ``timeout``,
a closing IDE) and SIGHUP (the terminal closed, an ssh connection lost) kill the process on
the spot by default, leaving temporary files behind and a model in training unsaved;
:func:`raise_on_signals` makes them raise :class:`Terminated`, a ``KeyboardInterrupt``, so
the same clean-up runs for all.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from attnviz.io.signals import STOPPING, Terminated, held


def ending_word(signum: int) -> str:
    """The one line that says why a command stopped: ``interrupted`` (Ctrl-C),
    ``terminated`` (SIGTERM), ``hung up`` (SIGHUP)."""
    if signum == signal.SIGINT:
        return "interrupted"
    return "hung up" if signum == getattr(signal, "SIGHUP", None) else "terminated"


RECEIVED: list[int] = []  # every Ctrl-C, SIGTERM and SIGHUP the process got, in order


def raise_on_signals() -> None:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` and Ctrl-C ``KeyboardInterrupt`` in
    the main thread, and note each in :data:`RECEIVED`: an interrupt raised where Python swallows
    exceptions (a weakref callback, a ``__del__``) is not lost. Call once, from the main
    thread, when the program starts (the CLI does; a library caller keeps its own handlers).
    """
    for signum in STOPPING:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # keep nohup-style ignoring
            signal.signal(signum, _raise_stop)
    before = sys.unraisablehook

    def quiet_interrupts(unraisable) -> None:
        """An interrupt raised where Python cannot pass it on is already in RECEIVED: the
        process ends by it later, without the "Exception ignored" traceback."""
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            before(unraisable)

    sys.unraisablehook = quiet_interrupts


def _raise_stop(signum: int, frame: object) -> None:
    RECEIVED.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


@contextmanager
def held_while_importing(name: str) -> Iterator[None]:
    """For the block's duration, the first import of top-level module ``name``, wherever it
    happens, runs with the stopping signals :func:`held`; a signal that came meanwhile is raised
    as soon as the module is in.

    For torch: its C start-up imports numpy and other modules, and clears or mishandles any
    Python exception raised meanwhile. A Ctrl-C there was lost (training ran on, numpy left
    half-imported), turned into an unrelated ``ImportError``, or aborted the process
    (``terminate called after throwing an instance of 'pybind11::error_already_set'``).
    torch is imported lazily, in many modules, and not at all when the maps come from the
    cache: holding its import where it happens, whichever module asks, is what fits.

    Only for a program's own run (the CLI's): it changes ``sys.meta_path`` for everyone.
    """
    finder = _HoldingFinder(name)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)


class _HoldingFinder:
    """Finds ``name`` through the other finders of ``sys.meta_path``, and holds signals while
    its loader executes it (the module object and its loader stay the usual ones)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != self.name:
            return None  # submodules: the top-level module's import holds them already
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        execute = getattr(loader, "exec_module", None)
        if execute is not None:

            def exec_module(module) -> None:
                with held():
                    execute(module)

            try:  # this spec's own loader (a new one per spec): no other import is touched
                loader.exec_module = exec_module
            except (AttributeError, TypeError):  # a loader that takes no attributes
                pass
        return spec


def note_from_now_on() -> list[int]:
    """From now on, Ctrl-C, SIGTERM and SIGHUP are only noted in the returned list (for the last
    moments of a process, when there is nothing left to stop)."""
    noted: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for signum in STOPPING:
            if signal.getsignal(signum) not in (None, signal.SIG_IGN):
                signal.signal(signum, lambda number, frame: noted.append(number))
    return noted


def exit_by_signal(signum: int) -> NoReturn:
    """End the process by ``signum`` with its default action, after clean-up is done.

    The shell then shows the usual status (130 for SIGINT, 143 for SIGTERM), and a calling
    script learns that its command was interrupted: bash stops a loop whose command died of
    SIGINT, but goes on when the command merely exits with 130. Python itself ends this way
    on an uncaught KeyboardInterrupt, for the same reason.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # not reached where the signal kills; the same status elsewhere
