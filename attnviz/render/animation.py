"""The decoding animation: a GIF with one frame per decoding step, drawn from the maps alone.

Frame t shows the tokens written before step t, the token step t writes, and the row t of
the chosen masked decoder self-attention and cross-attention maps: what the decoder's
input token t looked at, among the tokens before it and in the source, to write the next one.
A window of the queries animates only its steps; a window of the keys shows only its columns.

The maps come from one teacher-forced pass over the whole decoder input. For attnviz's own
model that is the attention of greedy decoding step by step: the causal mask keeps row t from
seeing the tokens after t, so row t is the same whether those tokens exist yet or not (the
tests compare it with step-by-step decoding). The last frame is the step that writes the end
token (with a given target: the step that should write it), or, when generation stopped
at its length limit, a token the maps do not hold.
"""

from __future__ import annotations

import io
import warnings
from contextlib import nullcontext

import numpy as np

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import display_label, printable, shorten
from attnviz.maps.caption import caption
from attnviz.maps.data import AttentionMaps
from attnviz.maps.kinds import TITLES, WEIGHT_TITLES
from attnviz.maps.views import UNKNOWN_MARK, UNKNOWN_NEXT, Heatmap, head_name
from attnviz.render import fonts
from attnviz.render.colors import colormap

DECODER_KINDS = ("decoder_self", "cross")  # the rows a frame shows, top to bottom
FRAME_MS = 1200  # each step on screen; the last one twice as long before the loop restarts
DPI = 100
MASKED_COLOR = "#d0d0d0"  # as in image.py: hatched grey, clearly not a colour of the map
LABEL_CHARS = 16
FONT = 9  # points
CHAR = 0.6 * FONT / 72  # inches per label character (DejaVu Sans)
CELL = 0.55  # inches; shrinks so that a row is never wider than ROW_MAX
ROW_MAX = 11.0
STRIP = 0.45  # the height of a row of cells
GAP = 0.25
HEADER = 0.95  # the caption and the two lines that say which step it is
TITLE = 0.35  # above each row of cells
LEGEND = 0.55  # the colour bar at the bottom


def to_bytes(maps: AttentionMaps, heatmaps: list[Heatmap], cmap: str,
             scale: str | None = None) -> bytes:
    """The GIF of ``heatmaps``' decoder kinds, one frame per decoding step.

    Args:
        maps: where the heatmaps come from (their tokens and provenance).
        heatmaps: the chosen maps; their masked decoder self-attention and cross-attention
            (one layer and head each) are animated, any other kind is left out. Windowed
            heatmaps give a frame per step of their queries, with their keys.
        cmap: the colour map.
        scale: the scale the person asked for (None: none). Every frame is coloured from 0
            to 1, so that a step compares with the next; another scale is warned about.

    Raises:
        AttnvizError: when there is no decoder map among ``heatmaps``, or several of a kind,
            or their windows hold different steps.
    """
    from PIL import Image

    rows = decoder_heatmaps(heatmaps)
    frame_steps(rows)  # checks that the rows agree before anything is drawn
    if scale not in (None, "unit"):
        warnings.warn(f"the decoding animation (.gif) colours every frame on one scale from 0 "
                      f"to 1; the {printable(str(scale))} scale applies to pictures and pages",
                      AttnvizWarning, stacklevel=2)
    frames = [Image.frombytes("RGBA", size, pixels).convert("RGB")
              for size, pixels in _frames(maps, rows, cmap)]
    # One palette for every frame, chosen from all of them at once, without dithering: the
    # cells stay flat colours, and the frames differ only where the step changed them,
    # which GIF stores as small patches. Pillow's quantizer is deterministic and the file
    # carries no date: the same maps give the same bytes.
    every = Image.new("RGB", (frames[0].width, frames[0].height * len(frames)))
    for index, frame in enumerate(frames):
        every.paste(frame, (0, index * frame.height))
    palette = every.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                             dither=Image.Dither.NONE)
    frames = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    durations = [FRAME_MS] * (len(frames) - 1) + [2 * FRAME_MS]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=durations, loop=0)
    return buffer.getvalue()


