"""The ``attnviz`` command: its commands, each a function of its own module, on one Typer app.

A command parses its options, calls the library (:mod:`attnviz.flow.pipeline` for pictures),
and reports; it owns no logic of its own. torch and matplotlib are imported inside the
commands that use them, so ``--help`` is fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from attnviz.cli import draw, exits, export, heads, train
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

app.command()(draw.encode)
app.command()(draw.decode)
app.command()(draw.show)
app.command(short_help="One head's attention step by step: Q, K, V, the scaled scores, the "
                       "mask and the weights.")(draw.explain)
app.command(short_help="What every head does: figures and labels per head, for a text or "
                       "a corpus.")(heads.heads)
app.command(short_help="Draw every pair of a file to its own files, with an index.html.")(
    export.export)
app.command()(train.train)
app.command(name="eval")(train.eval_)
app.command(short_help="The shipped models and their measured accuracy; or one model's "
                       "vocabulary.")(train.models)


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
