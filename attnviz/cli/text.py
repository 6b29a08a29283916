"""The text the commands print beside pictures: progress bars, summaries of training and
evaluation, tables of models, and each query's strongest keys (``--top-k``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attnviz.maps.views import Plan
    from attnviz.model.catalog import ModelSummary, ModelVocabulary
    from attnviz.train.evaluate import Metrics


REDRAW_EVERY = 0.1  # seconds between redraws of a bar that has no thread to redraw it


@contextmanager
def _progress(console, name: str, total: int, ticking: bool = True) -> Iterator[tuple]:
    """A rich progress bar named ``name``, counting to ``total``, with a status text at its
    end (``task.fields["status"]``); yields the bar and its one task. ``ticking``: a thread
    redraws it ten times a second; else it is redrawn by each update only."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(name), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    bar = Progress(*columns, console=console, transient=False, auto_refresh=ticking)
    bar.start()
    try:
        yield bar, bar.add_task(name, total=total, status="")
    finally:
        from attnviz.io.signals import held

        # A second Ctrl-C as the bar closes stopped rich before its last redraw: the bar
        # did not show the count that the command's last line speaks of.
        with held():
            bar.stop()


@contextmanager
def training_progress(console, steps: int) -> Iterator[Callable]:
    """A rich progress bar with loss and validation accuracy; yields the report callback."""
    with _progress(console, "training", steps) as (bar, task):
        validation = ""

        def report(progress) -> None:
            nonlocal validation
            if progress.validation is not None:
                v = progress.validation
                validation = (f" · validation: exact {v.exact_match:.1%}, "
                              f"tokens {v.token_accuracy:.1%}")
            bar.update(task, completed=progress.step,
                       status=f"loss {progress.loss:.4f}{validation}")

        yield report


@contextmanager
def export_progress(console, lines: int, ticking: bool = False, name: str = "export"
                    ) -> Iterator[Callable]:
    """A rich progress bar of an export's lines (or, ``name``, another command's), with the
    lines skipped (done before) and failed; yields the report callback, called with each
    line's outcome (its ``error``, and ``skipped`` where it has one).

    Unless ``ticking`` (for an export in one process), it runs no thread of its own (it is
    redrawn as lines are reported), so that the export may fork its workers: a fork copies
    only the thread that makes it, and a lock the bar's thread held then (writing to the
    terminal) would stay held in the copy for ever. It is redrawn at most ten times a
    second, as rich's thread would: a redraw costs about a millisecond on a terminal, and
    lines done before are reported thousands a second; the last state is drawn when the bar
    closes."""
    import time

    with _progress(console, name, lines, ticking=ticking) as (bar, task):
        skipped = failed = 0
        drawn = time.monotonic()

        def report(outcome) -> None:
            nonlocal skipped, failed, drawn
            skipped += getattr(outcome, "skipped", False)
            failed += outcome.error is not None
            status = ", ".join(part for part in (f"{skipped} done before" if skipped else "",
                                                 f"{failed} failed" if failed else "") if part)
            bar.update(task, advance=1, status=status)
            if not ticking and time.monotonic() - drawn >= REDRAW_EVERY:
                bar.refresh()
                drawn = time.monotonic()

        yield report


def metrics_text(metrics: Metrics) -> str:
    lines = [f"examples        {metrics.examples}",
             f"exact match     {metrics.exact_match:.1%}",
             f"token accuracy  {metrics.token_accuracy:.2%}"]
    if metrics.alignment:
        lines.append("cross-attention alignment (target words whose largest weight, mean over "
                     "heads, lands on their source word):")
        best = metrics.best_alignment_layer
        for layer, share in enumerate(metrics.alignment):
            lines.append(f"  layer {layer}       {share:.1%}" + ("  (best)" if layer == best
                                                                  else ""))
    return "\n".join(lines)


def training_summary(result, path: Path) -> str:
    """What ``attnviz train`` did: the file, the steps, and what the saved model scored.

    A run stopped before its first validation has no best step and no figures: it says
    that, and only that.
    """
    from attnviz.io.text import printable

    size = Path(path).stat().st_size
    steps = f"{result.steps_done} step" + ("" if result.steps_done == 1 else "s")
    done = (f"saved {printable(str(path))} ({size / 1024:.0f} KB) after {steps} in "
            f"{result.seconds:.1f} s")
    if result.measured is None:
        return (f"{done}; not measured: training stopped before the first validation, and the "
                f"model is that of step {result.steps_done}")
    return "\n".join([f"{done}; best validation at step {result.best_step}",
                      f"measured on the {result.measured_on}:", metrics_text(result.measured)])


