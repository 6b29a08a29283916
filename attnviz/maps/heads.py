"""What each head does, in figures computed from its maps alone: how spread its rows are,
and how much of them goes to the first key, the previous one, the query itself, how far
back, and (on a repeated random sequence) to the token after the same token's last time.

Every figure is a mean over the queries of one head that can see at least two keys (a
query that sees one key has no choice to make; a row of zeros saw none), with the keys each
query can see taken from the map: every key, or in masked self-attention (where every head
of a layer puts exactly 0 above the diagonal) keys 0 to q. For a query q that sees the
n_q keys K_q, with weights w_qk (Σ_k w_qk = 1):

    entropy   -Σ_k w_qk log w_qk / log n_q      0: one key takes all; 1: uniform
    first     w_q0                              the weight on key 0 (the sink)
    previous  w_q,q-1, over the queries q >= 1  self-attention kinds only
    self      w_qq                              self-attention kinds only
    distance  Σ_k w_qk |q - k| / n_q            self-attention kinds only
    induction w_q,q-n+1, over the queries q of the second copy of a random sequence of n
              tokens read twice (Olsson et al., 2022; TransformerLens's induction score):
              the weight on the token after the same token's occurrence in the first copy

A figure that does not apply (``previous`` of cross-attention), or that no query can give
(a text of one token), is NaN. The figures are computed a few heads at a time, in float64,
so that a long text's maps are never copied whole.
"""

from __future__ import annotations

import numpy as np

from attnviz.maps.data import AttentionMaps
from attnviz.maps.kinds import KINDS

FIGURES = ("entropy", "first", "previous", "self", "distance")  # from the maps of a text
INDUCTION = "induction"  # from the maps of a repeated random sequence
SELF_ONLY = ("previous", "self", "distance")  # defined where queries and keys are one text
SELF_KINDS = ("encoder_self", "decoder_self")
Figures = dict[str, np.ndarray]  # figure -> (L, H), float64, NaN where not measured
CHUNK = 2**22  # weights computed at once, in float64 (32 MB a copy): a layer of 32 heads of
#   4,096 tokens, whole, would take 4 GB a copy


def visible_keys(kind: str, layer: np.ndarray) -> np.ndarray:
    """The keys each query of one layer can see: every key, but in masked self-attention,
    where every head's weights above the diagonal are 0, keys 0 to q.

    Shape: layer ``[H, Q, K]`` -> ``[Q, K]``, bool.
    """
    visible = np.ones(layer.shape[1:], dtype=bool)
    if kind == "decoder_self":
        causal = np.tril(visible)
        if not layer[:, ~causal].any():
            return causal
    return visible


def measure_kind(kind: str, stack: np.ndarray) -> Figures:
    """Every figure of :data:`FIGURES` of every head of one kind (see the module's
    docstring for their definitions).

    Shape: stack ``[L, H, Q, K]`` -> each figure ``[L, H]``.
    """
    layers, heads, queries, keys = stack.shape
    figures = {name: np.full((layers, heads), np.nan) for name in FIGURES}
    chunk = max(1, CHUNK // max(queries * keys, 1))  # heads computed at once
    for layer in range(layers):
        visible = visible_keys(kind, stack[layer])  # (Q, K)
        for first in range(0, heads, chunk):
            some = slice(first, min(first + chunk, heads))
            for name, values in _figures(kind, stack[layer, some], visible).items():
                figures[name][layer, some] = values
    return figures


def _figures(kind: str, weights: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
    """The figures of some heads of one layer whose queries see ``visible``.

    Shape: weights ``[h, Q, K]``, visible ``[Q, K]`` -> each figure ``[h]``.
    """
    heads, queries, keys = weights.shape
    shown = np.where(visible, np.asarray(weights, dtype=np.float64), 0.0)  # (h, Q, K)
    seen = visible.sum(axis=-1)  # (Q,) n_q
    counted = (seen >= 2)[None, :] & (shown.sum(axis=-1) > 0)  # (h, Q)
    logs = np.log(np.where(shown > 0, shown, 1.0))  # log w, 0 where w = 0
    spread = -(shown * logs).sum(axis=-1) / np.log(np.maximum(seen, 2))  # (h, Q)
    del logs
    figures = {"entropy": _mean(spread, counted)}
    if keys:
        figures["first"] = _mean(shown[..., 0], counted)
    if kind not in SELF_KINDS or queries != keys:
        return figures
    q = np.arange(queries)
    back = np.abs(q[:, None] - q[None, :])  # (Q, K): |q - k|
    figures["self"] = _mean(shown[:, q, q], counted)
    figures["distance"] = _mean((shown * back).sum(axis=-1) / np.maximum(seen, 1), counted)
    if queries > 1:
        figures["previous"] = _mean(shown[:, q[1:], q[1:] - 1], counted[:, 1:])
    return figures


def induction(stack: np.ndarray, start: int, length: int) -> np.ndarray:
    """The induction score of every head: the mean weight from each query q of the second
    copy of a sequence of ``length`` tokens read twice, its first copy at position ``start``,
    to key q - length + 1.

    Shape: stack ``[L, H, Q, K]`` -> ``[L, H]``; NaN when the maps do not hold both copies.
    """
    queries = np.arange(start + length, start + 2 * length)  # (n,) the second copy
    keys = queries - length + 1  # (n,) the token after each one's first occurrence
    layers, heads, q_count, k_count = stack.shape
    if start < 0 or queries[-1] >= q_count or queries[-1] >= k_count:
        return np.full((layers, heads), np.nan)
    return np.asarray(stack[:, :, queries, keys], dtype=np.float64).mean(axis=-1)  # (L, H)


def measure(maps: AttentionMaps, repeated: AttentionMaps | None = None
            ) -> dict[str, Figures]:
    """The figures of every head of every kind of ``maps``, by kind, and (given the maps of
    a repeated random sequence by the same model, ``repeated``) the induction score of
    every self-attention kind (see :func:`with_induction`)."""
    figures = {kind: measure_kind(kind, maps.stack(kind)) for kind in maps.kinds}
    return figures if repeated is None else with_induction(figures, repeated)


def with_induction(figures: dict[str, Figures], repeated: AttentionMaps) -> dict[str, Figures]:
    """``figures`` with the induction score of each kind, from ``repeated``, the maps of a
    repeated random sequence: NaN for a kind the sequence was not read by (cross-attention,
    an encoder run alone).

    ``repeated``'s provenance says where the sequence's first copy starts in each kind
    (``options["repeated"]``, as :class:`attnviz.sources.base.Repeated` writes it).
    """
    facts = repeated.provenance.options.get("repeated") or {}
    starts, length = facts.get("starts") or {}, facts.get("length")
    for kind, found in figures.items():
        shape = found[FIGURES[0]].shape
        if kind in SELF_KINDS and kind in repeated.kinds and isinstance(starts.get(kind), int) \
                and isinstance(length, int) and repeated.stack(kind).shape[:2] == shape:
            found[INDUCTION] = induction(repeated.stack(kind), starts[kind], length)
        else:
            found[INDUCTION] = np.full(shape, np.nan)
    return figures


def kinds_of(figures: dict[str, Figures]) -> list[str]:
    """The kinds of ``figures``, in drawing order."""
    return [kind for kind in KINDS if kind in figures]


def _mean(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Each head's mean of ``values`` over its ``counted`` queries; NaN for none.

    Shape: ``(H, Q), (H, Q) -> (H,)``.
    """
    count = counted.sum(axis=-1)  # (H,)
    total = np.where(counted, values, 0.0).sum(axis=-1)
    return np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
