"""The ``heads`` command: what every head of every kind and layer does, for one text, a file
of saved maps, or a corpus.

The work is the pipeline's (:func:`attnviz.flow.pipeline.heads`) and, for a corpus,
:mod:`attnviz.batch.heads`'s; here are its options, its progress bar and its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# The texts and the garbage collector as the drawing commands treat them.
from attnviz.cli.draw import _argument as argument
from attnviz.cli.draw import _without_cycle_collector as without_cycle_collector
from attnviz.cli.exits import say
from attnviz.cli.options import (
    CmapOption,
    Device,
    DeviceParam,
    ModelOption,
    NoCacheOption,
    SeedOption,
    TargetOption,
    ThreadsOption,
    Weights,
    WeightsOption,
    distinct_files,
)
from attnviz.cli.reporting import reporting
from attnviz.errors import AttnvizError
from attnviz.io.text import printable

NOTES_SHOWN = 10  # a corpus's warnings named one by one; the rest are counted


def heads(
    text: Annotated[Optional[str], typer.Argument(
        metavar="[TEXT]", show_default=False,
        help="The source sentence, in quotes (or give --maps or --pairs instead).")] = None,
    target: TargetOption = None,
    model: ModelOption = None,
    maps: Annotated[Optional[Path], typer.Option(
        "--maps", metavar="FILE", show_default=False,
        help="Maps saved before (-o maps.npz or .json, as show reads them) instead of a "
             "model's run.")] = None,
    pairs: Annotated[Optional[Path], typer.Option(
        "--pairs", metavar="PAIRS.TSV", show_default=False,
        help="A corpus, one pair a line as export reads it: each head's figures are the "
             "mean over the lines, with their spread.")] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=1, help="With --pairs: lines measured at once, each in its own "
        "process, on one CPU thread.")] = 1,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", metavar="ADDRESS", show_default=False,
        help="With --pairs: measure the lines on the workers of the Dask cluster whose "
             "scheduler is at ADDRESS (tcp://HOST:8786; pip install 'attnviz\\[dask]'). "
             "The same result as --jobs.")] = None,
    induction: Annotated[bool, typer.Option(
        "--induction", help="Also measure the induction score of the self-attention heads: "
        "the model reads a random token sequence twice, and each query of the second copy's "
        "weight on the token after the same token's first occurrence is averaged (Olsson et "
        "al., 2022).")] = False,
    induction_length: Annotated[int, typer.Option(
        "--induction-length", metavar="N", min=2, max=4096,
        help="Tokens of the random sequence --induction reads twice.")] = 50,
    weights: WeightsOption = Weights.attention,
    output: Annotated[Optional[list[Path]], typer.Option(
        "--output", "-o", metavar="FILE", callback=distinct_files, show_default=False,
        help="Write to this file instead of the terminal: .json (a record per head), .png "
             ".svg .pdf (a layers x heads grid per figure and kind), .html (the page of the "
             "maps, opening on the atlas: click a head for its map). Repeatable.")] = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
    threads: ThreadsOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Measure what every head of every kind and layer does: the entropy of its rows, its
    weight on the first key, the previous one and itself, how far back it looks (and, with
    --induction, its induction score), and a label where a figure says so clearly.

    Example:  attnviz heads "the black cat sees the red car" --induction -o heads.png
    """
    with reporting() as report, without_cycle_collector():
        from attnviz.flow import pipeline
        from attnviz.sources.base import Repeated

        _check_choice(text, target, model, maps, pairs, jobs, scheduler, induction)
        outputs = output or []
        pipeline.check_atlas_outputs(outputs, cmap, corpus=pairs is not None)
        repeated = Repeated(induction_length, seed) if induction else None
        failed = None  # of a corpus: its lines that could not be measured
        if pairs is not None:
            failed, atlas = _corpus(pairs, model, weights, seed, device, no_cache, jobs,
                                    scheduler, repeated, report)
            traced = None
        else:
            from attnviz.sources import Request

            request = Request(None if text is None else argument(text, "the text"),
                              None if target is None else argument(target, "--target"), None,
                              seed, device.value, threads, weights.value)
            traced, atlas = pipeline.heads(str(maps) if maps is not None else model, request,
                                           induction=repeated, cache=not no_cache)
        report.tell()
        if outputs:
            pipeline.write(outputs, traced, None, cmap, atlas=atlas)
            for path in outputs:
                say(f"wrote {path}")
        if traced is not None and traced.provenance.target_generated:
            typer.echo(printable(traced.provenance.target_text or ""))  # as decode says it
        if not outputs:
            from rich.console import Console

            from attnviz.render import atlas_terminal

            atlas_terminal.show(Console(), atlas, cmap)
        if failed:  # said once the atlas of the others is written
            raise AttnvizError(f"{failed} of {failed + atlas.lines} lines could not be "
                               f"measured (listed above); the atlas is of the other "
                               f"{atlas.lines}")


def _check_choice(text, target, model, maps, pairs, jobs, scheduler, induction) -> None:
    """One of TEXT, --maps and --pairs, and only the options that go with it."""
    given = [name for name, value in (("TEXT", text), ("--maps", maps), ("--pairs", pairs))
             if value is not None]
    if len(given) != 1:
        raise AttnvizError("give one of TEXT, --maps FILE and --pairs FILE" +
                           (f", not {' and '.join(given)}" if given else ""))
    if pairs is None and (jobs > 1 or scheduler is not None):
        raise AttnvizError("--jobs and --scheduler measure the lines of a corpus: give "
                           "--pairs FILE")
    if jobs > 1 and scheduler is not None:
        raise AttnvizError("give --jobs (processes here) or --scheduler (a Dask cluster), "
                           "not both")
    if target is not None and text is None:
        raise AttnvizError("--target goes with TEXT: a maps file holds its texts, and a "
                           "pairs file its targets")
    if maps is not None and (model is not None or induction):
        raise AttnvizError("--maps holds maps computed before: drop --model and "
                           "--induction, or measure the model itself (TEXT --model NAME)")


def _corpus(pairs: Path, model, weights: Weights, seed: int, device: Device, no_cache: bool,
            jobs: int, scheduler, repeated, report):
    """Measure every line of ``pairs`` with a progress bar, and say each warning and failed
    line: how many failed, and the atlas of the others (an error when none is left)."""
    from rich.console import Console

    from attnviz.batch import heads as corpus
    from attnviz.cli.text import export_progress
    from attnviz.io.pairs import line_numbers, read_pairs

    settings = corpus.Settings(model, weights.value, seed, device.value, not no_cache,
                               printable(str(pairs)))
    lines = read_pairs(pairs)
    report.tell()
    with export_progress(Console(stderr=True), len(lines), ticking=jobs == 1,
                         name="heads") as progress:
        done = corpus.run(settings, lines, jobs=jobs, scheduler=scheduler, induction=repeated,
                          report=progress)
    said: dict[str, list[int]] = {}
    for outcome in done.measured:
        for note in outcome.warnings:
            said.setdefault(note, []).append(outcome.line.number)
    notes = [f"{line_numbers(numbers)}: {note}" for note, numbers in said.items()]
    for note in notes[:NOTES_SHOWN]:
        say(f"warning: {note}")
    if len(notes) > NOTES_SHOWN:
        say(f"warning: and {len(notes) - NOTES_SHOWN} more warnings")
    for outcome in done.failed:
        say(f"error: {outcome.error}")
    if done.atlas is None:
        raise AttnvizError(f"none of the {len(lines)} lines could be measured (listed above)")
    return len(done.failed), done.atlas
