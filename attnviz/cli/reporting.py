"""How a command tells the person what happened: its warnings, its one line of error, and its
exit code, on stderr (stdout stays the command's own output)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from attnviz.cli import exits
from attnviz.cli.exits import say
from attnviz.cli.options import FLAGS
from attnviz.errors import AttnvizError, AttnvizWarning


class Report:
    """The warnings of one command: kept as they come, said once each when told."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._told: set[str] = set()

    def keep(self, message: str) -> None:
        if message not in self._pending:
            self._pending.append(message)

    def tell(self) -> None:
        """Say each warning kept so far, once per command: a command calls this once its
        options proved good, so that a command that fails says one line, its error."""
        for message in self._pending:
            if message not in self._told:
                self._told.add(message)
                say(f"warning: {message}")
        self._pending.clear()


@contextmanager
def reporting() -> Iterator[Report]:
    """The one place that turns how a command ended into at most one line on stderr and an
    exit code (the codes are listed in :mod:`attnviz.cli.exits`), and the library's warnings
    into one line each (kept in the :class:`Report` it yields until told, or the end)."""
    report = Report()
    shown_before = warnings.showwarning

    def keep(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, AttnvizWarning):
            report.keep(str(message))
        else:
            shown_before(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", AttnvizWarning)
        warnings.showwarning = keep
        try:
            yield report
            report.tell()
            if sys.stdout is not None:
                sys.stdout.flush()  # a full disk or a closed pipe behind stdout shows here
        except AttnvizError as exc:
            say(f"error: {exc.worded(FLAGS)}")
            raise typer.Exit(exits.ERROR) from None
        except SystemExit as exc:
            if exits.output_closed(exc):  # rich's Console ends so on a closed pipe
                raise typer.Exit(exits.OK) from None
            raise
        except BaseException as exc:  # every other ending gets its one line
            if type(exc).__module__.partition(".")[0] in ("typer", "click"):
                raise  # typer's own endings (Exit, BadParameter) carry their code and message
            raise typer.Exit(exits.exit_code(exc)) from None
