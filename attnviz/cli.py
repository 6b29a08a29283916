"""The ``attnviz`` command: parses options, calls the library, reports. No logic of its own.

torch and matplotlib are imported inside the commands that use them, so ``--help`` is fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from attnviz import exits
from attnviz.config import MAX_SEED, VALIDATION_SHARE, ModelConfig, TrainOptions
from attnviz.errors import AttnvizError
from attnviz.kinds import SHORT_NAMES
from attnviz.runtime import MAX_THREADS
from attnviz.text import printable, valid_utf8
from attnviz.version import __version__

app = typer.Typer(
    name="attnviz",
    help="See the attention inside an encoder-decoder transformer: encoder self-attention, "
         "masked decoder self-attention and cross-attention, as heatmaps in the terminal or "
         "as PNG, SVG and PDF images, as pages to explore (html), or as raw numbers (npz, "
         "json).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# --kind: the kinds' short names (encoder, self, cross), and "all" where every kind is drawn.
Kind = Enum("Kind", {**{name: name for name in SHORT_NAMES}, "all": "all"}, type=str)
ExplainKind = Enum("ExplainKind", {name: name for name in SHORT_NAMES}, type=str)

# The library's names of settings, as the command line spells them.
FLAGS = {"layer": "--layer", "head": "--head", "kind": "--kind", "target": "--target",
         "device": "--device", "task": "--task", "model": "--model", "seed": "--seed",
         "data": "--data", "examples": "--examples", "steps": "--steps", "epochs": "--epochs",
         "learning_rate": "--lr", "batch_size": "--batch-size", "width": "--width",
         "heads": "--heads", "layers": "--layers", "validation_share": "--val-split",
         "max_length": "--max-length", "tokenizer": "--tokenizer", "threads": "--threads",
         "encode": "attnviz encode", "decode": "attnviz decode", "output": "-o",
         "scale": "--scale", "window": "--window", "window_query": "--window-query",
         "window_key": "--window-key", "top_k": "--top-k",
         "jobs": "--jobs"}


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class Scale(str, Enum):
    panel = "panel"
    shared = "shared"
    unit = "unit"
    row = "row"


def _parse_head(value: str):
    """``--head``: an index, None for 'mean', or 'all'."""
    if value == "mean":
        return None
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a head: give an index (0, 1, ...), "
                                 "'mean' or 'all'") from None


def _parse_layer(value: str):
    """``--layer``: an index, or 'all'."""
    if value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a layer: give an index (0, 1, ...) or "
                                 "'all'") from None


TextArgument = Annotated[str, typer.Argument(metavar="TEXT", show_default=False,
                                             help="The source sentence, in quotes.")]
ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="NAME|PATH|hf:NAME", show_default=False,
    help="A shipped model (translate, dates, reverse; see `attnviz models`), 'random' "
         "(random weights, vocabulary from your sentences), a model file, maps saved "
         "before (.npz, .json), or hf:NAME_OR_FOLDER for a Hugging Face model (needs "
         "the hf extra: pip install 'attnviz\\[hf]'). Default: translate.")]
LayerOption = Annotated[Optional[str], typer.Option(
    "--layer", "-l", parser=_parse_layer, metavar="N|all",
    help="Layer to show, counting from 0, or 'all' for every layer (a row each). Default: the "
         "last (or the one the model file recommends).", show_default=False)]
HeadOption = Annotated[Optional[str], typer.Option(
    "--head", parser=_parse_head, metavar="INDEX|mean|all",
    help="Head to show, counting from 0, 'mean' for the average over heads, or 'all' for "
         "every head and their mean (a column each). Default: mean.", show_default=False)]
ScaleOption = Annotated[Optional[Scale], typer.Option(
    help="Colours: panel = each panel from 0 to its largest weight; shared = one maximum for "
         "every panel of the figure (on a page: for every layer and head of the kind shown, "
         "means included); unit = 0 to 1; row = each row to its largest weight (for long maps "
         "whose first rows dominate). Default: shared when there are several panels.",
    show_default=False)]
WindowOption = Annotated[Optional[str], typer.Option(
    metavar="A:B", help="Show positions A to B-1 (counting from 0, as a Python slice; '100:' "
                        "runs to the end) of the queries and the keys of a long text.",
    show_default=False)]
WindowQueryOption = Annotated[Optional[str], typer.Option(
    "--window-query", metavar="A:B", help="Positions of the queries (rows) alone.",
    show_default=False)]
WindowKeyOption = Annotated[Optional[str], typer.Option(
    "--window-key", metavar="A:B", help="Positions of the keys (columns) alone.",
    show_default=False)]
TopKOption = Annotated[Optional[int], typer.Option(
    "--top-k", metavar="N", min=1,
    help="Print, for each query, its N strongest keys with their weights, as plain text on "
         "stdout (instead of the terminal heatmap; files given with -o are written too).",
    show_default=False)]


def _distinct_files(paths: Optional[list[Path]]) -> Optional[list[Path]]:
    """The output files, each once: `-o view.png -o ./view.png` names one file, to be written
    and reported once (as the person first spelled it)."""
    import os

    if not paths:
        return paths
    seen, distinct = set(), []
    for path in paths:
        try:
            key = os.path.realpath(path)
        except (OSError, ValueError):  # a name the system refuses: checked, and said, later
            key = str(path)
        if key not in seen:
            seen.add(key)
            distinct.append(path)
    return distinct


OutputOption = Annotated[Optional[list[Path]], typer.Option(
    "--output", "-o", metavar="FILE", callback=_distinct_files,
    help="Write to this file instead of the terminal; the suffix picks the format: .png .svg "
         ".pdf (heatmap), .gif (decoding, one frame per step), .npz .json (all the numbers), "
         ".html (a page to explore every map, offline). Repeatable.", show_default=False)]
SeedOption = Annotated[int, typer.Option(help="Seed of the random model's weights.", min=0,
                                         max=MAX_SEED)]
DeviceParam = Annotated[Device, typer.Option(help="Where the model runs; auto = cuda if "
                                                   "present.")]
CmapOption = Annotated[str, typer.Option(help="Colour map of images and terminal "
                                              "(any matplotlib name).")]
ThreadsOption = Annotated[Optional[int], typer.Option(
    metavar="N", min=1, max=MAX_THREADS, show_default=False,
    help="CPU threads for torch. Default: 1 (torch's own count when OMP_NUM_THREADS or "
         "MKL_NUM_THREADS is set): as fast beside a busy process as on an idle machine. More "
         "can be faster on an idle machine, and slower beside a busy one.")]
NoCacheOption = Annotated[bool, typer.Option(
    "--no-cache", help="Compute the maps again instead of reading them from the cache, and do "
                       "not keep them.")]
KindOption = Annotated[Kind, typer.Option(
    help="encoder: encoder self-attention; self: masked decoder self-attention; cross: "
         "cross-attention; all: every kind there is.")]
RolloutOption = Annotated[bool, typer.Option(
    "--rollout", help="Draw the attention rollout of the encoder (Abnar and Zuidema, 2020) "
    "instead of its maps: per layer l, the product through layers 0..l of 0.5 x (mean over "
    "heads) + 0.5 x I, rows renormalised. It follows how attention mixes the tokens' "
    "identities through the layers, assuming the residual connection carries half; it is "
    "not an explanation of the prediction (it ignores values, feed-forward layers and "
    "norms). Every layer, or --layer's; -o x.npz adds encoder_rollout [L, S, S].")]


@dataclass(frozen=True)
class ViewOptions:
    """What encode, decode and show draw, as the options give it (the library's words)."""

    layer: object = None  # an index, "all", or None for the default layer
    head: object = None  # an index, "all", or None for the mean
    scale: Optional[Scale] = None
    window: Optional[str] = None
    window_query: Optional[str] = None
    window_key: Optional[str] = None
    top_k: Optional[int] = None
    rollout: bool = False  # the encoder's attention rollout instead of its maps


_PENDING: list[str] = []  # warnings of the running command, not yet told
_TOLD: set[str] = set()


def _tell_warnings() -> None:
    """Say each warning kept so far, once per command."""
    for message in _PENDING:
        if message not in _TOLD:
            _TOLD.add(message)
            _say(f"warning: {message}")
    _PENDING.clear()


@contextmanager
def reporting() -> Iterator[None]:
    """The one place that turns how a command ended into at most one line on stderr and an
    exit code (the codes are listed in :mod:`attnviz.exits`), and the library's warnings
    into one line each.

    Warnings wait until :func:`_tell_warnings` (a command calls it once its options proved
    good) or the command's end: a command that fails says one line, its error.
    """
    import warnings

    from attnviz.errors import AttnvizWarning

    shown_before = warnings.showwarning
    _PENDING.clear()
    _TOLD.clear()

    def keep(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, AttnvizWarning):
            shown_before(message, category, filename, lineno, file, line)
        elif str(message) not in _PENDING:
            _PENDING.append(str(message))

    with warnings.catch_warnings():
        warnings.simplefilter("always", AttnvizWarning)
        warnings.showwarning = keep
        try:
            yield
            _tell_warnings()
            if sys.stdout is not None:
                sys.stdout.flush()  # a full disk or a closed pipe behind stdout shows here
        except AttnvizError as exc:
            _say(f"error: {exc.worded(FLAGS)}")
            raise typer.Exit(exits.ERROR) from None
        except SystemExit as exc:
            if exits.output_closed(exc):  # rich's Console ends so on a closed pipe
                raise typer.Exit(exits.OK) from None
            raise
        except BaseException as exc:  # every other ending gets its one line
            if type(exc).__module__.partition(".")[0] in ("typer", "click"):
                raise  # typer's own endings (Exit, BadParameter) carry their code and message
            raise typer.Exit(exits.exit_code(exc)) from None


@app.command()
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
) -> None:
    """Show the encoder self-attention of TEXT: how every source token attends to every other.

    Example:  attnviz encode "the black cat sees the red car" -o enc.png
    """
    view = ViewOptions(layer, head, scale, window, window_query, window_key, top_k, rollout)
    with reporting(), _without_cycle_collector():
        request = _request(text, None, "encoder", seed, device, threads)
        maps = _trace(model, request, no_cache, output, cmap)
        _draw(maps, ["encoder_self"], view, output or [], cmap)


