"""The options of the ``attnviz`` commands, declared once: their types, help texts and flags.

Nothing here imports numpy, torch or matplotlib: ``--help`` builds every command from this.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from attnviz.flow.formats import EXPORT_FORMATS
from attnviz.maps.kinds import SHORT_NAMES, WEIGHTS
from attnviz.model.config import MAX_SEED
from attnviz.model.runtime import MAX_THREADS

# --kind: the kinds' short names (encoder, self, cross), and "all" where every kind is drawn.
Kind = Enum("Kind", {**{name: name for name in SHORT_NAMES}, "all": "all"}, type=str)
ExplainKind = Enum("ExplainKind", {name: name for name in SHORT_NAMES}, type=str)
# --weights: what the maps hold, the attention weights or Kobayashi's norm-based ones.
Weights = Enum("Weights", {name: name for name in WEIGHTS}, type=str)

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
         "jobs": "--jobs", "precision": "--precision", "memory": "--memory",
         "sink": "--sink", "out_dir": "--out-dir", "weights": "--weights",
         "induction": "--induction", "induction_length": "--induction-length",
         "scheduler": "--scheduler", "pairs": "--pairs", "maps": "--maps"}


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class Scale(str, Enum):
    panel = "panel"
    shared = "shared"
    unit = "unit"
    row = "row"
    log = "log"


class Precision(str, Enum):
    float32 = "float32"
    float16 = "float16"


class Sink(str, Enum):
    shown = "shown"
    unscaled = "unscaled"
    renormalised = "renormalised"


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
         "before (.npz, .json), hf:NAME_OR_FOLDER for a Hugging Face model, or a .gguf "
         "file (both need the hf extra: pip install -e '.\\[hf]' in a clone of attnviz, pip "
         "install 'attnviz\\[hf]' beside an installed attnviz). Default: translate.")]
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
         "whose first rows dominate); log = the logarithm of the weight, over the 4 decades "
         "below the largest (for long maps, where most weights are tiny). Default: shared "
         "when there are several panels.",
    show_default=False)]
SinkOption = Annotated[Sink, typer.Option(
    help="The first key, where long maps of language models put most of every row (an "
         "attention sink): shown = drawn as the others; unscaled = left out of the colour "
         "scale (its cells show the brightest colour); renormalised = each row drawn without "
         "it, divided by what the other keys got. The colour bar says which.")]
PrecisionOption = Annotated[Precision, typer.Option(
    help="How a Hugging Face model's maps are kept: float32, or float16 (half the memory; "
         "a weight to about 0.05%).")]
MemoryOption = Annotated[Optional[float], typer.Option(
    metavar="GB", min=1e-9, show_default=False,
    help="The most memory a Hugging Face model's kept maps and their layer-by-layer work "
         "may take, in GB. Default: nine tenths of what the machine has free now.")]
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


def distinct_files(paths: Optional[list[Path]]) -> Optional[list[Path]]:
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
    "--output", "-o", metavar="FILE", callback=distinct_files,
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


WeightsOption = Annotated[Weights, typer.Option(
    help="attention: the softmax weights α; norm: the norm-based weights of Kobayashi et al. "
         "(2020), each key's share of its row's ‖α f(x)‖, f(x) the key's value vector after "
         "the head's share of the output projection (what a key adds to the output, not only "
         "how much it is weighted). The titles say which. norm: attnviz's own models, and "
         "Hugging Face models whose attention runs through attnviz's function.")]


TargetOption = Annotated[Optional[str], typer.Option(
    "--target", "-t", metavar="TEXT",
    help="The target sentence. Without it, the model writes one greedily and prints it.",
    show_default=False)]


# --format of export: what each pair is drawn to.
ExportFormat = Enum("ExportFormat", {fmt: fmt for fmt in EXPORT_FORMATS}, type=str)


class TokenizerKind(str, Enum):
    word = "word"
    char = "char"
