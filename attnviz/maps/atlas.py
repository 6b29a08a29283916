"""The head atlas: the figures of every head of every kind and layer (:mod:`.heads`), the
label each head earns where a figure says clearly what it does, and the atlas as a file.

For a corpus, each head's figures are the means over its lines, with their spread (the
standard deviation over the lines); the lines are combined in their order, so the result is
the same, to the last bit, in whatever order or on whatever machines they were measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnviz.io.text import printable
from attnviz.maps.caption import caption
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.maps.heads import FIGURES, INDUCTION, Figures, kinds_of, measure, with_induction
from attnviz.maps.kinds import WEIGHTS

# The labels, in the order they are given: a head takes the first whose figure reaches its
# threshold (a head that puts most of every row on the previous token is a previous-token
# head, even though its rows are narrow too).
LABELS = (
    ("induction", INDUCTION, 0.4),
    ("previous-token", "previous", 0.5),
    ("self", "self", 0.5),
    ("sink", "first", 0.5),
    ("broad", "entropy", 0.9),
)
DEFINITIONS = {
    "entropy": "the row's entropy / log(keys it can see): 0, one key takes all; 1, uniform",
    "first": "the weight on key 0 (the sink)",
    "previous": "the weight on key q - 1, over the queries q >= 1 (self-attention kinds)",
    "self": "the weight on key q (self-attention kinds)",
    "distance": "the expected |q - k| / (keys it can see) (self-attention kinds)",
    INDUCTION: "on a random sequence of n tokens read twice, the weight from each query q "
               "of the second copy on key q - n + 1 (Olsson et al., 2022)",
}
AVERAGED = ("each figure is a mean over the queries that can see at least two keys; a corpus "
            "gives the mean over its lines and the spread (standard deviation) between them")
DIGITS = 6  # decimals of the figures in a file: float32 maps hold about 7


def threshold_text(label: str) -> str:
    """A label's rule, as the outputs write it: ``previous-token: previous >= 0.5``."""
    figure, threshold = next((f, t) for name, f, t in LABELS if name == label)
    return f"{label}: {figure} >= {threshold}"


@dataclass(frozen=True, eq=False)
class Atlas:
    """The figures of every head, by kind (in :data:`attnviz.maps.kinds.KINDS` names).

    Shape: ``figures[kind][figure]`` and ``spread[kind][figure]`` are ``[L, H]``, float64,
    NaN where a figure does not apply or was not measured.
    """

    figures: dict[str, Figures]
    provenance: Provenance  # of the maps measured (of a corpus: the model's, no texts)
    spread: dict[str, Figures] | None = None  # of a corpus: standard deviation over lines
    lines: int | None = None  # of a corpus: how many lines were measured
    corpus: str | None = None  # of a corpus: the pairs file, as messages name it
    # The repeated sequence the induction score was measured on (its length and seed), as
    # its maps' provenance says it; None when it was not measured.
    induction: dict[str, Any] | None = None

    @property
    def kinds(self) -> list[str]:
        return kinds_of(self.figures)

    @property
    def caption(self) -> str:
        """Where the maps come from, and what the figures average: one printable line."""
        line = caption(self.provenance)
        if self.lines is not None:
            line += f" · corpus {self.corpus or 'pairs'}: mean of {self.lines} lines"
        if self.induction is not None:
            line += f" · induction: {self.induction.get('length')} random tokens read twice"
        return printable(line)

    @property
    def measure(self) -> str:
        """What the maps measured held: ``attention`` or ``norm`` (see ``WEIGHTS``)."""
        value = self.provenance.options.get("weights")
        return value if value in WEIGHTS else "attention"

    @property
    def names(self) -> tuple[str, ...]:
        """The figures measured: :data:`FIGURES`, and the induction score when measured."""
        measured = any(INDUCTION in figures for figures in self.figures.values())
        return (*FIGURES, INDUCTION) if measured else FIGURES

    def shape(self, kind: str) -> tuple[int, int]:
        """Layers and heads of ``kind``."""
        layers, heads = self.figures[kind][FIGURES[0]].shape
        return layers, heads

    def label(self, kind: str, layer: int, head: int) -> str | None:
        """The label of one head: the first of :data:`LABELS` whose figure reaches its
        threshold, or None."""
        figures = self.figures[kind]
        for name, figure, threshold in LABELS:
            if figure in figures and figures[figure][layer, head] >= threshold:
                return name
        return None

    def limit(self, figure: str) -> float:
        """The largest value of ``figure`` over every head of every kind (at least 1e-6):
        the top of its colour scale."""
        values = [self.figures[kind][figure] for kind in self.kinds if figure in
                  self.figures[kind]]
        found = [float(np.nanmax(v)) for v in values if np.isfinite(v).any()]
        return max(max(found, default=0.0), 1e-6)

    def top(self, label: str, count: int) -> list[tuple[str, int, int, float]]:
        """The ``count`` heads labelled ``label`` whose figure is largest: (kind, layer,
        head, figure), largest first (ties in kind, layer and head order)."""
        figure = next(f for name, f, _ in LABELS if name == label)
        found = [(kind, layer, head, float(self.figures[kind][figure][layer, head]))
                 for kind in self.kinds for layer in range(self.shape(kind)[0])
                 for head in range(self.shape(kind)[1])
                 if self.label(kind, layer, head) == label]
        return sorted(found, key=lambda item: -item[3])[:count]

    def records(self) -> list[dict[str, Any]]:
        """One record per head: its kind, layer, head, figures (None where they do not
        apply), label, and for a corpus the spread of each figure."""
        records = []
        for kind in self.kinds:
            layers, heads = self.shape(kind)
            for layer in range(layers):
                for head in range(heads):
                    record: dict[str, Any] = {"kind": kind, "layer": layer, "head": head}
                    for name in self.names:
                        record[name] = _number(self.figures[kind].get(name), layer, head)
                    record["label"] = self.label(kind, layer, head)
                    if self.spread is not None:
                        record["spread"] = {name: _number(self.spread[kind].get(name), layer,
                                                          head) for name in self.names}
                    records.append(record)
        return records

    def to_json(self) -> dict[str, Any]:
        """The atlas as a json object: ``heads`` (:meth:`records`), what the figures and the
        labels mean, and where the maps come from."""
        data: dict[str, Any] = {
            "heads": self.records(),
            "weights": self.measure,
            "labels": {name: f"{figure} >= {threshold}" for name, figure, threshold in LABELS},
            "figures": {name: DEFINITIONS[name] for name in self.names},
            "averaged": AVERAGED,
        }
        if INDUCTION in self.names and self.induction is not None:
            data["induction"] = {key: self.induction.get(key) for key in ("length", "seed")}
        if self.lines is not None:
            data["corpus"] = {"pairs": self.corpus, "lines": self.lines}
        data["provenance"] = self.provenance.to_dict()
        return data

    def to_bytes(self) -> bytes:
        """The bytes of the atlas's json file: indented, a head's record on each line (a
        7B model's 1,024 heads are 1,024 lines to grep)."""
        data = self.to_json()
        records = ",\n".join("  " + json.dumps(record, ensure_ascii=False, allow_nan=False)
                             for record in data.pop("heads"))
        rest = json.dumps(data, ensure_ascii=False, indent=1, allow_nan=False)  # "{\n ..."
        return ('{\n "heads": [\n' + records + "\n ],\n" + rest[2:] + "\n").encode("utf-8")


