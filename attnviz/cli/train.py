"""The commands of attnviz's own models: ``train``, ``eval`` and ``models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from attnviz.cli.exits import say
from attnviz.cli.options import Device, DeviceParam, ThreadsOption, TokenizerKind
from attnviz.cli.reporting import reporting
from attnviz.errors import AttnvizError
from attnviz.io.text import printable
from attnviz.model.config import MAX_SEED, ModelConfig
from attnviz.model.runtime import MAX_THREADS
from attnviz.train.options import PATIENCE, VALIDATION_SHARE, TrainOptions


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
    no_early_stop: Annotated[bool, typer.Option(
        "--no-early-stop", help="Train every step of --steps. Default: stop once validation "
        f"exact match is 100% at {PATIENCE} validations in a row (and say so).")] = False,
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
        from attnviz.cli.text import (
            early_stop_text,
            interruption_text,
            training_progress,
            training_summary,
        )
        from attnviz.io import signals
        from attnviz.model.checkpoint import save_checkpoint
        from attnviz.model.modelfile import check_model_path
        from attnviz.train import loop as training

        check_model_path(output)
        plan = training.plan(task=task, data=data, tokenizer=tokenizer.value, layers=layers,
                             heads=heads, width=width, steps=steps, epochs=epochs,
                             batch_size=batch_size, learning_rate=lr, seed=seed,
                             validation_share=val_split, max_length=max_length,
                             device=device.value, threads=threads,
                             early_stop=not no_early_stop)
        from rich.console import Console

        with training_progress(Console(stderr=True), plan.options.steps) as report:
            result = training.run(plan, report)
        with signals.held():  # a second Ctrl-C must not lose the model the first one kept
            save_checkpoint(result.checkpoint, output)
        if result.interrupted:
            say(interruption_text(result))
        elif result.stopped_early:
            say(early_stop_text(result))
        typer.echo(training_summary(result, output))
        if result.interruption is not None:
            raise result.interruption  # saved: now end as an interrupted command (130, 143)


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
        from attnviz.cli.text import metrics_text
        from attnviz.train.evaluate import measure

        metrics = measure(model, task=task, data=data, examples=examples, device=device.value,
                          threads=threads)
        typer.echo(metrics_text(metrics))


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
            from attnviz.cli.text import vocabulary_text
            from attnviz.model.catalog import vocabulary

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
        from attnviz.cli.text import models_table
        from attnviz.model.catalog import describe

        Console().print(models_table(describe()))