@app.command()
def decode(
    text: TextArgument,
    target: Annotated[Optional[str], typer.Option(
        "--target", "-t", metavar="TEXT",
        help="The target sentence. Without it, the model writes one greedily and prints it.",
        show_default=False)] = None,
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
) -> None:
    """Show every kind of attention of TEXT and its target.

    Encoder self-attention, masked decoder self-attention and cross-attention; without
    --target, the model writes the target greedily and prints it. Decoder rows are labelled
    "input → next token": the token the model predicted when it wrote the target, the given
    target's next token with --target. With -o decoding.gif, one frame per decoding step.

    Example:  attnviz decode "the cat sees a car" -t "le chat voit une voiture" -o dec.png
    """
    view = ViewOptions(layer, head, scale, window, window_query, window_key, top_k, rollout)
    with reporting(), _without_cycle_collector():
        request = _request(text, target, "decoder", seed, device, threads)
        maps = _trace(model, request, no_cache, output, cmap)
        written = maps.provenance.target_text if maps.provenance.target_generated else None
        _draw(maps, _kinds(kind), view, output or [], cmap, written)


@app.command()
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
) -> None:
    """Draw attention maps saved before, with the same views as encode and decode.

    Example:  attnviz show maps.npz --kind cross --head 0 -o cross.png
    """
    view = ViewOptions(layer, head, scale, window, window_query, window_key, top_k, rollout)
    with reporting():
        from attnviz import render
        from attnviz.maps import AttentionMaps

        render.check_outputs(output or [], cmap)
        _draw(AttentionMaps.load(file), _kinds(kind), view, output or [], cmap)