def decoder_heatmaps(heatmaps: list[Heatmap]) -> list[Heatmap]:
    """The decoder maps of ``heatmaps`` to animate, self-attention first; AttnvizError when
    there is none, or more than one of a kind (the animation shows one layer and head)."""
    chosen = []
    for kind in DECODER_KINDS:
        found = [heatmap for heatmap in heatmaps if heatmap.kind == kind]
        if len(found) > 1:
            raise AttnvizError(f"the decoding animation shows one layer and one head of "
                               f"{TITLES[kind].lower()}; {len(found)} were chosen: pick one "
                               "layer and one head")
        chosen += found
    if not chosen:
        held = ", ".join(dict.fromkeys(TITLES[heatmap.kind].lower() for heatmap in heatmaps)
                         ) or "nothing"  # each kind once: --layer all drew a panel a layer
        raise AttnvizError("the decoding animation (.gif) needs a decoder: masked decoder "
                           f"self-attention or cross-attention, and the maps drawn hold {held}; "
                           "draw it with ⟨decode⟩ and ⟨kind⟩ self, cross or all")
    return chosen


def frame_steps(rows: list[Heatmap]) -> range:
    """The decoding steps the frames show: the positions of the rows' queries (all of them,
    or a window's); AttnvizError when the rows' windows hold different steps."""
    held = {(row.query_start, len(row.query_tokens)) for row in rows}
    if len(held) > 1:
        raise AttnvizError("the decoding animation shows the same steps in every row, and the "
                           "maps chosen hold different query positions: give their queries one "
                           "window")
    start, count = held.pop()
    return range(start, start + count)


def step_texts(maps: AttentionMaps, step: int) -> tuple[str, str]:
    """What frame ``step`` says: the step and what it writes, and the tokens written before.

    Row t of a decoder map reads the decoder's input token t and leads to token t + 1; the
    last row leads to the end token the maps hold (``<?>`` when they hold none: generation
    stopped at its length limit, or the maps do not say). A word the vocabulary lacked shows
    as written, marked (``zebra?``), as in the pictures.
    """
    written = maps.provenance.target_written
    tokens = [display_label(token) if index not in written
              else display_label(written[index]) + UNKNOWN_MARK
              for index, token in enumerate(maps.target_tokens)]
    count = len(tokens)
    generated = maps.provenance.target_generated
    end = maps.provenance.next_token
    if step + 1 < count:
        following = tokens[step + 1]
    elif end is None:
        following = f"{UNKNOWN_NEXT} (not in these maps)"
    else:
        following = f"{display_label(end)} (the end)"
    verb = "writes" if generated else "should write (the target's next token)"
    header = (f"{'Greedy decoding' if generated else 'Decoding the given target'} · step "
              f"{step + 1} of {count} · reads {tokens[step]}, {verb}: {following}")
    return header, f"written so far: {_written_before(maps, tokens, step) or '(nothing yet)'}"


def _written_before(maps: AttentionMaps, labels: list[str], step: int) -> str:
    """The text the decoder has read by step ``step``, its start token aside: the target
    text as far as its tokens up to ``step`` spell it (sub-words and characters joined as
    they are written, words with their spaces), a word the vocabulary lacked marked
    (``zebra?``); where the tokens do not spell the text, their labels one after another.

    A decoder that reads an encoder starts from a start token of its own (``<bos>``, a
    Marian's ``<pad>``), which no text holds; a decoder-only model (GPT-2) reads the text
    from its first token, unless that is a special token that the text does not spell.
    """
    spelled = _spelling(maps)
    if spelled is not None:
        first, ends = spelled
        text = maps.provenance.target_text or ""
        shown, start = [], 0
        for index in range(first, step + 1):
            shown.append(text[start:ends[index - first]])
            start = ends[index - first]
            if index in maps.provenance.target_written:
                shown.append(UNKNOWN_MARK)
        return printable("".join(shown).strip())
    first = 1 if maps.source_tokens else 0
    return " ".join(labels[first:step + 1])


