"""A small encoder-decoder transformer whose forward pass returns its attention weights.

Shape letters used in comments and docstrings:
    B batch, H heads, S source length, T target (decoder input) length, L layers,
    D model width (``d_model``), Dh head width (``D / H``), V vocabulary size.

Every attention layer is a :class:`MultiHeadAttention`, and every one of them calls
:func:`attnviz.attention.scaled_dot_product_attention`:
    - encoder self-attention: queries, keys and values from the source; padding mask only;
    - masked decoder self-attention: from the decoder's own input; causal mask;
    - cross-attention: queries from the decoder (after its masked self-attention),
      keys and values from the encoder's final output.

The blocks are pre-norm (LayerNorm before each sublayer, then a residual add), which
trains small models reliably; the encoder's final output is its last block's output
passed through a final LayerNorm.

:meth:`Transformer.attention_steps` runs the same forward pass up to one attention layer and
returns that layer's queries, keys, values, scores, mask and weights as data
(:class:`AttentionSteps`): what ``attnviz explain`` draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from attnviz import attention
from attnviz.config import ModelConfig
from attnviz.tokenize import BOS_ID, EOS_ID, PAD_ID


@dataclass
class AttentionSteps:
    """One attention layer's steps in one forward pass, every head: the formula's parts.

    ``weights`` are what the layer's forward returns (the same function on the same
    inputs), so they equal the maps of a whole forward pass; softmax(``scores`` + M), with
    M = 0 where ``mask`` is True and -inf where it is False, gives them.
    """

    queries: torch.Tensor  # (B, H, T, Dh): the query input projected by W_Q, split in heads
    keys: torch.Tensor  # (B, H, S, Dh): the key/value input projected by W_K
    values: torch.Tensor  # (B, H, S, Dh): the key/value input projected by W_V
    scores: torch.Tensor  # (B, H, T, S): Q Kᵀ / √Dh, before the mask
    mask: torch.Tensor  # (B, H, T, S) bool: True = the key may be attended to
    weights: torch.Tensor  # (B, H, T, S): softmax(scores + M)


class MultiHeadAttention(nn.Module):
    """Projects inputs to H heads of queries, keys and values, attends, and merges the heads.

    Args:
        d_model: D, width of the inputs and of the output.
        n_heads: H; D must be divisible by H.

    Shape:
        - query_input: ``[B, T, D]``, key_value_input: ``[B, S, D]``
        - mask: boolean, broadcastable to ``[B, H, T, S]``, True = may attend
        - output: ``[B, T, D]``, weights: ``[B, H, T, S]``
    """

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.query_proj = nn.Linear(d_model, d_model)
        self.key_proj = nn.Linear(d_model, d_model)
        self.value_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape  # (B, N, D)
        return x.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)

    def project(self, query_input: torch.Tensor, key_value_input: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values, split in heads.

        Shape: query_input ``[B, T, D]``, key_value_input ``[B, S, D]`` -> queries
        ``[B, H, T, Dh]``, keys and values ``[B, H, S, Dh]``.
        """
        queries = self._split_heads(self.query_proj(query_input))  # (B, H, T, Dh)
        keys = self._split_heads(self.key_proj(key_value_input))  # (B, H, S, Dh)
        values = self._split_heads(self.value_proj(key_value_input))  # (B, H, S, Dh)
        return queries, keys, values

    def forward(
        self,
        query_input: torch.Tensor,
        key_value_input: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        queries, keys, values = self.project(query_input, key_value_input)
        # Looked up on the module at call time, so there is exactly one attention function.
        attended, weights = attention.scaled_dot_product_attention(queries, keys, values, mask)
        batch, _, length, _ = attended.shape  # (B, H, T, Dh)
        merged = attended.transpose(1, 2).reshape(batch, length, -1)  # (B, T, D)
        return self.out_proj(merged), weights  # (B, T, D), (B, H, T, S)

    def steps(
        self,
        query_input: torch.Tensor,
        key_value_input: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> AttentionSteps:
        """What :meth:`forward` computes on these inputs, step by step, before the heads merge.

        The weights come from the one attention function, as in :meth:`forward`; the
        scores, from the function it starts with, without the mask (shown apart).

        Shape: as :meth:`forward`; see :class:`AttentionSteps`.
        """
        queries, keys, values = self.project(query_input, key_value_input)
        _, weights = attention.scaled_dot_product_attention(queries, keys, values, mask)
        scores = attention.attention_scores(queries, keys)  # (B, H, T, S)
        visible = (torch.ones_like(weights, dtype=torch.bool) if mask is None
                   else mask.expand_as(weights))  # (B, H, T, S)
        return AttentionSteps(queries, keys, values, scores, visible, weights)


class FeedForward(nn.Sequential):
    """Position-wise two-layer MLP. Shape: ``[B, N, D] -> [B, N, D]``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )


class EncoderBlock(nn.Module):
    """Self-attention over the source, then a feed-forward layer; each with norm and residual."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(config.d_model)
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, source_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape: x ``[B, S, D]`` -> x ``[B, S, D]``, weights ``[B, H, S, S]``."""
        h = self.self_attention_norm(x)  # (B, S, D)
        attended, weights = self.self_attention(h, h, source_mask)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x, weights

    def self_attention_steps(self, x: torch.Tensor, source_mask: torch.Tensor | None
                             ) -> AttentionSteps:
        """The steps of this block's self-attention on its input ``x`` ``[B, S, D]``."""
        h = self.self_attention_norm(x)  # (B, S, D), as in forward
        return self.self_attention.steps(h, h, source_mask)


class DecoderBlock(nn.Module):
    """Masked self-attention, then cross-attention to the encoder, then a feed-forward layer."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(config.d_model)
        self.self_attention = MultiHeadAttention(config.d_model, config.n_heads)
        self.cross_attention_norm = nn.LayerNorm(config.d_model)
        self.cross_attention = MultiHeadAttention(config.d_model, config.n_heads)
        self.feed_forward_norm = nn.LayerNorm(config.d_model)
        self.feed_forward = FeedForward(config.d_model, config.d_ff, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        y: torch.Tensor,
        memory: torch.Tensor,
        self_mask: torch.Tensor,
        cross_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shape: y ``[B, T, D]``, memory ``[B, S, D]`` -> y ``[B, T, D]``,
        self weights ``[B, H, T, T]``, cross weights ``[B, H, T, S]``."""
        y, self_weights = self._self_attend(y, self_mask)
        # Queries: the decoder after its masked self-attention; keys and values: the encoder.
        attended, cross_weights = self.cross_attention(self.cross_attention_norm(y), memory,
                                                       cross_mask)
        y = y + self.dropout(attended)
        y = y + self.dropout(self.feed_forward(self.feed_forward_norm(y)))
        return y, self_weights, cross_weights

    def _self_attend(self, y: torch.Tensor, self_mask: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked self-attention sublayer with its residual: ``[B, T, D]`` -> the same,
        and its weights ``[B, H, T, T]``."""
        h = self.self_attention_norm(y)  # (B, T, D)
        attended, self_weights = self.self_attention(h, h, self_mask)
        return y + self.dropout(attended), self_weights

    def self_attention_steps(self, y: torch.Tensor, self_mask: torch.Tensor) -> AttentionSteps:
        """The steps of this block's masked self-attention on its input ``y`` ``[B, T, D]``."""
        h = self.self_attention_norm(y)  # (B, T, D), as in _self_attend
        return self.self_attention.steps(h, h, self_mask)

    def cross_attention_steps(self, y: torch.Tensor, memory: torch.Tensor,
                              self_mask: torch.Tensor, cross_mask: torch.Tensor | None
                              ) -> AttentionSteps:
        """The steps of this block's cross-attention, for the block's input ``y`` ``[B, T, D]``:
        queries from ``y`` after the masked self-attention, keys and values from ``memory``."""
        y, _ = self._self_attend(y, self_mask)
        return self.cross_attention.steps(self.cross_attention_norm(y), memory, cross_mask)


def sinusoidal_positions(length: int, width: int, device: torch.device) -> torch.Tensor:
    """The fixed sine/cosine position code of "Attention Is All You Need".

    Computed for any length, so the encoder reads texts of any length. Shape: ``[length, D]``.
    """
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (N, 1)
    frequency = torch.exp(
        torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width)
    )  # (D/2,)
    angles = position * frequency  # (N, D/2)
    table = torch.zeros(length, width, device=device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : width // 2])
    return table  # (N, D)


@dataclass
class EncoderOutput:
    memory: torch.Tensor  # (B, S, D): the encoder's final output, after its final norm
    self_weights: torch.Tensor  # (B, L, H, S, S)


@dataclass
class Seq2SeqOutput:
    logits: torch.Tensor  # (B, T, V): scores for the next target token at each position
    encoder_self: torch.Tensor  # (B, L_enc, H, S, S)
    decoder_self: torch.Tensor  # (B, L_dec, H, T, T)
    cross: torch.Tensor  # (B, L_dec, H, T, S)


class Transformer(nn.Module):
    """Encoder-decoder transformer built from :class:`EncoderBlock` and :class:`DecoderBlock`.

    Args:
        config: the sizes; see :class:`attnviz.config.ModelConfig`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.source_embedding = nn.Embedding(config.source_vocab_size, config.d_model,
                                             padding_idx=PAD_ID)
        self.target_embedding = nn.Embedding(config.target_vocab_size, config.d_model,
                                             padding_idx=PAD_ID)
        self.encoder_blocks = nn.ModuleList(
            EncoderBlock(config) for _ in range(config.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(config.d_model)
        self.decoder_blocks = nn.ModuleList(
            DecoderBlock(config) for _ in range(config.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(config.d_model)
        self.output = nn.Linear(config.d_model, config.target_vocab_size)
        self.dropout = nn.Dropout(config.dropout)
        for embedding in (self.source_embedding, self.target_embedding):
            # Scaled by √D in _embed, so tokens and positions start at the same size (std 1);
            # with torch's default N(0, 1) the position code would be drowned out.
            nn.init.normal_(embedding.weight, std=config.d_model ** -0.5)
            with torch.no_grad():
                embedding.weight[PAD_ID].zero_()

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        x = embedding(ids) * math.sqrt(self.config.d_model)  # (B, N, D)
        x = x + sinusoidal_positions(ids.size(1), self.config.d_model, ids.device)
        return self.dropout(x)

    def encode(self, source_ids: torch.Tensor) -> EncoderOutput:
        """Run the encoder. Padding (id 0) is masked out as a key.

        Shape: source_ids ``[B, S]`` -> memory ``[B, S, D]``, weights ``[B, L, H, S, S]``.
        """
        source_mask = _key_mask(source_ids)  # (B, 1, 1, S) or None
        x = self._embed(self.source_embedding, source_ids)  # (B, S, D)
        layer_weights = []
        for block in self.encoder_blocks:
            x, weights = block(x, source_mask)
            layer_weights.append(weights)  # (B, H, S, S)
        return EncoderOutput(self.encoder_norm(x), torch.stack(layer_weights, dim=1))

    def decode(
        self, target_ids: torch.Tensor, memory: torch.Tensor, source_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the decoder on its input (begin token, then the target so far).

        Shape: target_ids ``[B, T]``, memory ``[B, S, D]``, source_ids ``[B, S]`` ->
        logits ``[B, T, V]``, self weights ``[B, L, H, T, T]``, cross ``[B, L, H, T, S]``.
        """
        y, self_mask = self._decoder_start(target_ids)  # (B, T, D), (T, T) or (B, 1, T, T)
        cross_mask = _key_mask(source_ids)  # (B, 1, 1, S) or None
        self_layers, cross_layers = [], []
        for block in self.decoder_blocks:
            y, self_weights, cross_weights = block(y, memory, self_mask, cross_mask)
            self_layers.append(self_weights)  # (B, H, T, T)
            cross_layers.append(cross_weights)  # (B, H, T, S)
        logits = self.output(self.decoder_norm(y))  # (B, T, V)
        return logits, torch.stack(self_layers, dim=1), torch.stack(cross_layers, dim=1)

    def _decoder_start(self, target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's embedded input and its self-attention mask: causal, and padding
        hidden as a key.

        Shape: target_ids ``[B, T]`` -> ``[B, T, D]``, mask ``[T, T]`` or ``[B, 1, T, T]``.
        """
        length = target_ids.size(1)
        self_mask = attention.causal_mask(length, device=target_ids.device)  # (T, T)
        target_keys = _key_mask(target_ids)  # (B, 1, 1, T) or None
        if target_keys is not None:
            self_mask = self_mask & target_keys  # (B, 1, T, T)
        return self._embed(self.target_embedding, target_ids), self_mask

    def attention_steps(self, source_ids: torch.Tensor, target_ids: torch.Tensor | None,
                        kind: str, layer: int) -> AttentionSteps:
        """Run the forward pass up to one attention layer and return its steps.

        The same blocks as :meth:`forward` run before it, so its weights are those of the
        whole pass at that layer (``encoder_self[:, layer]``, ``decoder_self[:, layer]`` or
        ``cross[:, layer]``).

        Args:
            source_ids: source token ids, padded with 0.
            target_ids: decoder input ids (begin token, then the target); None for the
                encoder.
            kind: ``"encoder_self"``, ``"decoder_self"`` or ``"cross"``.
            layer: the block, counting from 0.

        Shape:
            - source_ids: ``[B, S]``, target_ids: ``[B, T]``
            - output: see :class:`AttentionSteps` (T = S for the encoder)
        """
        blocks = {"encoder_self": self.encoder_blocks, "decoder_self": self.decoder_blocks,
                  "cross": self.decoder_blocks}.get(kind)
        if blocks is None:
            raise ValueError(f"kind must be encoder_self, decoder_self or cross, got {kind!r}")
        if not 0 <= layer < len(blocks):
            raise ValueError(f"layer must be in 0..{len(blocks) - 1} for {kind}, got {layer}")
        source_mask = _key_mask(source_ids)  # (B, 1, 1, S) or None
        if kind == "encoder_self":
            x = self._embed(self.source_embedding, source_ids)  # (B, S, D)
            for block in self.encoder_blocks[:layer]:
                x, _ = block(x, source_mask)
            return self.encoder_blocks[layer].self_attention_steps(x, source_mask)
        if target_ids is None:
            raise ValueError(f"{kind} needs the decoder's input ids")
        memory = self.encode(source_ids).memory  # (B, S, D)
        y, self_mask = self._decoder_start(target_ids)  # (B, T, D)
        for block in self.decoder_blocks[:layer]:
            y, _, _ = block(y, memory, self_mask, source_mask)
        block = self.decoder_blocks[layer]
        if kind == "decoder_self":
            return block.self_attention_steps(y, self_mask)
        return block.cross_attention_steps(y, memory, self_mask, source_mask)

    def forward(self, source_ids: torch.Tensor, target_ids: torch.Tensor) -> Seq2SeqOutput:
        """Encode the source and decode the target input (teacher forcing).

        Args:
            source_ids: source token ids, padded with 0.
            target_ids: decoder input ids: the begin token, then the target, padded with 0.

        Shape:
            - source_ids: ``[B, S]``, target_ids: ``[B, T]``
            - logits ``[B, T, V]``; encoder_self ``[B, L, H, S, S]``;
              decoder_self ``[B, L, H, T, T]``; cross ``[B, L, H, T, S]``
        """
        encoded = self.encode(source_ids)
        logits, decoder_self, cross = self.decode(target_ids, encoded.memory, source_ids)
        return Seq2SeqOutput(logits, encoded.self_weights, decoder_self, cross)

    @torch.no_grad()
    def generate(self, source_ids: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
        """Greedy decoding: the most likely next token, until end-of-sequence or ``max_length``.

        Returns the decoder input that produced the output: the begin token, then every
        generated token except the final end token; finished rows are padded with 0.

        Shape: source_ids ``[B, S]`` -> ``[B, T]`` with T <= max_length + 1.
        """
        limit = self.config.max_target_length if max_length is None else max_length
        memory = self.encode(source_ids).memory  # (B, S, D)
        batch = source_ids.size(0)
        generated = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=source_ids.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=source_ids.device)
        for _ in range(limit):
            logits, _, _ = self.decode(generated, memory, source_ids)  # (B, T, V)
            next_ids = rule_out_specials(logits[:, -1]).argmax(dim=-1)  # (B,)
            finished = finished | (next_ids == EOS_ID)
            if bool(finished.all()):
                break
            next_ids = next_ids.masked_fill(finished, PAD_ID)
            generated = torch.cat([generated, next_ids[:, None]], dim=1)  # (B, T + 1)
        return generated


def _key_mask(ids: torch.Tensor) -> torch.Tensor | None:
    """The padding mask of ``ids``; None when nothing is padded (the common case).

    Shape: ``[B, N] -> [B, 1, 1, N]``.
    """
    mask = attention.padding_mask(ids, PAD_ID)
    return None if bool(mask.all()) else mask


def rule_out_specials(scores: torch.Tensor) -> torch.Tensor:
    """Next-token scores with padding and begin tokens ruled out: they are read, never written.

    Shape: ``[..., V]``, changed in place and returned.
    """
    scores[..., [PAD_ID, BOS_ID]] = float("-inf")
    return scores