@app.command(short_help="One head's attention step by step: Q, K, V, the scaled scores, "
                        "the mask and the weights.")
def explain(
    text: TextArgument,
    target: Annotated[Optional[str], typer.Option(
        "--target", "-t", metavar="TEXT",
        help="The target sentence. Without it, the model writes one greedily and prints it.",
        show_default=False)] = None,
    kind: Annotated[ExplainKind, typer.Option(
        help="encoder: encoder self-attention; self: masked decoder self-attention; cross: "
             "cross-attention.")] = ExplainKind["self"],
    layer: Annotated[Optional[int], typer.Option(
        "--layer", "-l", metavar="N", help="The layer, counting from 0. Default: the last (or "
        "the one the model file recommends).", show_default=False)] = None,
    head: Annotated[int, typer.Option(
        "--head", metavar="INDEX", help="The head to explain, counting from 0.")] = 0,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", metavar="NAME|PATH", show_default=False,
        help="A shipped model (translate, dates, reverse), 'random', or a model file from "
             "attnviz train. Default: translate.")] = None,
    output: Annotated[Optional[list[Path]], typer.Option(
        "--output", "-o", metavar="FILE", callback=_distinct_files,
        help="Write to this file instead of the terminal: .png .svg .pdf (the picture), .npz "
             ".json (queries, keys, values, scores, mask, weights and the tokens). "
             "Repeatable.", show_default=False)] = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
) -> None:
    """Show one head's attention step by step: where Q, K and V come from, the scaled
    scores Q Kᵀ / √d_k, the mask M and the weights softmax(Q Kᵀ / √d_k + M), which are the
    model's own.

    Example:  attnviz explain "the cat sees a car" --kind self --layer 1 --head 0 -o ex.png
    """
    with reporting(), _without_cycle_collector():
        from attnviz import api, render

        outputs = output or []
        render.check_explanation_outputs(outputs, cmap)
        explanation = api.explain(_argument(text, "the text"),
                                  None if target is None else _argument(target, "--target"),
                                  model, kind=kind.value, layer=layer, head=head, seed=seed,
                                  device=device.value)
        _tell_warnings()
        provenance = explanation.provenance
        written = provenance.target_text if provenance.target_generated else None
        if outputs:
            render.write_explanation(outputs, explanation, cmap)
            for path in outputs:
                _say(f"wrote {path}")
        if written is not None:
            typer.echo(printable(written))
        if not outputs:
            from rich.console import Console

            from attnviz.render import explain_terminal

            explain_terminal.show(Console(), explanation, cmap)


