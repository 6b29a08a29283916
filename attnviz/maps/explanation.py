"""One head of one attention layer, step by step: what ``attnviz explain`` draws and saves.

    weights = softmax(Q Kᵀ / √d_k + M)

An :class:`Explanation` holds, for one head, the queries Q, keys K and values V of one forward
pass of an attnviz model, the scaled scores Q Kᵀ / √d_k, the mask (M is 0 where it is True,
-inf where it is False) and the weights, which are the model's own (the same numbers as the
maps of that layer and head). It is plain numpy, so saving it needs no torch; the model
side is the forward pass's :class:`attnviz.model.transformer.Intermediates`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from attnviz.maps.data import Provenance, short_text
from attnviz.maps.kinds import KINDS, TITLES

ARRAYS = ("queries", "keys", "values", "scores", "mask", "weights")  # saved, with the tokens

MASKS = {
    "encoder_self": "none: every source token may see every other",
    "decoder_self": "the causal triangle: a position sees itself and the positions before it",
    "cross": "none: every decoder position may see every source token",
}


@dataclass(frozen=True, eq=False, repr=False)
class Explanation:
    """The formula's parts for one head of one attention layer.

    Args:
        kind: ``encoder_self``, ``decoder_self`` or ``cross``.
        layer: the layer, counting from 0.
        head: the head, counting from 0.
        heads: H, the layer's number of heads.
        d_model: D, the model's width; each head works in d_k = D / H.
        queries, keys, values: the head's projections.
        scores: Q Kᵀ / √d_k, before the mask.
        mask: True where the key may be attended to (M = 0), False where it is hidden
            (M = -inf).
        weights: softmax(scores + M): the model's own weights for this layer and head.
        query_tokens, key_tokens: labels of the rows of Q and of K and V.
        provenance: where it comes from (model, texts, attnviz version).

    Shape:
        - queries: ``[Q, d_k]``; keys, values: ``[K, d_k]``
        - scores, mask, weights: ``[Q, K]``
    """

    kind: str
    layer: int
    head: int
    heads: int
    d_model: int
    queries: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    scores: np.ndarray
    mask: np.ndarray
    weights: np.ndarray
    query_tokens: list[str]
    key_tokens: list[str]
    provenance: Provenance = field(default_factory=Provenance)
    # A Hugging Face model's head says more: the factor of Q Kᵀ (None: 1/√d_k), the bias
    # added to the scores (T5's relative positions, [Q, K], None: none; the scores hold it),
    # the key/value head this query head reads and how many there are (grouped-query
    # attention), and, in words, where Q, K, V come from and what the mask hides.
    scale: float | None = None
    bias: np.ndarray | None = None
    key_value_head: int | None = None
    key_value_heads: int | None = None
    described: dict[str, str] | None = None  # queries, keys, values, mask: in words

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        q, k, d_k = len(self.query_tokens), len(self.key_tokens), self.d_k
        d_v = self.values.shape[-1] if self.values.ndim == 2 else d_k
        expected = {"queries": (q, d_k), "keys": (k, d_k), "values": (k, d_v),
                    "scores": (q, k), "mask": (q, k), "weights": (q, k)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {list(shape)}, got "
                                 f"{list(getattr(self, name).shape)}")
        if self.mask.dtype != np.bool_:
            raise ValueError(f"mask must be boolean, got {self.mask.dtype}")

    def __repr__(self) -> str:
        """What was explained and the shapes of its parts, never their numbers."""
        shapes = self.shapes
        return (f"Explanation(kind={self.kind!r}, layer={self.layer}, head={self.head}, "
                f"heads={self.heads}, d_model={self.d_model},\n"
                f"            queries={shapes['queries']}, keys={shapes['keys']}, "
                f"values={shapes['values']},\n"
                f"            scores={shapes['scores']}, weights={shapes['scores']}, "
                f"model={short_text(self.provenance.model)!r})")

    @property
    def d_k(self) -> int:
        """The width of one head's queries and keys (d_model / heads in attnviz's models)."""
        return int(self.queries.shape[-1]) if self.queries.ndim == 2 else \
            self.d_model // self.heads

    @property
    def scores_name(self) -> str:
        """The formula's first step as this head computes it: ``Q Kᵀ / √d_k``, or with the
        model's own factor and bias."""
        default = self.scale is None or abs(self.scale * self.d_k ** 0.5 - 1.0) < 1e-6
        product = "Q Kᵀ / √d_k" if default else f"{self.scale:g} · Q Kᵀ"
        return product + (" + B" if self.bias is not None else "")

    @property
    def formula(self) -> str:
        return f"weights = softmax({self.scores_name} + M), then output = weights · V"

    @property
    def widths(self) -> str:
        """How wide a head is, and (grouped-query attention) which key/value head it reads."""
        if self.key_value_heads is None:
            return f"d_k = d_model / heads = {self.d_model} / {self.heads} = {self.d_k}"
        line = f"d_k = {self.d_k}, the model's head width"
        if self.key_value_heads != self.heads:
            line += (f"; {self.heads} query heads share {self.key_value_heads} key/value "
                     f"heads (grouped-query attention): head {self.head} reads key/value head "
                     f"{self.key_value_head}")
        if self.bias is not None:
            line += "; B: the model's position bias, added to every score"
        return line

    def projection(self, letter: str) -> str:
        """How Q, K or V is made from x: a pre-norm block's ``LN(x) W_Q``, or, where the
        model's own code made it (a Hugging Face model), its projection of x."""
        return f"{letter} = LN(x) W_{letter}" if self.described is None else \
            f"{letter} = x W_{letter}"

    @property
    def title(self) -> str:
        return f"{TITLES[self.kind]} · layer {self.layer} · head {self.head}"

    @property
    def letters(self) -> tuple[str, str]:
        """The length letters of the queries and of the keys: S source, T decoder input."""
        return {"encoder_self": ("S", "S"), "decoder_self": ("T", "T"),
                "cross": ("T", "S")}[self.kind]

    @property
    def shapes(self) -> dict[str, str]:
        """Q, K, V, the scores and the weights with their shapes in letters and numbers,
        such as ``[T=9 × d_k=16]``."""
        (q, k), d = self.letters, f"d_k={self.d_k}"
        rows, cols = f"{q}={len(self.query_tokens)}", f"{k}={len(self.key_tokens)}"
        return {"queries": f"[{rows} × {d}]", "keys": f"[{cols} × {d}]",
                "values": f"[{cols} × {d}]", "scores": f"[{rows} × {cols}]"}

    @property
    def origins(self) -> dict[str, str]:
        """Where the queries, the keys and the values come from, in words. Each block is
        pre-norm: its attention reads its input through a LayerNorm."""
        if self.described is not None:
            return {name: self.described[name] for name in ("queries", "keys", "values")}
        side = "encoder" if self.kind == "encoder_self" else "decoder"
        below = (f"the output of {side} layer {self.layer - 1}" if self.layer else
                 f"the {'source' if side == 'encoder' else 'decoder input'}'s embeddings "
                 "+ positions")
        if self.kind == "encoder_self":
            query = key_value = f"the source: {below}, normalised"
        elif self.kind == "decoder_self":
            query = key_value = f"the decoder's input (<bos>, then the target): {below}, normalised"
        else:
            query = (f"the decoder: {below}, after layer {self.layer}'s masked "
                     "self-attention, normalised")
            key_value = "the encoder's final output (its last layer, then its final norm)"
        return {"queries": query, "keys": key_value, "values": key_value}

    @property
    def mask_meaning(self) -> str:
        """What the mask of this kind hides, in words."""
        if self.described is not None:
            return self.described["mask"]
        return MASKS[self.kind]

    @property
    def masked(self) -> bool:
        """Whether the mask hides anything."""
        return not bool(self.mask.all())

    @property
    def map_name(self) -> str:
        """Where the weights are in the maps of the same run: ``decoder_self[1, 0]``."""
        return f"{self.kind}[{self.layer}, {self.head}]"

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of an npz file: the six of :data:`ARRAYS`, the token labels, and what
        was explained (kind, layer, head, sizes, provenance) as a JSON string."""
        arrays = {name: np.asarray(getattr(self, name)) for name in ARRAYS}
        arrays["query_tokens"] = np.array(self.query_tokens, dtype=str)
        arrays["key_tokens"] = np.array(self.key_tokens, dtype=str)
        arrays["explained"] = np.array(json.dumps(self._about(), ensure_ascii=False))
        return arrays

    def to_json(self) -> dict:
        """The same keys as :meth:`to_arrays`, arrays as nested lists."""
        data = {name: np.asarray(getattr(self, name)).tolist() for name in ARRAYS}
        data.update(query_tokens=list(self.query_tokens), key_tokens=list(self.key_tokens),
                    explained=self._about())
        return data

    def to_bytes(self, fmt: str) -> bytes:
        """The bytes of an ``npz`` or ``json`` file of this explanation."""
        from attnviz.io import arrays as array_files

        if fmt == "npz":
            return array_files.npz_bytes(self.to_arrays())
        if fmt == "json":
            return array_files.json_bytes(self.to_json())
        raise ValueError(f"an explanation is saved as npz or json, not {fmt!r}")

    def _about(self) -> dict:
        about = {"kind": self.kind, "layer": self.layer, "head": self.head,
                 "heads": self.heads, "d_model": self.d_model, "d_k": self.d_k,
                 "provenance": self.provenance.to_dict()}
        if self.described is not None:
            about.update(scale=self.scale, key_value_head=self.key_value_head,
                         key_value_heads=self.key_value_heads, described=self.described)
        return about