def _spelling(maps: AttentionMaps) -> tuple[int, list[int]] | None:
    """Where each target token ends in the target text, from the first token the text
    spells (0, or 1 past a start token): ``(first, ends)``; None when they do not spell it.

    A token matches the text after the spaces before it (the word tokenizer drops them,
    a sub-word's leading space is the text's), case aside (attnviz's own tokenizers lower
    the case); a token of spaces alone matches those spaces.
    """
    text = maps.provenance.target_text
    if not text:
        return None
    tokens = [maps.provenance.target_written.get(index, token)
              for index, token in enumerate(maps.target_tokens)]
    for first in (0, 1):
        ends, at = [], 0
        for token in tokens[first:]:
            core = token.strip()
            if not core:
                if not text.startswith(token, at):
                    break
                at += len(token)
            else:
                while at < len(text) and text[at].isspace():
                    at += 1
                if text[at:at + len(core)].lower() != core.lower():
                    break
                at += len(core)
            ends.append(at)
        else:
            if ends:
                return first, ends
    return None


def _frames(maps: AttentionMaps, rows: list[Heatmap], cmap: str):
    """Each frame's pixel size and RGBA bytes, drawn on one figure updated step by step.

    What stays (labels, titles, the colour bar) is drawn once; each frame puts it back and
    draws only what changes on it (matplotlib's blitting), a tenth of the time of a whole
    drawing.
    """
    labels = [label for heatmap in rows
              for label in (*heatmap.key_labels, *heatmap.query_labels)]
    choice = fonts.choose(labels)
    fonts.warn_missing(choice.missing)
    from matplotlib import rc_context, rcParams

    families = {"font.family": [*rcParams["font.family"], *choice.families]}
    with rc_context(families) if choice.families else nullcontext(), fonts.glyphs_said():
        canvas, changing, update = _figure(maps, rows, cmap)
        canvas.draw()  # everything but the changing artists
        background = canvas.copy_from_bbox(canvas.figure.bbox)
        for step in frame_steps(rows):
            update(step)
            canvas.restore_region(background)
            for artist in changing:
                canvas.figure.draw_artist(artist)
            yield canvas.get_width_height(), bytes(canvas.buffer_rgba())


