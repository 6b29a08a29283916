"""One head of a Hugging Face model, step by step: the :class:`Explanation` of what attnviz's
attention function took and gave in one layer (see :mod:`.recorder`), with where Q, K and V
came from and what the mask hides, in words."""

from __future__ import annotations

from typing import Any

import numpy as np

from attnviz.maps.data import Provenance
from attnviz.maps.explanation import Explanation


def explanation(explained: Any, prepared: Any, kind: str, layer: int, head: int,
                provenance: Provenance) -> Explanation:
    """The explanation of ``explained`` (a :class:`~.recorder.Explained`), the head ``head``
    of layer ``layer`` of ``kind`` in the pass ``prepared``.

    Shape: queries ``[Q, d]``, keys and values ``[K, d]``, scores, mask, weights ``[Q, K]``.
    """
    import torch

    from attnviz.model.attention import attention_scores

    e = explained
    with torch.inference_mode():
        scores = attention_scores(e.queries, e.keys, scale=e.scale, bias=e.bias)  # (Q, K)
    queries, keys = len(e.queries), len(e.keys)
    mask = np.ones((queries, keys), dtype=bool) if e.mask is None else \
        np.broadcast_to(e.mask.numpy(), (queries, keys)).copy()
    source, target = prepared.source_tokens, prepared.target_tokens
    query_tokens = source if kind == "encoder_self" else target
    key_tokens = target if kind == "decoder_self" else source
    config = prepared.config
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or \
        e.heads * e.queries.shape[-1]
    return Explanation(
        kind=kind, layer=layer, head=head, heads=e.heads, d_model=int(width),
        queries=e.queries.numpy(), keys=e.keys.numpy(), values=e.values.numpy(),
        scores=scores.numpy(), mask=mask, weights=e.weights.numpy(),
        query_tokens=list(query_tokens), key_tokens=list(key_tokens), provenance=provenance,
        scale=e.scale, bias=None if e.bias is None else e.bias.numpy(),
        key_value_head=head // (e.heads // e.key_value_heads), key_value_heads=e.key_value_heads,
        described=described(config, kind, layer, mask, e.bias is not None))


def described(config: Any, kind: str, layer: int, mask: np.ndarray, biased: bool
              ) -> dict[str, str]:
    """Where the queries, keys and values of a Hugging Face layer come from, and what its
    mask hides, in words."""
    side = "encoder" if kind == "encoder_self" else "decoder"
    below = f"the output of {side} layer {layer - 1}" if layer else \
        f"the {side}'s input embeddings"
    positions = position_code(config, biased)
    own = f"{below} (as the layer's own norm gives it, where it has one)"
    if kind == "cross":
        query = f"the decoder: {own}, after layer {layer}'s self-attention"
        key_value = "the encoder's final output"
    else:
        query = key_value = f"the {'source' if side == 'encoder' else 'decoder input'}: {own}"
    return {"queries": f"{query}; {positions}", "keys": f"{key_value}; {positions}",
            "values": key_value, "mask": mask_words(mask)}


def position_code(config: Any, biased: bool) -> str:
    """The model's position code, as it reaches these queries and keys."""
    if biased:
        return "no position code in Q and K: the model adds a relative position bias B to " \
               "the scores"
    rotary = getattr(config, "rope_parameters", None) or getattr(config, "rope_theta", None) \
        or getattr(config, "rope_scaling", None) or \
        getattr(config, "position_embedding_type", "") == "rotary"
    if rotary:
        return "after the model's own projection and its rotary position code (RoPE), " \
               "which turns each query and key by its position"
    return "after the model's own projection; positions were added to the embeddings " \
           "before the first layer"


def mask_words(mask: np.ndarray) -> str:
    """What a boolean mask ``[Q, K]`` hides, in words: nothing, the future, the future and
    keys beyond a sliding window, or a pattern of the model's own."""
    queries, keys = mask.shape
    if mask.all():
        return "none: every key may be seen"
    offset = keys - queries  # queries are the last positions of the keys
    rows = np.arange(queries)[:, None] + offset
    cols = np.arange(keys)[None, :]
    causal = cols <= rows
    if np.array_equal(mask, causal):
        return "the causal triangle: a position sees itself and the positions before it"
    seen = mask.sum(axis=-1)
    window = int(seen.max())
    if np.array_equal(mask, causal & (cols > rows - window)):
        return (f"causal with a sliding window of {window}: a position sees itself and the "
                f"{window - 1} positions before it")
    return "the model's own mask (padding, or a pattern of its own): grey cells are hidden"