class ExportFormat(str, Enum):
    png = "png"
    svg = "svg"
    pdf = "pdf"
    npz = "npz"
    json = "json"
    html = "html"


@app.command(short_help="Draw every pair of a file to its own files, with an index.html.")
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
        "CPU thread.")] = 1,
    model: ModelOption = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
    no_cache: NoCacheOption = False,
) -> None:
    """Draw the attention of every pair of a file, each to its own files, and an index.html
    that lists them. Interrupted, it keeps every file finished; run again, it skips them.

    Example:  attnviz export pairs.tsv --out-dir maps --format png --format html --jobs 2
    """
    with reporting():
        from rich.console import Console

        from attnviz import export as exporting
        from attnviz.render.report import export_progress

        settings = exporting.Settings(
            out_dir=out_dir, formats=tuple(f.value for f in formats or [ExportFormat.png]),
            model=model, cmap=cmap, seed=seed, device=device.value, use_cache=not no_cache,
            pairs_name=printable(str(pairs)))
        lines = exporting.read_lines(pairs)
        exporting.prepare(settings)
        _tell_warnings()
        reached = []  # the outcomes reported, as the bar counts them
        try:
            # One job forks no worker: the bar may tick on its own thread as lines take long.
            with export_progress(Console(stderr=True), len(lines), ticking=jobs == 1) as report:
                summary = exporting.run(settings, lines, jobs, lambda outcome: (
                    reached.append(outcome), report(outcome)))
        except KeyboardInterrupt:
            done = sum(bool(outcome.files) for outcome in reached)  # as the index counts
            _say(f"stopped: {done} of {len(lines)} pairs done, listed in "
                 f"{out_dir / exporting.INDEX}; run the same command again to finish")
            raise
        _report_export(summary, out_dir / exporting.INDEX)


