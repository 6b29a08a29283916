"""The 2-D maps a picture shows, chosen from AttentionMaps by kind, layer, head and window,
and how they share a colour scale.

Renderers draw :class:`Heatmap` objects (one panel), or a :class:`Plan` (every panel of a
figure: per kind, a grid of layers by heads, with one colour scale), and nothing else; this
module decides what each one holds and how it is labelled.

(Past 450 lines: a heatmap, the plan of a figure and its colour scales, windows, the sink and
the top-k listing are one vocabulary that every renderer reads; split, each part would import
the others.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Union

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.io.text import columns, display_label, printable, shorten
from attnviz.maps.caption import caption
from attnviz.maps.choice import check_kind, check_present, index
from attnviz.maps.data import AttentionMaps
from attnviz.maps.kinds import TITLES, WEIGHT_TITLES
from attnviz.maps.windows import Span, Window, spans

QUERY_AXES = {
    "encoder_self": "query: source token",
    "decoder_self": "query: decoder input token",
    "cross": "query: decoder input token",
}
KEY_AXES = {
    "encoder_self": "key: source token",
    "decoder_self": "key: decoder input token",
    "cross": "key: source token (encoder output)",
}
# After the query axis of a decoder's rows, labelled "input → next": what the next token is.
# The model wrote the target: the next token is the one it predicted. The target was given
# (--target, or a decoder-only model reading a text): the next token is the given text's
# (teacher forcing), which need not be the one the model would have predicted.
PREDICTS_AXIS = " → the token it predicts"
GIVEN_AXIS = " → the next target token"
ARROW = " → "  # between a decoder row's input token and the token after it
UNKNOWN_NEXT = "<?>"  # the token after the last decoder input, when the maps do not say it
UNKNOWN_MARK = "?"  # after a word the vocabulary lacks: "zebra?" (the map holds <unk>)
# How weights become colours: from 0 to each panel's largest weight, to one maximum for every
# panel of the figure (its largest weight), to 1, or (each row divided by its largest) from 0
# to 1 in every row. A page shows one map at a time: its shared maximum is that of every layer
# and head of the kind shown, the means over heads included.
SCALES = ("panel", "shared", "unit", "row", "log")
LOG_DECADES = 4  # the log scale runs from the largest weight down this many decades
# The first key, where a long map of a language model puts most of every row (an attention
# sink): drawn as the others, left out of the colour scale (its cells show the brightest
# colour), or left out of each row, the rest renormalised to what the other keys got.
SINKS = ("shown", "unscaled", "renormalised")
SINK_NOTES = {"shown": "", "unscaled": "the first key (the sink) is left out of the scale",
              "renormalised": "each row without the first key (the sink), renormalised"}
Layer = Union[int, Literal["all"], None]  # None: the kind's default layer
Head = Union[int, Literal["mean", "all"], None]  # None or "mean": the mean over heads


@dataclass(frozen=True, eq=False)
class Heatmap:
    """A 2-D attention map with its labels: what every renderer draws.

    Shape: weights and visible ``[Q, K]``; query_tokens Q labels, key_tokens K labels.
    """

    kind: str  # one of KINDS
    layer: int
    head: int | None  # None: the mean over heads
    head_count: int
    weights: np.ndarray  # (Q, K) rows sum to 1 (0 for a query that saw no key)
    query_tokens: list[str]
    key_tokens: list[str]
    visible: np.ndarray  # (Q, K) bool; False where the mask hid the key (the future)
    caption: str = ""  # where the maps come from (model, attnviz version), or ""
    query_start: int = 0  # position of the first row in the whole sequence (a window's start)
    key_start: int = 0  # position of the first column
    windowed: bool = False  # a window of a longer map: the axis titles give the positions
    # Words the vocabulary lacked, as written, by row (column): the map holds <unk> there.
    query_written: dict[int, str] = field(default_factory=dict)
    key_written: dict[int, str] = field(default_factory=dict)
    # Decoder rows are labelled "input → next", the next input token; after the last row
    # comes last_next (the label of the token after it, UNKNOWN_NEXT: not known).
    predicts: bool = False
    last_next: str = UNKNOWN_NEXT
    # The model wrote the target, so the next token is the one it predicted; else it is the
    # given target's (see GIVEN_AXIS).
    generated: bool = False
    rolled_out = False  # a class attribute: True for the rollout's heatmaps, which are not maps
    # A window is a view onto its map, not a new map: the panel and row scales reach their
    # brightest at the whole map's (row's) largest weight. Shape: ``[Q_all, K_all]``; None
    # when the heatmap is the whole map. query_start and key_start place the window in it.
    whole_weights: np.ndarray | None = None
    whole_visible: np.ndarray | None = None
    sink: str = "shown"  # one of SINKS: how the first key is drawn
    measure: str = "attention"  # what the map holds: one of attnviz.maps.kinds.WEIGHTS

    @property
    def title(self) -> str:
        return f"{TITLES[self.kind]}{WEIGHT_TITLES[self.measure]} · layer {self.layer} · " \
               f"{head_name(self.head, self.head_count)}"

    @property
    def short_title(self) -> str:
        """The panel's place in a grid of its kind: ``layer 1 · head 2``, ``layer 1 · mean``."""
        return f"layer {self.layer} · {'mean' if self.head is None else f'head {self.head}'}"

    @property
    def query_labels(self) -> list[str]:
        return [self.query_label(row) for row in range(len(self.query_tokens))]

    def query_label(self, row: int, width: int | None = None) -> str:
        """Row ``row``'s label, at most ``width`` terminal columns (None: whole). A decoder row
        reads ``<bos> → les``; cut to a width, each side keeps its share of it."""
        own = _token_label(self.query_tokens[row], self.query_written.get(row))
        if not self.predicts:
            return own if width is None else shorten(own, width)
        if row + 1 < len(self.query_tokens):
            after = _token_label(self.query_tokens[row + 1], self.query_written.get(row + 1))
        else:
            after = self.last_next
        whole = own + ARROW + after
        room = 0 if width is None else width - len(ARROW)  # for the two tokens
        if width is None or columns(whole) <= width or room < 4:
            return whole if width is None else shorten(whole, width)
        own = shorten(own, room - min(columns(after), room // 2))
        return own + ARROW + shorten(after, room - columns(own))

    @property
    def key_labels(self) -> list[str]:
        return [_token_label(token, self.key_written.get(i))
                for i, token in enumerate(self.key_tokens)]

    @property
    def unknown_words(self) -> bool:
        """Some label is a word the vocabulary lacked (shown as ``word?``)."""
        return bool(self.query_written or self.key_written)

    @property
    def scale_max(self) -> float:
        """The weight drawn brightest: the largest visible weight of the whole map, window or
        not (at least 1e-6)."""
        return max(_largest(*self._scaled), 1e-6)

    @property
    def _scaled(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole map's weights and the cells its scale reaches: the visible ones, but
        the first key's where it is left out of the scale (``sink="unscaled"``)."""
        weights, visible = self.whole
        if self.sink == "unscaled" and visible.shape[-1] > 1:
            visible = visible.copy()
            visible[:, 0] = False
        return weights, visible

    @property
    def whole(self) -> tuple[np.ndarray, np.ndarray]:
        """The weights and visible cells of the whole map a window shows part of (of the
        heatmap itself when it is no window). Shape: ``[Q_all, K_all]`` each."""
        if self.whole_weights is None or self.whole_visible is None:
            return self.weights, self.visible
        return self.whole_weights, self.whole_visible

    @property
    def row_largest(self) -> np.ndarray:
        """Each row's largest visible weight over every key of the whole map, the keys outside
        a window included (0 for a row that saw nothing). Shape: ``(Q,)``."""
        weights, visible = self._scaled
        rows = slice(self.query_start, self.query_start + self.weights.shape[0])
        shown = np.where(visible[rows], weights[rows], 0.0)  # (Q, K_all)
        return shown.max(axis=-1) if shown.size else np.zeros(shown.shape[0], np.float32)

    @property
    def query_axis(self) -> str:
        axis = QUERY_AXES[self.kind]
        if self.predicts:
            axis += PREDICTS_AXIS if self.generated else GIVEN_AXIS
            if self.last_next == UNKNOWN_NEXT:
                axis += f" ({UNKNOWN_NEXT}: not in these maps)"
        return axis + self._positions(self.query_start, len(self.query_tokens))

    @property
    def key_axis(self) -> str:
        return KEY_AXES[self.kind] + self._positions(self.key_start, len(self.key_tokens))

    def _positions(self, start: int, count: int) -> str:
        return f", positions {start} to {start + count - 1}" if self.windowed else ""


def head_name(head: int | None, count: int) -> str:
    """A head as titles name it: ``head 2``, or (None) ``mean of 4 heads``, or ``the only
    head`` when there is one."""
    if head is not None:
        return f"head {head}"
    return "the only head" if count == 1 else f"mean of {count} heads"


def heatmaps(maps: AttentionMaps, kinds: Sequence[str] | None = None, layer: int | None = None,
             head: int | None = None) -> list[Heatmap]:
    """The maps to draw: each kind (default: every kind the maps hold) at ``layer`` (default:
    the kind's default layer) and ``head`` (None: the mean over heads)."""
    return [heatmap(maps, kind, layer, head) for kind in (kinds or maps.kinds)]


def heatmap(maps: AttentionMaps, kind: str, layer: int | None = None, head: int | None = None
            ) -> Heatmap:
    """One layer's map of one kind, for one head or (``head=None``) the mean over heads.

    Raises AttnvizError naming the valid values when the kind is unknown or absent or the
    layer or head is out of range.
    """
    kind = check_kind(kind)
    check_present(maps.kinds, kind)
    stack = maps.stack(kind)  # (L, H, Q, K)
    heads = stack.shape[1]
    layer = maps.default_layer(kind) if layer is None else layer
    at = maps.layer_position(kind, layer)  # the model's layer number -> its place in the stack
    # (Q, K); the mean of one head is that head, not a copy of it (a long map is large).
    weights = stack[at, maps.head_position(kind, head)] if head is not None else \
        stack[at, 0] if heads == 1 else stack[at].mean(axis=0, dtype=np.float32)
    provenance = maps.provenance
    if kind == "encoder_self":
        queries, query_written = maps.source_tokens, provenance.source_written
    else:
        queries, query_written = maps.target_tokens, provenance.target_written
    if kind == "decoder_self":
        keys, key_written = maps.target_tokens, provenance.target_written
    else:
        keys, key_written = maps.source_tokens, provenance.source_written
    last_next = UNKNOWN_NEXT if provenance.next_token is None else display_label(
        provenance.next_token)
    return Heatmap(kind, layer, head, heads, np.asarray(weights, dtype=np.float32),
                   list(queries), list(keys), _visible(kind, stack[at]),
                   caption(provenance), query_written=dict(query_written),
                   key_written=dict(key_written), predicts=kind != "encoder_self",
                   last_next=last_next, generated=provenance.target_generated,
                   measure=maps.measure)


def _token_label(token: str, written: str | None) -> str:
    """A token's label; a word the vocabulary lacked shows as written, marked: ``zebra?``."""
    return display_label(token) if written is None else display_label(written) + UNKNOWN_MARK


# --- Figures: every panel of a picture, and its colour scale -------------------------------


@dataclass(frozen=True, eq=False)
class Block:
    """The panels of one kind. Shape: ``panels[row][column]``, rows are layers, columns heads
    (with the mean over heads last, when every head is drawn)."""

    kind: str
    panels: tuple[tuple[Heatmap, ...], ...]

    @property
    def title(self) -> str:
        return TITLES[self.kind] + WEIGHT_TITLES[self.panels[0][0].measure]

    @property
    def single(self) -> bool:
        """One panel, titled in full: no grid."""
        return len(self.panels) == 1 and len(self.panels[0]) == 1


@dataclass(frozen=True, eq=False)
class Plan:
    """Every panel of one figure and its colour scale: what a renderer draws, and all it draws.

    Blocks go side by side when each is one column of panels (one layer and head per kind, or
    every layer of one head), else one under another (a grid of layers by heads per kind).
    """

    blocks: tuple[Block, ...]
    scale: str  # one of SCALES
    shared_max: float  # the largest visible weight of every panel (at least 1e-6)
    asked: str | None = None  # the scale as asked; None: chosen for the number of panels
    sink: str = "shown"  # one of SINKS

    @property
    def sink_note(self) -> str:
        """What the colour bar says of the first key, or ""."""
        return SINK_NOTES[self.sink]

    @property
    def panels(self) -> list[Heatmap]:
        return [panel for block in self.blocks for row in block.panels for panel in row]

    @property
    def side_by_side(self) -> bool:
        return all(len(row) == 1 for block in self.blocks for row in block.panels)

    @property
    def grid(self) -> bool:
        """More than one panel of some kind: panels are titled by layer and head only."""
        return not all(block.single for block in self.blocks)

    @property
    def caption(self) -> str:
        return next((panel.caption for panel in self.panels if panel.caption), "")

    def color(self, heatmap: Heatmap) -> tuple[np.ndarray, float]:
        """The values a panel is coloured by, and the value drawn brightest (its colour limit).

        Shape: ``(Q, K)``: the weights, or for the row scale each row divided by its largest
        visible weight, over the whole row when the panel is a window (then the limit is 1).
        """
        if self.scale == "row":
            return scale_rows(heatmap.weights, heatmap.visible, heatmap.row_largest), 1.0
        if self.scale == "log":
            return log_shares(heatmap.weights, self.shared_max), 1.0
        return heatmap.weights, self.limit(heatmap)

    def limit(self, heatmap: Heatmap) -> float:
        """The weight drawn in the brightest colour (1 for the row scale's shares)."""
        if self.scale == "panel":
            return heatmap.scale_max
        if self.scale == "shared":
            return self.shared_max
        return 1.0


def plan(maps: AttentionMaps, kinds: Sequence[str] | None = None, layer: Layer = None,
         head: Head = None, scale: str | None = None, window: Window = None,
         window_query: Window = None, window_key: Window = None, sink: str = "shown"
         ) -> Plan:
    """The panels of a figure of ``maps``.

    Args:
        maps: the maps.
        kinds: which kinds, in :data:`KINDS` names; None: every kind the maps hold.
        layer: a layer (counting from 0), ``"all"`` for every layer (a row each), or None
            for each kind's default layer.
        head: a head, ``"mean"`` (or None) for the mean over heads, or ``"all"`` for every
            head and then their mean (a column each).
        scale: ``panel`` (each panel from 0 to its largest weight), ``shared`` (one maximum
            for every panel of the figure: its largest weight), ``unit`` (0 to 1) or ``row``
            (each row to its largest weight); None: ``shared`` when there are several
            panels, else ``panel``.
        window: positions ``A:B`` (A to B-1) of both the queries and the keys.
        window_query: positions of the queries alone (instead of ``window``'s).
        window_key: positions of the keys alone.
        sink: how the first key is drawn, one of :data:`SINKS`.

    Raises:
        AttnvizError: an absent kind, a layer or head out of range, an unknown scale, a window
            that is not ``A:B`` or that selects nothing; its ``setting`` names the option.
    """
    check_scale(scale)
    check_sink(sink)
    rows, columns = spans(window, window_query, window_key)
    layer, head = _layer(layer), _head(head)
    blocks = []
    for kind in [check_kind(kind) for kind in kinds or maps.kinds]:
        first = heatmap(maps, kind, None if layer == "all" else layer,
                        None if head == "all" else head)  # checks the kind, layer and head
        layers = maps.layers_of(kind) if layer == "all" else [first.layer]
        heads = [*maps.heads_of(kind), None] if head == "all" else [first.head]
        panels = tuple(tuple(_windowed(sunk(heatmap(maps, kind, row, column), sink), rows,
                                       columns) for column in heads) for row in layers)
        blocks.append(Block(kind, panels))
    return _planned(blocks, scale, sink)


def arrange(heatmaps: Sequence[Heatmap], scale: str | None = None, window: Window = None,
            window_query: Window = None, window_key: Window = None, sink: str = "shown"
            ) -> Plan:
    """A plan of heatmaps chosen one by one (as :func:`heatmaps` gives them, or the rollout),
    side by side, with the scale, windows and sink of :func:`plan`."""
    check_scale(scale)
    check_sink(sink)
    rows, columns = spans(window, window_query, window_key)
    return _planned([Block(h.kind, ((_windowed(sunk(h, sink), rows, columns),),))
                     for h in heatmaps], scale, sink)


def check_sink(sink: str) -> None:
    if sink not in SINKS:
        raise AttnvizError(f"sink {printable(str(sink))!r} is not a way to draw the first key: "
                           f"use one of {', '.join(SINKS)}", setting="sink")


def sunk(heatmap: Heatmap, sink: str) -> Heatmap:
    """``heatmap`` with its first key drawn as ``sink`` says: as it is, left out of the
    scale (``unscaled``), or left out of each row, the other keys' weights divided by what
    they got together (``renormalised``: each row then sums to 1 without it; a row that
    gave the first key everything is 0).

    Shape: weights ``[Q, K]`` -> ``[Q, K]``, the first column hidden when renormalised.
    """
    if sink == "shown" or heatmap.weights.shape[-1] < 2:
        return heatmap
    if sink == "unscaled":
        return replace(heatmap, sink=sink)
    weights = np.asarray(heatmap.weights, dtype=np.float64)
    rest = weights[:, 1:].sum(axis=-1, keepdims=True)  # (Q, 1)
    renormalised = np.divide(weights, rest, out=np.zeros_like(weights), where=rest > 0)
    renormalised[:, 0] = 0.0
    visible = heatmap.visible.copy()
    visible[:, 0] = False
    return replace(heatmap, weights=renormalised.astype(np.float32), visible=visible,
                   sink=sink)


def log_shares(weights: np.ndarray, top: float) -> np.ndarray:
    """Weights on the log scale, 0 to 1: 1 at ``top``, 0 at ``top`` / 10^LOG_DECADES and
    below (a weight of 0 too). Shape: ``(Q, K) -> (Q, K)``."""
    with np.errstate(divide="ignore"):
        decades = np.log10(np.asarray(weights, dtype=np.float64) / max(top, 1e-12))
    return np.clip(1.0 + decades / LOG_DECADES, 0.0, 1.0).astype(np.float32)


def check_scale(scale: str | None) -> None:
    """Raise AttnvizError (``setting="scale"``) unless ``scale`` is None or in :data:`SCALES`."""
    if scale is not None and scale not in SCALES:
        raise AttnvizError(f"scale {printable(str(scale))!r} is not a scale: use one of "
                           f"{', '.join(SCALES)}", setting="scale")


def _planned(blocks: Sequence[Block], scale: str | None, sink: str = "shown") -> Plan:
    """The plan of ``blocks`` on ``scale`` (None: shared when there are several panels, else
    panel); the shared scale's one maximum is the largest visible weight of every panel's
    whole map (a window is a view onto its map), the first key's left out where the sink is
    unscaled."""
    panels = [panel for block in blocks for row in block.panels for panel in row]
    shared = max((_largest(*panel._scaled) for panel in panels), default=0.0)
    return Plan(tuple(blocks), scale or ("shared" if len(panels) > 1 else "panel"),
                max(shared, 1e-6), scale, sink)


def _largest(weights: np.ndarray, visible: np.ndarray) -> float:
    """The largest visible weight (0 when none is visible), without a copy of the map."""
    return float(np.max(weights, where=visible, initial=0.0)) if weights.size else 0.0


def _layer(layer: Layer) -> int | Literal["all"] | None:
    return index(layer, "layer", "(0, 1, ...) or 'all'", also=("all",))


def _head(head: Head) -> int | Literal["all"] | None:
    head = index(head, "head", "(0, 1, ...), 'mean' or 'all'", also=("all", "mean"))
    return None if head == "mean" else head


def scale_rows(weights: np.ndarray, visible: np.ndarray, largest: np.ndarray | None = None
               ) -> np.ndarray:
    """Each row divided by its largest visible weight (a row that saw nothing stays 0), or by
    ``largest`` (its whole row's, for a window: see :attr:`Heatmap.row_largest`).

    Shape: ``(Q, K), (Q, K), (Q,) -> (Q, K)``, values 0 to 1.
    """
    shown = np.where(visible, weights, 0.0)
    if largest is not None:
        largest = np.asarray(largest, dtype=np.float64)[:, None]  # (Q, 1)
    else:
        largest = shown.max(axis=-1, keepdims=True) if shown.size else shown  # (Q, 1)
    return np.divide(shown, largest, out=np.zeros(shown.shape, dtype=np.float32),
                     where=largest > 0)


# --- Windows: positions A to B-1 of a long map ---------------------------------------------


# --- Listings: each query's strongest keys ------------------------------------------------


def top_keys(heatmap: Heatmap, count: int) -> list[list[tuple[int, float]]]:
    """For each row, its ``count`` largest visible weights: ``(column, weight)``, largest
    first (ties in column order). A masked key is never listed.

    Shape: ``Q`` lists of at most ``count`` pairs; columns index ``heatmap.key_tokens``.
    """
    if count < 1:
        raise AttnvizError(f"top_k {count} is not a count: give 1 or more", setting="top_k")
    listing = []
    for weights, visible in zip(heatmap.weights, heatmap.visible, strict=True):
        order = np.argsort(-weights, kind="stable")  # (K,)
        order = order[visible[order]][:count]
        listing.append([(int(column), float(weights[column])) for column in order])
    return listing


def _visible(kind: str, layer: np.ndarray) -> np.ndarray:
    """Where keys could be seen. Masked self-attention hides the future: the upper triangle,
    when every head's weights there are 0 (a saved map that has weight there was not masked,
    and is drawn whole rather than hatched over).

    Shape: layer ``[H, Q, K]`` -> ``[Q, K]``.
    """
    visible = np.ones(layer.shape[1:], dtype=bool)
    if kind == "decoder_self":
        future = ~np.tril(visible)
        if not layer[:, future].any():
            return ~future
    return visible


def _windowed(heatmap: Heatmap, rows: Span | None, columns: Span | None) -> Heatmap:
    """The part of ``heatmap`` the windows show: rows ``rows``, columns ``columns`` (None:
    all of them)."""
    if rows is None and columns is None:
        return heatmap
    q_count, k_count = heatmap.weights.shape
    top, bottom = (0, q_count) if rows is None else rows.clip(q_count, heatmap.kind, "queries")
    left, right = (0, k_count) if columns is None else columns.clip(k_count, heatmap.kind, "keys")
    if heatmap.predicts and bottom < q_count:  # the last row shown predicts the next input
        last_next = _token_label(heatmap.query_tokens[bottom],
                                 heatmap.query_written.get(bottom))
    else:
        last_next = heatmap.last_next
    whole_weights, whole_visible = heatmap.whole
    return replace(
        heatmap, whole_weights=whole_weights, whole_visible=whole_visible,
        weights=heatmap.weights[top:bottom, left:right],
        visible=heatmap.visible[top:bottom, left:right],
        query_tokens=heatmap.query_tokens[top:bottom], key_tokens=heatmap.key_tokens[left:right],
        query_start=top, key_start=left, windowed=True, last_next=last_next,
        query_written={i - top: w for i, w in heatmap.query_written.items() if top <= i < bottom},
        key_written={i - left: w for i, w in heatmap.key_written.items() if left <= i < right})
