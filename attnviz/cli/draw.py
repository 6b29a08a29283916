"""The commands that draw maps: ``encode``, ``decode``, ``show`` and ``explain``.

Each parses its options into a request and a view, and hands them to the pipeline
(:mod:`attnviz.flow.pipeline`), which traces the maps and writes the files; what is left here
is the terminal, and the words.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from attnviz.cli.exits import say
from attnviz.cli.options import (
    CmapOption,
    Device,
    DeviceParam,
    ExplainKind,
    HeadOption,
    Kind,
    KindOption,
    LayerOption,
    MemoryOption,
    ModelOption,
    NoCacheOption,
    OutputOption,
    Precision,
    PrecisionOption,
    RolloutOption,
    ScaleOption,
    SeedOption,
    Sink,
    SinkOption,
    TargetOption,
    TextArgument,
    ThreadsOption,
    TopKOption,
    Weights,
    WeightsOption,
    WindowKeyOption,
    WindowOption,
    WindowQueryOption,
    distinct_files,
)
from attnviz.cli.reporting import Report, reporting
from attnviz.errors import AttnvizWarning
from attnviz.io.text import printable, valid_utf8
from attnviz.maps.kinds import SHORT_NAMES


def encode(
    text: TextArgument,
    layer: LayerOption = None,
    head: HeadOption = None,
    model: ModelOption = None,
    output: OutputOption = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
    threads: ThreadsOption = None,
    no_cache: NoCacheOption = False,
    rollout: RolloutOption = False,
    scale: ScaleOption = None,
    window: WindowOption = None,
    window_query: WindowQueryOption = None,
    window_key: WindowKeyOption = None,
    top_k: TopKOption = None,
    sink: SinkOption = Sink.shown,
    precision: PrecisionOption = Precision.float32,
    memory: MemoryOption = None,
    weights: WeightsOption = Weights.attention,
) -> None:
    """Show the encoder self-attention of TEXT: how every source token attends to every other.

    Example:  attnviz encode "the black cat sees the red car" -o enc.png
    """
    view = _view(Kind.encoder, layer, head, scale, window, window_query, window_key, rollout,
                 sink)
    with reporting() as report, _without_cycle_collector():
        maps = _trace(model, text, None, "encoder", seed, device, threads, no_cache, output,
                      cmap, weights, _keep(view, precision), memory)
        _draw(report, maps, view, output or [], cmap, top_k)


def decode(
    text: TextArgument,
    target: TargetOption = None,
    kind: KindOption = Kind.all,
    layer: LayerOption = None,
    head: HeadOption = None,
    model: ModelOption = None,
    output: OutputOption = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
    threads: ThreadsOption = None,
    no_cache: NoCacheOption = False,
    rollout: RolloutOption = False,
    scale: ScaleOption = None,
    window: WindowOption = None,
    window_query: WindowQueryOption = None,
    window_key: WindowKeyOption = None,
    top_k: TopKOption = None,
    sink: SinkOption = Sink.shown,
    precision: PrecisionOption = Precision.float32,
    memory: MemoryOption = None,
    weights: WeightsOption = Weights.attention,
) -> None:
    """Show every kind of attention of TEXT and its target.

    Encoder self-attention, masked decoder self-attention and cross-attention; without
    --target, the model writes the target greedily and prints it. Decoder rows are labelled
    "input → next token": the token the model predicted when it wrote the target, the given
    target's next token with --target. With -o decoding.gif, one frame per decoding step.

    Example:  attnviz decode "the cat sees a car" -t "le chat voit une voiture" -o dec.png
    """
    view = _view(kind, layer, head, scale, window, window_query, window_key, rollout, sink)
    with reporting() as report, _without_cycle_collector():
        maps = _trace(model, text, target, "decoder", seed, device, threads, no_cache, output,
                      cmap, weights, _keep(view, precision), memory)
        written = maps.provenance.target_text if maps.provenance.target_generated else None
        _draw(report, maps, view, output or [], cmap, top_k, written)


def show(
    file: Annotated[Path, typer.Argument(
        metavar="FILE", show_default=False,
        help="Maps saved with -o maps.npz or -o maps.json (by attnviz or another tool with "
             "the same keys).")],
    kind: KindOption = Kind.all,
    layer: LayerOption = None,
    head: HeadOption = None,
    output: OutputOption = None,
    cmap: CmapOption = "viridis",
    rollout: RolloutOption = False,
    scale: ScaleOption = None,
    window: WindowOption = None,
    window_query: WindowQueryOption = None,
    window_key: WindowKeyOption = None,
    top_k: TopKOption = None,
    sink: SinkOption = Sink.shown,
) -> None:
    """Draw attention maps saved before, with the same views as encode and decode.

    Example:  attnviz show maps.npz --kind cross --head 0 -o cross.png
    """
    view = _view(kind, layer, head, scale, window, window_query, window_key, rollout, sink)
    with reporting() as report:
        from attnviz.flow import pipeline
        from attnviz.maps.data import AttentionMaps

        pipeline.check_outputs(output or [], cmap)
        _draw(report, AttentionMaps.load(file), view, output or [], cmap, top_k)


def explain(
    text: TextArgument,
    target: TargetOption = None,
    kind: Annotated[ExplainKind, typer.Option(
        help="encoder: encoder self-attention; self: masked decoder self-attention; cross: "
             "cross-attention.")] = ExplainKind["self"],
    layer: Annotated[Optional[int], typer.Option(
        "--layer", "-l", metavar="N", help="The layer, counting from 0. Default: the last (or "
        "the one the model file recommends).", show_default=False)] = None,
    head: Annotated[int, typer.Option(
        "--head", metavar="INDEX", help="The head to explain, counting from 0.")] = 0,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", metavar="NAME|PATH|hf:NAME", show_default=False,
        help="A shipped model (translate, dates, reverse), 'random', a model file from "
             "attnviz train, hf:NAME_OR_FOLDER for a Hugging Face model, or a .gguf file. "
             "Default: translate.")] = None,
    output: Annotated[Optional[list[Path]], typer.Option(
        "--output", "-o", metavar="FILE", callback=distinct_files,
        help="Write to this file instead of the terminal: .png .svg .pdf (the picture), .npz "
             ".json (queries, keys, values, scores, mask, weights and the tokens), .html (a "
             "page of the head's weights, each cell's score on hover). Repeatable.",
        show_default=False)] = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
) -> None:
    """Show one head's attention step by step: where Q, K and V come from, the scaled
    scores Q Kᵀ / √d_k, the mask M and the weights softmax(Q Kᵀ / √d_k + M), which are the
    model's own.

    Example:  attnviz explain "the cat sees a car" --kind self --layer 1 --head 0 -o ex.png
    """
    with reporting() as report, _without_cycle_collector():
        from attnviz.flow import pipeline

        outputs = output or []
        pipeline.check_explanation_outputs(outputs, cmap)
        request = _request(text, target, None, seed, device, None)
        explanation = pipeline.explain(model, request, SHORT_NAMES[kind.value], layer, head)
        report.tell()
        provenance = explanation.provenance
        written = provenance.target_text if provenance.target_generated else None
        if outputs:
            pipeline.write_explanation(outputs, explanation, cmap)
            for path in outputs:
                say(f"wrote {path}")
        if written is not None:
            typer.echo(printable(written))
        if not outputs:
            from rich.console import Console

            from attnviz.render import explain_terminal

            explain_terminal.show(Console(), explanation, cmap)


def _view(kind: Kind, layer, head, scale, window, window_query, window_key, rollout: bool,
          sink: Sink = Sink.shown):
    """What to draw, in the library's words."""
    from attnviz.flow.pipeline import View

    kinds = None if kind is Kind.all else (SHORT_NAMES[kind.value],)
    return View(kinds, layer, head, None if scale is None else scale.value, window,
                window_query, window_key, rollout, sink.value)