EXPORT_NOTES_SHOWN = 10  # warnings named one by one; the rest are counted


def _report_export(summary, index: Path) -> None:
    """Each failed line and the first warnings, one line each, then the index; an error
    (exit 1) when a line failed."""
    from attnviz.export import line_numbers

    by_line = sorted(summary.outcomes, key=lambda outcome: outcome.line.number)
    said: dict[str, list[int]] = {}  # each warning once, with the lines that gave it
    for outcome in by_line:
        if not outcome.skipped:
            for note in outcome.warnings:
                said.setdefault(note, []).append(outcome.line.number)
    notes = [f"{line_numbers(numbers)}: {note}" for note, numbers in said.items()]
    for note in notes[:EXPORT_NOTES_SHOWN]:
        _say(f"warning: {note}")
    if len(notes) > EXPORT_NOTES_SHOWN:
        _say(f"warning: and {len(notes) - EXPORT_NOTES_SHOWN} more warnings, listed in {index}")
    for outcome in by_line:
        if outcome.error:
            _say(f"error: {outcome.error}")
    drawn = len(summary.outcomes) - summary.skipped - len(summary.failed)
    _say(f"wrote {index}: {drawn} pairs drawn, {summary.skipped} done before"
         + (f", {len(summary.failed)} failed" if summary.failed else ""))
    if summary.failed:
        failed, total = len(summary.failed), len(summary.outcomes)
        raise AttnvizError(f"{failed} of {total} pairs could not be drawn (listed above)"
                           + ("; the others are written" if failed < total else ""))


def _kinds(kind: Kind) -> Optional[list[str]]:
    """The library's kinds for ``--kind``; None means every kind the maps hold."""
    return None if kind is Kind.all else [SHORT_NAMES[kind.value]]


def _request(text: str, target: Optional[str], part: str, seed: int, device: Device,
             threads: Optional[int]):
    from attnviz.sources import Request

    return Request(_argument(text, "the text"),
                   None if target is None else _argument(target, "--target"), part, seed,
                   device.value, threads)


def _argument(value: str, what: str) -> str:
    """A text from the command line; bytes that were not UTF-8 become U+FFFD, and say so."""
    repaired = valid_utf8(value)
    if repaired != value:
        import warnings

        from attnviz.errors import AttnvizWarning

        warnings.warn(f"{what} holds bytes that are not UTF-8; they are shown as \ufffd",
                      AttnvizWarning, stacklevel=2)
    return repaired


def _trace(model: Optional[str], request, no_cache: bool, outputs: Optional[list[Path]],
           cmap: str):
    """The maps of ``request`` by ``model``, after checking that the outputs can be written."""
    import warnings

    from attnviz import cache, render
    from attnviz.errors import AttnvizWarning
    from attnviz.sources import open_source

    render.check_outputs(outputs or [], cmap)
    trace = cache.traced(open_source(model), request, use_cache=not no_cache)
    for note in trace.warnings:
        warnings.warn(note, AttnvizWarning, stacklevel=1)
    return trace.maps


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