def early_stop_text(result) -> str:
    """The line ``attnviz train`` says on stderr when training stopped before its last step
    because validation was perfect."""
    from attnviz.train.options import PATIENCE

    return (f"stopped early, at step {result.steps_done:,} of {result.steps_asked:,}: "
            f"validation exact match was 100% at {PATIENCE} validations in a row; "
            "--no-early-stop trains every step")


def interruption_text(result) -> str:
    """The line ``attnviz train`` says on stderr when Ctrl-C stopped the training."""
    if result.best is None:
        return (f"interrupted at step {result.steps_done}, before the first validation: saved "
                "the model as it is")
    return (f"interrupted at step {result.steps_done}: saved the best model on validation "
            f"(from step {result.best_step})")


def models_table(models: list[ModelSummary]):
    """A rich table of models: name, task, sizes and measured accuracy."""
    from rich import box
    from rich.table import Table

    table = Table(title="models for --model NAME", box=box.SIMPLE_HEAD,
                  caption="L×H×D: layers × heads × width · exact: exact match on 1,000 "
                          "held-out examples · alignment: of cross-attention, at the best "
                          "layer (in parentheses)")
    for column in ("name", "task", "tokens", "L×H×D", "file", "exact", "alignment"):
        table.add_column(column, no_wrap=column != "task", min_width=17 if column == "task"
                         else None)
    for model in models:
        best = None if not model.alignment else max(range(len(model.alignment)),
                                                    key=model.alignment.__getitem__)
        table.add_row(
            model.name, model.description, model.tokens,
            f"{model.layers}×{model.heads}×{model.width}",
            "-" if model.size_bytes is None else f"{model.size_bytes / 1024:.0f} KB",
            "-" if model.exact_match is None else f"{model.exact_match:.1%}",
            "-" if best is None else f"{model.alignment[best]:.1%} ({best})",
        )
    return table


def vocabulary_text(vocabulary: ModelVocabulary, width: int) -> str:
    """A model's source and target vocabularies (one list when they are the same), each token
    made printable (a space shows as ␣, so tokens are separated by spaces), in lines of at
    most ``width`` terminal columns (a longer token has a line of its own)."""
    from rich.cells import cell_len

    from attnviz.io.text import display_label, printable

    sides = [("source and target", vocabulary.source, vocabulary.source_kind)] if (
        vocabulary.source == vocabulary.target) else [
        ("source", vocabulary.source, vocabulary.source_kind),
        ("target", vocabulary.target, vocabulary.target_kind)]
    parts = []
    for side, tokens, kind in sides:
        unit = "characters" if kind == "char" else "words"
        lines = [f"{side} vocabulary of {printable(vocabulary.name)}: {len(tokens)} {unit}, "
                 f"ids 0 to {len(tokens) - 1} in this order (any other is read as <unk>)"]
        line = ""
        for token in (display_label(token) for token in tokens):
            if line and cell_len(line) + 1 + cell_len(token) > width:
                lines.append(line)
                line = token
            else:
                line = f"{line} {token}" if line else token
        if line:
            lines.append(line)
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def top_k_text(plan: Plan, count: int) -> str:
    """For every panel of ``plan``, a heading, then a line per query: its position and label,
    then its ``count`` strongest keys (masked keys never), largest first, each as
    ``label (position) weight``. Positions count in the whole sequence, windows included.

    Example line (cross-attention)::

        0 <bos> → les: the (0) 0.912, small (1) 0.041, <eos> (8) 0.020
    """
    from attnviz.maps.views import top_keys

    lines = []
    if plan.caption:
        lines.append(plan.caption)
    for panel in plan.panels:
        if lines:
            lines.append("")
        lines.append(f"{panel.title}: the {count} strongest keys of each query "
                     "(key label (position) weight)")
        keys = panel.key_labels
        for row, strongest in enumerate(top_keys(panel, count)):
            listed = ", ".join(f"{keys[column]} ({panel.key_start + column}) {weight:.3f}"
                               for column, weight in strongest)
            lines.append(f"{panel.query_start + row} {panel.query_label(row)}: {listed}")
    return "\n".join(lines) + "\n"
