"""Text for the training and evaluation commands: progress, summaries, tables of models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from attnviz.evaluate import Metrics


@contextmanager
def training_progress(console, steps: int) -> Iterator[Callable]:
    """A rich progress bar with loss and validation accuracy; yields the report callback."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=steps, status="")
        validation = ""

        def report(progress) -> None:
            nonlocal validation
            if progress.validation is not None:
                v = progress.validation
                validation = (f" · validation: token accuracy {v.token_accuracy:.1%}, "
                              f"exact match {v.exact_match:.1%}")
            bar.update(task, completed=progress.step,
                       status=f"loss {progress.loss:.4f}{validation}")

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
    size = Path(path).stat().st_size
    measured = result.test
    what = "held-out test set" if result.checkpoint.info.get("task") in _task_names() else \
        "validation pairs"
    return "\n".join([
        f"saved {path} ({size / 1024:.0f} KB) after {result.steps_done} steps in "
        f"{result.seconds:.0f} s; best validation at step {result.best_step}",
        f"measured on the {what}:",
        metrics_text(measured),
    ])


def models_table(models: dict[str, Path]):
    """A rich table of shipped models, read from their files' metadata."""
    from rich.table import Table

    from attnviz.checkpoint import read_metadata

    table = Table(title="models shipped with attnviz (use with --model NAME)")
    for column in ("name", "task", "tokens", "layers × heads × width", "size",
                   "exact match", "alignment (best layer)"):
        table.add_column(column)
    table.add_row("random", "random weights, vocabulary from your sentences", "word",
                  "2 × 4 × 64", "-", "-", "-")
    for name, path in models.items():
        data = path.read_bytes()
        meta = read_metadata(data, str(path))
        config, info = meta["config"], meta["info"]
        metrics = info.get("metrics") or {}
        alignment = metrics.get("alignment")
        table.add_row(
            name, info.get("description", info.get("task", "?")),
            meta["source_tokenizer"]["kind"],
            f"{config['n_encoder_layers']} × {config['n_heads']} × {config['d_model']}",
            f"{len(data) / 1024:.0f} KB",
            f"{metrics['exact_match']:.1%}" if "exact_match" in metrics else "-",
            f"{max(alignment):.1%} (layer {alignment.index(max(alignment))})" if alignment
            else "-",
        )
    return table


def _task_names() -> set[str]:
    from attnviz.tasks import all_tasks

    return set(all_tasks())
