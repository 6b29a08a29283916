"""The ``attnviz`` command: parses options, calls the library, reports. No logic of its own.

torch and matplotlib are imported inside the commands that use them, so ``--help`` is fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from attnviz import __version__
from attnviz.config import VALIDATION_SHARE, ModelConfig, TrainOptions
from attnviz.errors import AttnvizError
from attnviz.runtime import MAX_THREADS

app = typer.Typer(
    name="attnviz",
    help="See the attention inside an encoder-decoder transformer: encoder self-attention, "
         "masked decoder self-attention and cross-attention, as heatmaps in the terminal or "
         "as PNG, SVG and PDF images, or as raw numbers (npz, json).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Kind(str, Enum):
    self_ = "self"
    cross = "cross"
    all = "all"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


def _parse_head(value: str) -> Optional[int]:
    if value == "mean":
        return None
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a head: give an index (0, 1, ...) or 'mean'"
                                 ) from None


TextArgument = Annotated[str, typer.Argument(metavar="TEXT", show_default=False,
                                             help="The source sentence, in quotes.")]
ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="NAME|PATH", show_default=False,
    help="A shipped model (translate, dates, reverse; see `attnviz models`), 'random' "
         "(random weights, vocabulary from your sentences), or a model file. "
         "Default: translate.")]
LayerOption = Annotated[Optional[int], typer.Option(
    "--layer", "-l", metavar="N", help="Layer to show, counting from 0. Default: the last "
    "(or the one the model file recommends).", show_default=False)]
HeadOption = Annotated[Optional[int], typer.Option(
    "--head", parser=_parse_head, metavar="INDEX|mean",
    help="Head to show, counting from 0, or 'mean' for the average over heads. "
         "Default: mean.", show_default=False)]
OutputOption = Annotated[Optional[list[Path]], typer.Option(
    "--output", "-o", metavar="FILE",
    help="Write to this file instead of the terminal; the suffix picks the format: .png .svg "
         ".pdf (heatmap), .npz .json (all the numbers). Repeatable.", show_default=False)]
SeedOption = Annotated[int, typer.Option(help="Seed of the random model's weights.", min=0,
                                         max=2**63 - 1)]
DeviceParam = Annotated[Device, typer.Option(help="Where the model runs; auto = cuda if "
                                                   "present.")]
CmapOption = Annotated[str, typer.Option(help="Colour map of images and terminal "
                                              "(any matplotlib name).")]
NoCacheOption = Annotated[bool, typer.Option(
    "--no-cache", help="Compute the maps again instead of reading them from the cache, and do "
                       "not keep them.")]


@contextmanager
def reporting() -> Iterator[None]:
    """The one place that turns a person's mistake into a one-line message and an exit code."""
    try:
        yield
    except AttnvizError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _say("interrupted")
        raise typer.Exit(130) from None


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
    no_cache: NoCacheOption = False,
) -> None:
    """Show the encoder self-attention of TEXT: how every source token attends to every other.

    Example:  attnviz encode "the black cat sees the red car" -o enc.png
    """
    with reporting(), _without_cycle_collector():
        _show("encode", text, None, ["encoder_self"], layer, head, model, output or [], cmap,
              seed, device, no_cache)


@app.command()
def decode(
    text: TextArgument,
    target: Annotated[Optional[str], typer.Option(
        "--target", "-t", metavar="TEXT",
        help="The target sentence. Without it, the model writes one greedily and prints it.",
        show_default=False)] = None,
    kind: Annotated[Kind, typer.Option(
        help="self: masked decoder self-attention; cross: cross-attention; all: both.")
    ] = Kind.all,
    layer: LayerOption = None,
    head: HeadOption = None,
    model: ModelOption = None,
    output: OutputOption = None,
    cmap: CmapOption = "viridis",
    seed: SeedOption = 0,
    device: DeviceParam = Device.cpu,
    no_cache: NoCacheOption = False,
) -> None:
    """Show the decoder's attention: masked self-attention and cross-attention to TEXT.

    Example:  attnviz decode "the cat sees a car" -t "le chat voit une voiture" -o dec.png
    """
    kinds = {Kind.self_: ["decoder_self"], Kind.cross: ["cross"],
             Kind.all: ["decoder_self", "cross"]}[kind]
    with reporting(), _without_cycle_collector():
        _show("decode", text, target, kinds, layer, head, model, output or [], cmap, seed,
              device, no_cache)


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


def _show(command: str, text: str, target: Optional[str], kinds: list[str],
          layer: Optional[int], head: Optional[int], model: Optional[str], outputs: list[Path],
          cmap: str, seed: int, device: Device, no_cache: bool) -> None:
    from attnviz import cache, render
    from attnviz.request import Request

    render.check_outputs(outputs, cmap)
    request = Request(command, text, target, model, seed, device.value)
    result = cache.run(request, use_cache=not no_cache)
    for warning in result.warnings:
        _say(f"warning: {warning}")
    heatmaps = result.heatmaps(kinds, layer, head)
    if outputs:
        render.write_outputs(outputs, result.maps, heatmaps, cmap)
        for path in outputs:
            _say(f"wrote {path}")
    if result.generated:
        typer.echo(result.generated)
    if not outputs:
        from rich.console import Console

        from attnviz.render import terminal

        terminal.show(Console(), heatmaps, cmap)


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
                                      max=2**63 - 1)] = 0,
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
        from attnviz.checkpoint import save_checkpoint
        from attnviz.modelfile import check_model_path
        from attnviz.render.report import training_progress, training_summary
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
        save_checkpoint(result.checkpoint, output)
        if result.interrupted:
            _say(f"interrupted at step {result.steps_done}: saved the best model so far "
                 f"(from step {result.best_step})")
        typer.echo(training_summary(result, output))


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
    threads: Annotated[Optional[int], typer.Option(
        metavar="N", min=1, max=MAX_THREADS, show_default=False,
        help="CPU threads for torch. Default: 1 (or what OMP_NUM_THREADS or MKL_NUM_THREADS "
             "say): as fast beside a busy process as on an idle machine. More can be faster "
             "on an idle machine, and slower beside a busy one.")
    ] = None,
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


@app.command()
def models() -> None:
    """List the models shipped with attnviz: task, sizes and measured accuracy.

    Example:  attnviz models
    """
    with reporting():
        from rich.console import Console

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
    """A message for the person at the terminal: one line on stderr, so stdout stays clean."""
    typer.echo(message, err=True)


def main() -> None:
    """Entry point of the ``attnviz`` console script and of ``python -m attnviz``."""
    app(prog_name="attnviz")


if __name__ == "__main__":
    sys.exit(main())