def _draw(maps, kinds: Optional[list[str]], view: ViewOptions, outputs: list[Path], cmap: str,
          written: Optional[str] = None) -> None:
    """Draw the chosen maps to every output file, and to the terminal when there is none
    (or, with --top-k, list each query's strongest keys on stdout).

    ``written``, the text the model wrote, goes to stdout once the files are written (a
    failed command prints no result), or above the terminal's drawing. ``view.rollout``
    draws the encoder's attention rollout instead, and data files get it beside the maps.
    """
    from attnviz import render, views

    scale = None if view.scale is None else view.scale.value
    extra = None
    if view.rollout:
        from attnviz import attention_rollout

        rolled = attention_rollout.rollout_heatmaps(
            maps, None if view.layer == "all" else view.layer, view.head, kinds)
        plan = views.arrange(rolled, scale, view.window, view.window_query, view.window_key)
        extra = {attention_rollout.KEY: attention_rollout.rollout(maps)}
    else:
        plan = views.plan(maps, kinds, view.layer, view.head, scale, view.window,
                          view.window_query, view.window_key)
    _tell_warnings()
    if outputs:
        render.write_outputs(outputs, maps, plan, cmap, extra, page_scale=scale)
        for path in outputs:
            _say(f"wrote {path}")
    if written is not None:
        typer.echo(printable(written))
    if view.top_k is not None:
        from attnviz.render.listing import top_k_text

        typer.echo(top_k_text(plan, view.top_k), nl=False)
        return
    if outputs:
        return
    from rich.console import Console

    from attnviz.render import terminal

    terminal.show(Console(), plan, cmap)


class TokenizerKind(str, Enum):
    word = "word"
    char = "char"


@app.command()
def train(
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="FILE", help="Where to write the model (.safetensors).",
        show_default=False)],
    task: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Train on a built-in task: translate, dates or reverse.",
        show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Option(
        metavar="PAIRS.TSV", help="Train on your own pairs: one source<TAB>target a line, "
                                  "UTF-8.", show_default=False)] = None,
    tokenizer: Annotated[TokenizerKind, typer.Option(
        help="How --data text is split into tokens.")] = TokenizerKind.word,
    layers: Annotated[int, typer.Option(help="Encoder blocks, and decoder blocks.")
                      ] = ModelConfig.n_encoder_layers,
    heads: Annotated[int, typer.Option(help="Attention heads per layer.")] = ModelConfig.n_heads,
    width: Annotated[int, typer.Option(help="Model width (d_model).")] = ModelConfig.d_model,
    steps: Annotated[Optional[int], typer.Option(
        help=f"Optimizer steps, at most. Default: {TrainOptions.steps}, or what --epochs gives.",
        show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(
        help="Passes over the --data pairs (instead of --steps).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Pairs per step.")] = TrainOptions.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")
                  ] = TrainOptions.learning_rate,
    seed: Annotated[int, typer.Option(help="Seed of weights and data order.", min=0,
                                      max=MAX_SEED)] = 0,
    val_split: Annotated[float, typer.Option(
        help="Share of --data pairs kept for validation.")] = VALIDATION_SHARE,
    max_length: Annotated[int, typer.Option(
        help="Longest --data target, in tokens.")] = ModelConfig.max_target_length,
    device: DeviceParam = Device.cpu,
    threads: Annotated[Optional[int], typer.Option(
        metavar="N", min=1, max=MAX_THREADS, show_default=False,
        help="CPU threads for torch. Default: 1 (or what OMP_NUM_THREADS or MKL_NUM_THREADS "
             "say): as fast beside a busy process as on an idle machine, and the same file "
             "from the same command. More train a wide model (--width 128 and up) up to 1.8x "
             "faster on an idle machine, but slower beside a busy one, and may change the "
             "file's last bits.")
    ] = None,
) -> None:
    """Train a model on a built-in task or on your own sentence pairs, and save it.

    Example:  attnviz train --task translate -o translate.safetensors
    """
    with reporting():
        from attnviz import interrupt
        from attnviz.checkpoint import save_checkpoint
        from attnviz.modelfile import check_model_path
        from attnviz.render.report import interruption_text, training_progress, training_summary
        from attnviz.train import loop as training

        check_model_path(output)
        plan = training.plan(task=task, data=data, tokenizer=tokenizer.value, layers=layers,
                             heads=heads, width=width, steps=steps, epochs=epochs,
                             batch_size=batch_size, learning_rate=lr, seed=seed,
                             validation_share=val_split, max_length=max_length,
                             device=device.value, threads=threads)
        from rich.console import Console

        with training_progress(Console(stderr=True), plan.options.steps) as report:
            result = training.run(plan, report)
        with interrupt.held():  # a second Ctrl-C must not lose the model the first one kept
            save_checkpoint(result.checkpoint, output)
        if result.interrupted:
            _say(interruption_text(result))
        typer.echo(training_summary(result, output))
        if result.interruption is not None:
            raise result.interruption  # saved: now end as an interrupted command (130, 143)


