"""How a map fits a terminal's width: the width of its cells and labels, and the pooling of a
map too wide for them (each cell then sums the weight of a block of keys, averaged over a
block of queries). Widths are terminal columns, so labels in Chinese or with emoji fit too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnviz.io.text import columns
from attnviz.maps.views import Heatmap

LABEL_WIDTH = 12  # longest label shown in full; longer ones end with …
PAIR_WIDTH = 19  # a decoder row's "input → next" label: two labels of 8 and the arrow
MIN_LABEL = 3  # on a narrow terminal labels shrink to a third of it, but not below this
MIN_WIDTH = MIN_LABEL + 1 + 2  # a row label, a space and one cell of two columns


@dataclass(frozen=True)
class Grid:
    """What is drawn: a possibly pooled map with its labels. Shape: weights, visible ``[R, C]``."""

    weights: np.ndarray
    visible: np.ndarray
    row_labels: list[str]
    column_labels: list[str]
    factor: int  # 1, or how many queries (rows) and keys (columns) each cell pools
    # The brightest values of the row and panel scales, from the whole map a window shows
    # (pooled alike): a window is a view onto its map. Shape: row_largest ``(R,)``.
    row_largest: np.ndarray | None = None
    largest: float | None = None


@dataclass(frozen=True)
class Layout:
    """How a map fits a terminal: every grid line is ``label_width + 1 + columns * cell`` wide."""

    cell: int  # terminal columns per cell: 3, or 2 when the map must be pooled
    factor: int  # queries and keys pooled into one cell (1: none)
    label_width: int  # terminal columns of the row labels


def fit(query_labels: list[str], k_count: int, width: int, cap: int = LABEL_WIDTH
        ) -> Layout | None:
    """The layout whose every line fits ``width`` columns, pooling as little as it can.

    Cells of three columns when the whole map fits so, else cells of two and the smallest
    pooling factor that fits. Row labels take at most ``cap`` columns (:data:`LABEL_WIDTH`,
    or :data:`PAIR_WIDTH` for "input → next" rows), and at most a third of a narrow
    terminal. None when even that cannot fit (``width`` below :data:`MIN_WIDTH`).
    """
    cap = min(cap, max(MIN_LABEL, (width - 1) // 3))
    if width - cap - 1 < 2:
        return None

    def label_width(factor: int) -> int:
        return max(1, min(cap, widest_row_label(query_labels, factor)))

    def fits(factor: int, cell: int) -> bool:
        return label_width(factor) + 1 + -(-k_count // factor) * cell <= width

    if fits(1, 3):
        return Layout(3, 1, label_width(1))
    # Labels take 1 to `cap` columns, so the factor lies between these two. The upper one
    # always fits: ceil(K / f) <= floor(room / 2) columns of two. (Dividing by the room
    # instead, ceil(2K / room), gives one column too many when the room is odd.)
    lowest = -(-k_count // ((width - 2) // 2))
    highest = -(-k_count // ((width - cap - 1) // 2))
    factor = next(f for f in range(lowest, highest + 1) if fits(f, 2))
    return Layout(2, factor, label_width(factor))


def widest_row_label(labels: list[str], factor: int) -> int:
    """Terminal columns of the widest row label :func:`pool` writes for ``factor``."""
    if factor <= 1:
        return max((columns(label) for label in labels), default=0)
    return max(columns(_span(first, min(len(labels), first + factor) - 1)) + 1
               + columns(labels[first]) for first in range(0, len(labels), factor))


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def pool(heatmap: Heatmap, factor: int) -> Grid:
    """Blocks of ``factor`` queries by ``factor`` keys become one cell.

    A cell holds the weight its queries give to its keys: summed over the keys, averaged over
    the queries, so each row still sums to 1. A cell is masked only if all its keys were.
    A factor of 1 keeps the map as it is. For a window, the whole map is pooled in blocks
    lined up with the window's, for the brightest values of the row and panel scales.
    """
    q_count, k_count = heatmap.weights.shape
    row_largest = largest = None
    if heatmap.windowed:
        whole, seen = heatmap.whole  # (Q_all, K_all)
        rows = slice(heatmap.query_start, heatmap.query_start + q_count)
        row_cells, row_seen = _pooled(whole[rows], seen[rows], factor, 0, heatmap.key_start)
        row_largest = np.where(row_seen, row_cells, 0.0).max(axis=-1)  # (R,)
        cells, cells_seen = _pooled(whole, seen, factor, heatmap.query_start,
                                    heatmap.key_start)
        largest = float(cells[cells_seen].max()) if cells_seen.any() else 0.0
    if factor <= 1:
        return Grid(heatmap.weights, heatmap.visible, heatmap.query_labels,
                    heatmap.key_labels, 1, row_largest, largest)
    weights, pooled_visible = _pooled(heatmap.weights, heatmap.visible, factor)
    rows, cols = weights.shape

    def spans(count: int, total: int, labels: list[str] | None = None) -> list[str]:
        """Token positions of each block, and (for rows) the block's first token."""
        names = []
        for i in range(count):
            first, last = i * factor, min(total, (i + 1) * factor) - 1
            names.append(_span(first, last) + (f" {labels[first]}" if labels else ""))
        return names

    return Grid(weights, pooled_visible, spans(rows, q_count, heatmap.query_labels),
                spans(cols, k_count), factor, row_largest, largest)


def _pooled(weights: np.ndarray, visible: np.ndarray, factor: int, row_start: int = 0,
            column_start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``weights`` pooled as :func:`pool` pools them, in blocks whose edges fall on positions
    ``row_start`` and ``column_start`` (a window's first row and column in its whole map).

    Shape: ``(Q, K) -> (R, C)`` for the weights and the visible cells.
    """
    if factor <= 1:
        return weights, visible
    q_count, k_count = weights.shape
    top, left = -row_start % factor, -column_start % factor  # empty places before the first
    rows, cols = -(-(q_count + top) // factor), -(-(k_count + left) // factor)
    padded = np.zeros((rows * factor, cols * factor), dtype=np.float64)
    padded[top:top + q_count, left:left + k_count] = weights
    seen = np.zeros(padded.shape, dtype=bool)
    seen[top:top + q_count, left:left + k_count] = visible
    real = np.zeros(rows * factor, dtype=bool)
    real[top:top + q_count] = True
    queries_per_row = real.reshape(rows, factor).sum(axis=1)  # (R,)
    pooled = padded.reshape(rows, factor, cols, factor).sum(axis=(1, 3))  # (R, C)
    return (pooled / np.maximum(queries_per_row, 1)[:, None],
            seen.reshape(rows, factor, cols, factor).any(axis=(1, 3)))
