"""How an attnviz process ends: one exit code, and at most one line on stderr saying why.

    0    success; also when the reader of standard output went away (``attnviz ... | head -1``)
    1    an error the person can fix (``AttnvizError``, a file the system refuses, memory that
         ran out): one line
    2    a usage error (an unknown option, a bad value): typer's own message
    70   a bug in attnviz (an unexpected exception): one line; ATTNVIZ_DEBUG=1 adds the traceback
    129  stopped by SIGHUP (the terminal closed)
    130  interrupted by Ctrl-C (SIGINT)
    143  stopped by SIGTERM

130 and 143 are what the shell shows: the process ends by the signal itself once it has
cleaned up (see :func:`attnviz.cli.interrupt.exit_by_signal`).

A closed pipe is success, not an error: the reader took what it wanted, as ``head`` does, and a
``set -o pipefail`` script must not fail for it. (Exit 141, dying of SIGPIPE as C tools do,
would fail that script.)
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

import typer

from attnviz.cli import interrupt
from attnviz.errors import AttnvizError
from attnviz.io.signals import STOPPING, Terminated
from attnviz.io.text import printable

OK = 0
ERROR = 1
BUG = 70  # EX_SOFTWARE in sysexits.h: an internal software error
DEBUG_VARIABLE = "ATTNVIZ_DEBUG"


def say(message: str) -> None:
    """One line for the person at the terminal, on stderr so that stdout stays clean. Whatever it
    quotes (paths, texts, tokens) is made printable here: no escape code reaches the terminal.

    Best effort: when stderr itself is closed or full there is no one left to tell, and the
    exit code still says what happened.
    """
    try:
        typer.echo(printable(message), err=True)
    except (OSError, ValueError):  # stderr closed or full
        _silence(sys.stderr)


def exit_code(exc: BaseException) -> int:
    """Say in one line (or not at all) why ``exc`` ended the command, and return its exit code.

    ``SystemExit`` and typer's own exceptions are not for this function: they carry their code.
    """
    if isinstance(exc, AttnvizError):
        say(f"error: {exc}")
        return ERROR
    if isinstance(exc, KeyboardInterrupt):
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        say(interrupt.ending_word(signum))
        return 128 + signum
    if output_closed(exc):
        _silence(sys.stdout)
        return OK
    if isinstance(exc, OSError):
        return _system_refused(exc)
    if isinstance(exc, MemoryError):  # where no layer said it in its own words
        say("error: attnviz ran out of memory; give it less to do at once (a shorter text, "
            "fewer layers or heads, a window) or free some memory")
        return ERROR
    if isinstance(exc, Exception):
        return _bug(exc)
    raise exc  # GeneratorExit and the like: not an ending to report


def output_closed(exc: BaseException) -> bool:
    """Whether ``exc`` says that the reader of standard output went away.

    A ``BrokenPipeError``, or the ``SystemExit(1)`` that rich's Console and click raise right
    after catching one (they point stdout at /dev/null and exit 1).
    """
    if isinstance(exc, SystemExit):
        exc = exc.__context__
    return isinstance(exc, BrokenPipeError)


def run(command: Callable[[], object]) -> NoReturn:
    """Run ``command`` (the whole CLI) as this process and end it with one exit code.

    SIGTERM stops it as Ctrl-C does, both wait while torch is imported (see
    :func:`attnviz.cli.interrupt.held_while_importing`), and standard output is watched, so that a
    full disk or a closed pipe behind it ends the process with one line, or quietly, instead
    of a traceback or an "Exception ignored" at exit.
    """
    interrupt.raise_on_signals()
    _readable_streams()
    watched = _watch_stdout()
    try:
        # torch is imported lazily, wherever the command first needs it: a signal during
        # its C start-up would be lost or abort the process, so it waits for the import.
        with interrupt.held_while_importing("torch"):
            command()
        code = OK
    except SystemExit as exc:
        code = OK if output_closed(exc) else _code_of(exc)
    except BaseException as exc:  # this is the edge: every ending gets a code
        code = exit_code(exc)
    # From here on a signal is only noted: raised while the interpreter tears torch and
    # matplotlib down, it would print "Exception ignored" and be lost.
    late = interrupt.note_from_now_on()
    code = _finish_stdout(code, watched)
    stopped = interrupt.RECEIVED + late  # one may have been swallowed on its way
    if code - 128 not in STOPPING and stopped:
        code = 128 + stopped[0]
        say(interrupt.ending_word(stopped[0]))
    if code - 128 in STOPPING:
        interrupt.exit_by_signal(code - 128)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    # Every file is written and every stream flushed: end now, without the teardown of the
    # modules (a tenth of a second with torch loaded, and a window for late signals).
    os._exit(code)


def _readable_streams() -> None:
    """Standard output and error in an encoding that cannot write every character (ASCII,
    Latin-1, a C locale) write what they cannot as an escape (``\\u00b7``) instead of
    failing."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _code_of(exc: SystemExit) -> int:
    if exc.code is None:
        return OK
    if isinstance(exc.code, int):
        return exc.code
    say(f"error: {exc.code}")
    return ERROR


def _system_refused(exc: OSError) -> int:
    """An operating-system error that no layer turned into words: one line with its file."""
    if _stdout_failure(exc):
        _silence(sys.stdout)
        say(f"error: cannot write to standard output: {exc.strerror or exc}; "
            "check where it goes (a full disk?)")
        return ERROR
    names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    subject = f"cannot use {printable(' -> '.join(names))}" if names else "the system refused"
    say(f"error: {subject}: {exc.strerror or exc}; check the path and try again")
    return ERROR


def _bug(exc: Exception) -> int:
    if os.environ.get(DEBUG_VARIABLE):
        traceback.print_exception(exc)
        say(f"error: internal error ({type(exc).__name__}); this is a bug in attnviz: please "
            "report it with the traceback above")
    else:
        detail = printable(str(exc).splitlines()[0] if str(exc) else "")[:200]
        say(f"error: internal error ({type(exc).__name__}{': ' if detail else ''}{detail}); "
            f"this is a bug in attnviz: please report it; {DEBUG_VARIABLE}=1 shows the traceback")
    return BUG


class _WatchedOutput:
    """``sys.stdout`` as it was, noting the error of a write or flush that fails: a full disk
    behind stdout raises an ``OSError`` with no file name, and only this tells it from any
    other. Everything else is the stream's own."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self.failure = exc
            raise

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self.failure = exc
            raise

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _watch_stdout() -> _WatchedOutput | None:
    if sys.stdout is None:  # started with stdout closed: writes go nowhere, nothing to watch
        return None
    sys.stdout = _WatchedOutput(sys.stdout)
    return sys.stdout


def _stdout_failure(exc: OSError) -> bool:
    watched = sys.stdout
    return isinstance(watched, _WatchedOutput) and watched.failure is exc


def _finish_stdout(code: int, watched: _WatchedOutput | None) -> int:
    """Flush standard output now, while a failure can still be said in one line (at exit,
    Python would print "Exception ignored" and end with status 120)."""
    if watched is None:
        return code
    try:
        watched.flush()
    except BrokenPipeError:
        _silence(watched)
        return code
    except OSError as exc:
        _silence(watched)
        if code == OK:
            return _system_refused(exc)
    return code


def _silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that what is still buffered for it
    goes nowhere instead of failing again at exit (the way Python's ``signal`` docs advise
    for a closed pipe)."""
    try:
        descriptor = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, descriptor)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