def atlas_of(maps: AttentionMaps, repeated: AttentionMaps | None = None) -> Atlas:
    """The atlas of the heads of ``maps``, with the induction score from ``repeated``, the
    same model's maps of a repeated random sequence (see :func:`attnviz.maps.heads.measure`)."""
    facts = None if repeated is None else repeated.provenance.options.get("repeated")
    return Atlas(measure(maps, repeated), maps.provenance,
                 induction=facts if isinstance(facts, dict) else None)


def combine(measured: Sequence[dict[str, Figures]], provenance: Provenance,
            corpus: str | None = None, repeated: AttentionMaps | None = None) -> Atlas:
    """The atlas of a corpus: each head's figures averaged over the lines ``measured`` (in
    their order), with their spread. A line where a figure is NaN (a line of one token) is
    left out of that figure's mean. The induction score is the model's, measured once on
    ``repeated`` (see :func:`attnviz.maps.heads.with_induction`): it has no spread.

    Raises ValueError when the lines' kinds or shapes differ (maps of different models).
    """
    if not measured:
        raise ValueError("a corpus atlas needs at least one line")
    first = measured[0]
    means: dict[str, Figures] = {}
    spreads: dict[str, Figures] = {}
    for kind in kinds_of(first):
        means[kind], spreads[kind] = {}, {}
        for name in FIGURES:
            try:
                stacked = np.stack([line[kind][name] for line in measured])  # (N, L, H)
            except (KeyError, ValueError):
                raise ValueError(f"the lines' maps differ in their {kind} heads") from None
            found = np.isfinite(stacked)
            count = found.sum(axis=0)  # (L, H)
            total = np.where(found, stacked, 0.0).sum(axis=0)
            mean = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
            apart = np.where(found, stacked - mean, 0.0)
            spread = np.sqrt(np.divide((apart ** 2).sum(axis=0), count,
                                       out=np.full(count.shape, np.nan), where=count > 0))
            means[kind][name], spreads[kind][name] = mean, spread
    facts = None
    if repeated is not None:
        with_induction(means, repeated)
        for kind in means:  # measured once: no spread
            spreads[kind][INDUCTION] = np.full(means[kind][INDUCTION].shape, np.nan)
        facts = repeated.provenance.options.get("repeated")
    return Atlas(means, provenance, spreads, len(measured), corpus,
                 facts if isinstance(facts, dict) else None)


def _number(values: np.ndarray | None, layer: int, head: int) -> float | None:
    """A figure as a file writes it: rounded to :data:`DIGITS` decimals; None for NaN."""
    if values is None:
        return None
    value = float(values[layer, head])
    return None if math.isnan(value) else round(value, DIGITS)