def _figure(maps: AttentionMaps, rows: list[Heatmap], cmap: str):
    """The figure, the artists that change from step to step (in drawing order), and the
    function that shows step t on them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    palette = colormap(cmap).with_extremes(bad=(0, 0, 0, 0))  # masked cells: transparent
    widest = max(heatmap.weights.shape[1] for heatmap in rows)
    cell = min(CELL, ROW_MAX / max(widest, 1))
    query_room = CHAR * max(len(shorten(label, LABEL_CHARS)) for heatmap in rows
                            for label in heatmap.query_labels) + 0.45
    below = [0.25 + CHAR * 0.75 * max(len(shorten(label, LABEL_CHARS))
                                      for label in heatmap.key_labels) for heatmap in rows]
    titles = max(len(_row_title(heatmap)) for heatmap in rows) * 0.6 * 10 / 72  # 10 points
    width = max(2 * GAP + query_room + max(widest * cell, titles),
                min(_header_width(maps), ROW_MAX), 6.0)
    line_chars = int((width - 2 * GAP) / (0.6 * 11 / 72))  # characters of a step line
    height = 2 * GAP + HEADER + sum(TITLE + STRIP + room for room in below) + LEGEND
    fig = Figure(figsize=(width, height), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_facecolor("white")

    heading = shorten(caption(maps.provenance), int((width - 2 * GAP) / (0.6 * 8 / 72)))
    if heading:  # one line: the room the header has; cut only where it has none
        fig.text(GAP / width, 1 - GAP / height, heading, fontsize=8, color="#555555", va="top",
                 parse_math=False)
    step_line = fig.text(GAP / width, 1 - (GAP + 0.3) / height, "", fontsize=11,
                         weight="bold", va="top", parse_math=False)
    written_line = fig.text(GAP / width, 1 - (GAP + 0.6) / height, "", fontsize=10, va="top",
                            parse_math=False)
    top = height - GAP - HEADER
    strips, changing = [], [step_line, written_line]
    for heatmap, labels_below in zip(rows, below, strict=True):
        keys = heatmap.weights.shape[1]
        bottom = top - TITLE - STRIP
        ax = fig.add_axes((_x(GAP + query_room, width), bottom / height,
                           keys * cell / width, STRIP / height))
        image = ax.imshow(np.zeros((1, keys)), cmap=palette, norm=Normalize(0.0, 1.0),
                          interpolation="nearest", aspect="auto")
        if not heatmap.visible.all():  # behind the transparent masked cells: grey, hatched
            ax.add_patch(Rectangle((-0.5, -0.5), keys, 1, facecolor=MASKED_COLOR, hatch="///",
                                   edgecolor="#a0a0a0", linewidth=0, zorder=0))
            image.set_zorder(1)
        borders = ax.vlines(np.arange(keys + 1) - 0.5, -0.5, 0.5, colors="white",
                            linewidth=1.0, zorder=1.5)
        ax.set_xlim(-0.5, keys - 0.5)
        ax.set_ylim(0.5, -0.5)
        ax.set_xticks(range(keys), labels=[shorten(label, LABEL_CHARS)
                                           for label in heatmap.key_labels],
                      rotation=45, ha="right", rotation_mode="anchor", fontsize=FONT,
                      parse_math=False)
        ax.set_yticks([])
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(_row_title(heatmap), fontsize=10, loc="left", parse_math=False)
        numbers = [ax.text(col, 0, "", ha="center", va="center", fontsize=7, zorder=2)
                   for col in range(keys)]
        here = ax.add_patch(Rectangle((-0.5, -0.5), 1, 1, fill=False, edgecolor="#e8193c",
                                      linewidth=2.0, zorder=3,
                                      visible=heatmap.kind == "decoder_self"))
        query = ax.text(-0.6, 0, "", ha="right", va="center", fontsize=FONT, parse_math=False)
        strips.append((heatmap, image, numbers, here, query))
        changing += [image, borders, *numbers, here, query]
        top = bottom - labels_below

    bar = fig.add_axes((_x(GAP + query_room, width), (GAP + 0.3) / height,
                        min(3.0, widest * cell) / width, 0.12 / height))
    fig.colorbar(image, cax=bar, orientation="horizontal")
    bar.tick_params(labelsize=7)
    bar.set_title("attention weight (the same 0 to 1 scale in every frame)", fontsize=7,
                  loc="left")

    def update(step: int) -> None:
        """Show decoding step ``step``: row ``step - query_start`` of each heatmap."""
        header, written = step_texts(maps, step)
        step_line.set_text(shorten(header, line_chars))
        if len(written) > line_chars:  # the latest tokens matter most: cut the beginning
            written = "…" + written[len(written) - line_chars + 1:]
        written_line.set_text(written)
        for heatmap, image, numbers, here, query in strips:
            row, column = step - heatmap.query_start, step - heatmap.key_start
            weights, visible = heatmap.weights[row], heatmap.visible[row]  # (K,)
            image.set_data(np.ma.masked_array(weights[None, :], mask=~visible[None, :]))
            query.set_text(shorten(heatmap.query_label(row), LABEL_CHARS))
            # The position that reads, the query's own token, when the keys' window holds it.
            here.set_x(column - 0.5)
            here.set_visible(heatmap.kind == "decoder_self" and 0 <= column < len(weights))
            for col, text in enumerate(numbers):
                shown = visible[col] and weights[col] >= 0.005
                text.set_text(f"{weights[col]:.2f}".removeprefix("0") if shown else "")
                red, green, blue, _ = palette(float(weights[col]))
                text.set_color("black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
                               else "white")

    for artist in changing:
        artist.set_animated(True)  # left out of the drawing of what stays
    return canvas, changing, update


def _row_title(heatmap: Heatmap) -> str:
    head = head_name(heatmap.head, heatmap.head_count)
    where = "the tokens so far, this one outlined; later ones masked" \
        if heatmap.kind == "decoder_self" else \
        "the source"
    keys = len(heatmap.key_tokens)
    positions = (f", keys at positions {heatmap.key_start} to {heatmap.key_start + keys - 1}"
                 if heatmap.windowed else "")
    return f"{TITLES[heatmap.kind]}{WEIGHT_TITLES[heatmap.measure]} · layer {heatmap.layer} · " \
           f"{head} ({where}{positions})"


def _header_width(maps: AttentionMaps) -> float:
    """Inches the step lines need at their longest (the last step), at 11 points."""
    longest = max(len(text) for step in (0, len(maps.target_tokens) - 1)
                  for text in step_texts(maps, step))
    return 2 * GAP + longest * 0.6 * 11 / 72


def _x(inches: float, width: float) -> float:
    return inches / width
