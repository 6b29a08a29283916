"""What a Hugging Face model's config says: the kind of model, its sizes (layers, heads,
positions) and its special tokens."""

from __future__ import annotations

from typing import Any

from attnviz.errors import AttnvizError
from attnviz.io.text import printable

ENCODER_DECODER, ENCODER_ONLY, DECODER_ONLY = "encoder-decoder", "encoder-only", "decoder-only"


def model_kind(config: Any) -> str:
    """Whether a model's config describes an encoder-decoder, an encoder-only or a
    decoder-only model.

    A model type that transformers builds both as a causal and as a masked language model
    (BERT, RoBERTa) is an encoder unless its config says it is a decoder.
    """
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return ENCODER_DECODER
    model_type = getattr(config, "model_type", "")
    if getattr(config, "is_decoder", False) or (
            model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES):
        return DECODER_ONLY
    return ENCODER_ONLY


def position_limit(config: Any) -> int | None:
    """The most tokens the model's positions cover, or None (relative positions, as T5's)."""
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def architecture(config: Any) -> str:
    names = getattr(config, "architectures", None) or []
    return str(names[0]) if names else type(config).__name__.removesuffix("Config")


def decoder_start(config: Any, name: str) -> int:
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(getattr(config, "decoder", None), "decoder_start_token_id", None)
    if not isinstance(start, int):
        raise AttnvizError(f"{printable(name)}'s config names no decoder_start_token_id, the "
                           "token its decoder starts from; set it in config.json")
    return start


def drop_end(config: Any, ids: list[int]) -> list[int]:
    """The decoder's input: ``ids`` (begin token first) without a final end token, which is
    written but never read. Shape: ``(T + 1,) -> (T,)``."""
    ends = getattr(config, "eos_token_id", None)
    ends = set(ends) if isinstance(ends, list) else {ends}
    return ids[:-1] if len(ids) > 1 and ids[-1] in ends else ids


def sizes(config: Any, kind: str) -> tuple[int, int, int]:
    """Encoder layers, decoder layers (0 where there is none) and the most heads a layer has,
    from the names transformers' configs use."""
    def first(*names: str) -> int:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 1

    layers = first("num_hidden_layers", "encoder_layers", "num_layers", "n_layer")
    heads = max(first("encoder_attention_heads", "num_attention_heads", "num_heads", "n_head"),
                first("decoder_attention_heads", "num_attention_heads", "num_heads", "n_head"))
    if kind == ENCODER_ONLY:
        return layers, 0, heads
    if kind == DECODER_ONLY:
        return 0, layers, heads
    return (first("encoder_layers", "num_layers", "num_hidden_layers"),
            first("decoder_layers", "num_decoder_layers", "num_layers", "num_hidden_layers"),
            heads)
