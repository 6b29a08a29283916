"""The ``attnviz`` command's first step: quiet about Ctrl-C from its first moment.

Python answers Ctrl-C with a ``KeyboardInterrupt`` traceback until a program sets its own
handler. The CLI sets its handlers (:mod:`attnviz.cli.exits`) once ``attnviz.cli.app`` is imported,
and that import (typer, rich, click) takes a tenth of a second or more: a Ctrl-C then
printed a traceback. This module sets a quiet one first, so it must stay tiny: it imports
nothing but ``os`` and ``signal``, which Python has loaded already.
"""

import os
import signal


def main() -> None:
    """Entry point of the ``attnviz`` console script and of ``python -m attnviz``."""
    # SIGTERM's default action already ends the process by it, quietly; an ignored Ctrl-C
    # (a background job, nohup) stays ignored.
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _end_by_signal)
    from attnviz.cli.app import main as run_cli

    run_cli()


def _end_by_signal(signum: int, frame: object) -> None:
    """Nothing has started yet, so nothing to clean up: end by the signal itself, as the CLI
    does once it runs (the shell shows 130, and a calling loop learns it was interrupted)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached where the signal kills