def _keep(view, precision: Precision):
    """What of the maps to keep: the kinds, the layer and the head the view draws (all of
    them for a rollout, which multiplies every layer), in ``precision``."""
    from attnviz.flow.pipeline import keep_of

    return keep_of(view, precision.value)


def _request(text: str, target: Optional[str], part: Optional[str], seed: int, device: Device,
             threads: Optional[int], weights: Weights = Weights.attention, keep=None,
             memory: Optional[float] = None):
    from attnviz.sources import Request

    more = {} if keep is None else {"keep": keep}
    return Request(_argument(text, "the text"),
                   None if target is None else _argument(target, "--target"), part, seed,
                   device.value, threads, weights.value, memory=memory, **more)


def _trace(model: Optional[str], text: str, target: Optional[str], part: str, seed: int,
           device: Device, threads: Optional[int], no_cache: bool,
           outputs: Optional[list[Path]], cmap: str, weights: Weights, keep=None,
           memory: Optional[float] = None):
    """The maps of the request, once the outputs proved writable."""
    from attnviz.flow import pipeline

    request = _request(text, target, part, seed, device, threads, weights, keep, memory)
    pipeline.check_outputs(outputs or [], cmap)
    return pipeline.trace(model, request, cache=not no_cache)


def _draw(report: Report, maps, view, outputs: list[Path], cmap: str, top_k: Optional[int],
          written: Optional[str] = None) -> None:
    """Draw the chosen maps to every output file, and to the terminal when there is none
    (or, with --top-k, list each query's strongest keys on stdout).

    ``written``, the text the model wrote, goes to stdout once the files are written (a
    failed command prints no result), or above the terminal's drawing.
    """
    from attnviz.flow import pipeline

    plan = pipeline.plan(maps, view)
    report.tell()
    if outputs:
        pipeline.write(outputs, maps, plan, cmap)
        for path in outputs:
            say(f"wrote {path}")
    if written is not None:
        typer.echo(printable(written))
    if top_k is not None:
        from attnviz.cli.text import top_k_text

        typer.echo(top_k_text(plan, top_k), nl=False)
        return
    if outputs:
        return
    from rich.console import Console

    from attnviz.render import terminal

    terminal.show(Console(), plan, cmap)


def _argument(value: str, what: str) -> str:
    """A text from the command line; bytes that were not UTF-8 become U+FFFD, and say so."""
    repaired = valid_utf8(value)
    if repaired != value:
        warnings.warn(f"{what} holds bytes that are not UTF-8; they are shown as \ufffd",
                      AttnvizWarning, stacklevel=2)
    return repaired


@contextmanager
def _without_cycle_collector() -> Iterator[None]:
    """One forward pass and a drawing: tensors and figures are freed by reference counting,
    and the cycle collector would only walk the million objects that torch and matplotlib
    create at import (a tenth of a second, for nothing). Restored afterwards."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
