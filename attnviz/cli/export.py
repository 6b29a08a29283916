"""The ``export`` command: every pair of a pairs file drawn to its own files, with an index.

The work is :mod:`attnviz.batch.export`'s; here are its options, its progress bar and its
report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from attnviz.cli.exits import say
from attnviz.cli.options import (
    CmapOption,
    Device,
    DeviceParam,
    ExportFormat,
    ModelOption,
    NoCacheOption,
    SeedOption,
)
from attnviz.cli.reporting import reporting
from attnviz.errors import AttnvizError
from attnviz.io.text import printable


def export(
    pairs: Annotated[Path, typer.Argument(
        metavar="PAIRS.TSV", show_default=False,
        help="One pair a line, UTF-8: source<TAB>target, or the source alone to let the "
             "model write the target.")],
    out_dir: Annotated[Path, typer.Option(
        "--out-dir", "-d", metavar="DIR", show_default=False,
        help="Where the files go (made if missing), named by line number: 0007.png ..., "
             "with index.html listing them.")],
    formats: Annotated[Optional[list[ExportFormat]], typer.Option(
        "--format", "-f", help="What to write for each pair, with every kind in it: an "
        "image, the numbers, or a page. Repeatable. Default: png.", show_default=False)
    ] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=1, help="Pairs drawn at once, each in its own process, on one "
        "CPU thread; at most the CPU cores there are.")] = 1,
    model: ModelOption = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
    no_cache: NoCacheOption = False,
    skip_bad_lines: Annotated[bool, typer.Option(
        "--skip-bad-lines", help="Leave out the lines that cannot be read as pairs (each "
        "named on stderr and in index.html) instead of refusing the whole file.")] = False,
) -> None:
    """Draw the attention of every pair of a file, each to its own files, and an index.html
    that lists them. Interrupted, it keeps every file finished; run again, it skips them.

    Example:  attnviz export pairs.tsv --out-dir maps --format png --format html --jobs 2
    """
    with reporting() as report:
        from rich.console import Console

        from attnviz.batch import export as exporting
        from attnviz.batch.pool import capped
        from attnviz.cli.text import export_progress
        from attnviz.io.pairs import BadLines, read_pairs, read_pairs_skipping

        settings = exporting.Settings(
            out_dir=out_dir, formats=tuple(f.value for f in formats or [ExportFormat.png]),
            model=model, cmap=cmap, seed=seed, device=device.value, use_cache=not no_cache,
            pairs_name=printable(str(pairs)))
        if skip_bad_lines:
            lines, skipped = read_pairs_skipping(pairs)
        else:
            try:
                lines, skipped = read_pairs(pairs), []
            except BadLines as exc:
                raise AttnvizError(f"{exc}; or leave the bad lines out with --skip-bad-lines"
                                   ) from None
        exporting.prepare(settings)
        jobs = capped(jobs)  # said before the bar
        for bad in skipped[:EXPORT_NOTES_SHOWN]:
            report.keep(f"{settings.pairs_name}:{bad.number}: skipped: {bad.reason}")
        if len(skipped) > EXPORT_NOTES_SHOWN:
            report.keep(f"and {len(skipped) - EXPORT_NOTES_SHOWN} more lines skipped, listed "
                        f"in {out_dir / exporting.INDEX}")
        with exporting.one_writer(settings):  # another export there: said before the bar
            report.tell()
            reached = []  # the outcomes reported, as the bar counts them
            try:
                # One job forks no worker: the bar may tick on its own thread as lines take
                # long.
                with export_progress(Console(stderr=True), len(lines),
                                     ticking=jobs == 1) as bar:
                    summary = exporting.run(settings, lines, jobs, lambda outcome: (
                        reached.append(outcome), bar(outcome)), skipped)
            except KeyboardInterrupt:
                done = sum(bool(outcome.files) for outcome in reached)  # as the index counts
                say(f"stopped: {done} of {len(lines)} pairs done, listed in "
                    f"{out_dir / exporting.INDEX}; run the same command again to finish")
                raise
        report_export(summary, out_dir / exporting.INDEX, len(skipped))


EXPORT_NOTES_SHOWN = 10  # warnings named one by one; the rest are counted


def report_export(summary, index: Path, skipped: int = 0) -> None:
    """Each failed line and the first warnings, one line each, then the index; an error
    (exit 1) when a line failed."""
    from attnviz.io.pairs import line_numbers

    by_line = sorted(summary.outcomes, key=lambda outcome: outcome.line.number)
    said: dict[str, list[int]] = {}  # each warning once, with the lines that gave it
    for outcome in by_line:
        if not outcome.skipped:
            for note in outcome.warnings:
                said.setdefault(note, []).append(outcome.line.number)
    notes = [f"{line_numbers(numbers)}: {note}" for note, numbers in said.items()]
    for note in notes[:EXPORT_NOTES_SHOWN]:
        say(f"warning: {note}")
    if len(notes) > EXPORT_NOTES_SHOWN:
        say(f"warning: and {len(notes) - EXPORT_NOTES_SHOWN} more warnings, listed in {index}")
    for outcome in by_line:
        if outcome.error:
            say(f"error: {outcome.error}")
    drawn = len(summary.outcomes) - summary.skipped - len(summary.failed)
    say(f"wrote {index}: {drawn} pairs drawn, {summary.skipped} done before"
         + (f", {len(summary.failed)} failed" if summary.failed else "")
         + (f", {skipped} bad lines skipped" if skipped else ""))
    if summary.failed:
        failed, total = len(summary.failed), len(summary.outcomes)
        raise AttnvizError(f"{failed} of {total} pairs could not be drawn (listed above)"
                           + ("; the others are written" if failed < total else ""))