@app.command(name="eval")
def eval_(
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME|PATH",
                                       help="A shipped model's name or a model file.")],
    task: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Measure on the task's held-out test set.", show_default=False)
    ] = None,
    data: Annotated[Optional[Path], typer.Option(
        metavar="PAIRS.TSV", help="Measure on these pairs.", show_default=False)] = None,
    examples: Annotated[Optional[int], typer.Option(
        help="Size of the --task test set. Default: 1000.", show_default=False)] = None,
    device: DeviceParam = Device.cpu,
    threads: ThreadsOption = None,
) -> None:
    """Measure a model: exact match, token accuracy, and where cross-attention looks.

    Cross-attention alignment is measured for the tasks that know it: translate, reverse.

    Example:  attnviz eval --model translate --task translate
    """
    with reporting():
        from attnviz.render.report import metrics_text
        from attnviz.train.evaluate import measure

        metrics = measure(model, task=task, data=data, examples=examples, device=device.value,
                          threads=threads)
        typer.echo(metrics_text(metrics))


@app.command(short_help="The shipped models and their measured accuracy; or one model's "
                        "vocabulary.")
def models(
    name: Annotated[Optional[str], typer.Argument(
        metavar="[NAME|PATH]", show_default=False,
        help="A shipped model or a model file, to list its vocabulary with --vocab.")] = None,
    vocab: Annotated[bool, typer.Option(
        "--vocab", help="List the model's source and target vocabulary: the tokens it knows "
                        "(any other is read as <unk>).")] = False,
) -> None:
    """List the models shipped with attnviz: task, sizes and measured accuracy; or the
    vocabulary of one model.

    Example:  attnviz models translate --vocab
    """
    with reporting():
        from rich.console import Console

        if vocab or name is not None:
            from attnviz.catalog import vocabulary
            from attnviz.render.report import vocabulary_text

            if name is None:
                raise AttnvizError("--vocab lists the vocabulary of one model: name it, for "
                                   "example `attnviz models translate --vocab`")
            if not vocab:
                import shlex  # the command to run next, as a shell takes it: 'my model.st'

                raise AttnvizError("the list of models takes no name; to list a model's "
                                   "vocabulary, add --vocab: attnviz models "
                                   f"{printable(shlex.quote(name))} --vocab")
            typer.echo(vocabulary_text(vocabulary(name), Console().width), nl=False)
            return
        from attnviz.catalog import describe
        from attnviz.render.report import models_table

        Console().print(models_table(describe()))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"attnviz {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """See the attention inside an encoder-decoder transformer."""


def _say(message: str) -> None:
    """A message for the person at the terminal: one line on stderr, so stdout stays clean.
    Whatever it quotes (paths, texts, tokens) is made printable, once, by :func:`exits.say`."""
    exits.say(message)


def main() -> None:
    """Entry point of the ``attnviz`` console script and of ``python -m attnviz``: the CLI as
    a process, with SIGTERM handled like Ctrl-C and standard output watched."""
    import os

    if not os.environ.get("COLUMNS", "1").strip().isdigit() or \
            int(os.environ.get("COLUMNS", "1")) < 1:
        del os.environ["COLUMNS"]  # 0 or not a number: let the terminal say its width
    exits.run(lambda: app(prog_name="attnviz"))


if __name__ == "__main__":
    main()
