"""A small encoder-decoder transformer whose forward pass returns its attention weights.

Shape letters used in comments and docstrings:
    B batch, H heads, S source length, T target (decoder input) length, L layers,
    D model width (``d_model``), Dh head width (``D / H``), V vocabulary size.

Every attention layer is a :class:`MultiHeadAttention`, and every one of them calls
:func:`attnviz.model.attention.scaled_dot_product_attention`:
    - encoder self-attention: queries, keys and values from the source; padding mask only;
    - masked decoder self-attention: from the decoder's own input; causal mask;
    - cross-attention: queries from the decoder (after its masked self-attention),
      keys and values from the encoder's final output.

The blocks are pre-norm (LayerNorm before each sublayer, then a residual add), which
trains small models reliably; the encoder's final output is its last block's output
passed through a final LayerNorm.

Every forward pass returns, beside its result, the :class:`Intermediates` of its attention
layers (as x-transformers does): each layer's queries, keys, values, mask and weights, as the
one attention function read and gave them. The maps are their weights; ``attnviz explain``
shows one head of one layer from the same pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from attnviz.model import attention
from attnviz.model.config import ModelConfig
from attnviz.model.tokenize import BOS_ID, EOS_ID, PAD_ID


@dataclass
class LayerAttention:
    """One attention layer of one forward pass, every head: what the formula read and gave.

    ``softmax(Q Kᵀ / √Dh + M) V``, M = 0 where ``mask`` is True and -inf where it is False:
    these are the tensors the layer's call of the one attention function took and returned,
    not a computation made again for showing them.
    """

    queries: torch.Tensor  # (B, H, T, Dh): the query input projected by W_Q, split in heads
    keys: torch.Tensor  # (B, H, S, Dh): the key/value input projected by W_K
    values: torch.Tensor  # (B, H, S, Dh): the key/value input projected by W_V
    mask: torch.Tensor | None  # bool, broadcastable to (B, H, T, S); True = may attend;
    #   None: every key may be attended to
    weights: torch.Tensor  # (B, H, T, S): softmax(Q Kᵀ / √Dh + M)

    def visible(self) -> torch.Tensor:
        """The mask as every head sees it. Shape: ``[B, H, T, S]``, bool."""
        if self.mask is None:
            return torch.ones_like(self.weights, dtype=torch.bool)
        return self.mask.expand_as(self.weights)


@dataclass
class Intermediates:
    """The attention layers of one forward pass, by kind, bottom layer first."""

    encoder_self: list[LayerAttention] = field(default_factory=list)
    decoder_self: list[LayerAttention] = field(default_factory=list)
    cross: list[LayerAttention] = field(default_factory=list)

    def layers(self, kind: str) -> list[LayerAttention]:
        """The layers of ``kind``: ``encoder_self``, ``decoder_self`` or ``cross``."""
        if kind not in ("encoder_self", "decoder_self", "cross"):
            raise ValueError(f"kind must be encoder_self, decoder_self or cross, got {kind!r}")
        return getattr(self, kind)

    def weights(self, kind: str) -> torch.Tensor:
        """Every layer's weights of ``kind``, stacked. Shape: ``[B, L, H, Q, K]``."""
        return torch.stack([layer.weights for layer in self.layers(kind)], dim=1)


class MultiHeadAttention(nn.Module):
    """Projects inputs to H heads of queries, keys and values, attends, and merges the heads.

    Args:
        d_model: D, width of the inputs and of the output.
        n_heads: H; D must be divisible by H.

    Shape:
        - query_input: ``[B, T, D]``, key_value_input: ``[B, S, D]``
        - mask: boolean, broadcastable to ``[B, H, T, S]``, True = may attend
        - output: ``[B, T, D]``; the layer's :class:`LayerAttention` beside it
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
    ) -> tuple[torch.Tensor, LayerAttention]:
        queries, keys, values = self.project(query_input, key_value_input)
        # Looked up on the module at call time, so there is exactly one attention function.
        attended, weights = attention.scaled_dot_product_attention(queries, keys, values, mask)
        batch, _, length, _ = attended.shape  # (B, H, T, Dh)
        merged = attended.transpose(1, 2).reshape(batch, length, -1)  # (B, T, D)
        return self.out_proj(merged), LayerAttention(queries, keys, values, mask, weights)


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
    ) -> tuple[torch.Tensor, LayerAttention]:
        """Shape: x ``[B, S, D]`` -> x ``[B, S, D]``, and the self-attention's layer."""
        h = self.self_attention_norm(x)  # (B, S, D)
        attended, self_attention = self.self_attention(h, h, source_mask)
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x, self_attention


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
    ) -> tuple[torch.Tensor, LayerAttention, LayerAttention]:
        """Shape: y ``[B, T, D]``, memory ``[B, S, D]`` -> y ``[B, T, D]``, and the layers
        of the masked self-attention (``[B, H, T, T]`` weights) and of the cross-attention
        (``[B, H, T, S]``)."""
        h = self.self_attention_norm(y)  # (B, T, D)
        attended, self_attention = self.self_attention(h, h, self_mask)
        y = y + self.dropout(attended)
        # Queries: the decoder after its masked self-attention; keys and values: the encoder.
        attended, cross_attention = self.cross_attention(self.cross_attention_norm(y), memory,
                                                         cross_mask)
        y = y + self.dropout(attended)
        y = y + self.dropout(self.feed_forward(self.feed_forward_norm(y)))
        return y, self_attention, cross_attention


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
    """What the encoder gives: its final output, and its attention layers."""

    memory: torch.Tensor  # (B, S, D): the encoder's final output, after its final norm
    attention: Intermediates  # encoder_self: L_enc layers of (B, H, S, S) weights


@dataclass
class DecoderOutput:
    """What the decoder gives (and a whole forward pass): the next-token scores, and the
    attention layers that computed them."""

    logits: torch.Tensor  # (B, T, V): scores for the next target token at each position
    attention: Intermediates  # decoder_self and cross: L_dec layers each; a whole forward
    #   pass adds the encoder's encoder_self


class Transformer(nn.Module):
    """Encoder-decoder transformer built from :class:`EncoderBlock` and :class:`DecoderBlock`.

    Args:
        config: the sizes; see :class:`attnviz.model.config.ModelConfig`.
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

    def attention_modules(self, kind: str) -> list[MultiHeadAttention]:
        """The attention layers of ``kind``, bottom first, as :meth:`Intermediates.layers`
        lists their calls: where each layer's projections (its ``out_proj``) are."""
        if kind == "encoder_self":
            return [block.self_attention for block in self.encoder_blocks]
        if kind == "decoder_self":
            return [block.self_attention for block in self.decoder_blocks]
        if kind == "cross":
            return [block.cross_attention for block in self.decoder_blocks]
        raise ValueError(f"kind must be encoder_self, decoder_self or cross, got {kind!r}")

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        x = embedding(ids) * math.sqrt(self.config.d_model)  # (B, N, D)
        x = x + sinusoidal_positions(ids.size(1), self.config.d_model, ids.device)
        return self.dropout(x)

    def encode(self, source_ids: torch.Tensor) -> EncoderOutput:
        """Run the encoder. Padding (id 0) is masked out as a key.

        Shape: source_ids ``[B, S]`` -> memory ``[B, S, D]``; L_enc layers of weights
        ``[B, H, S, S]``.
        """
        source_mask = _key_mask(source_ids)  # (B, 1, 1, S) or None
        x = self._embed(self.source_embedding, source_ids)  # (B, S, D)
        layers = []
        for block in self.encoder_blocks:
            x, self_attention = block(x, source_mask)
            layers.append(self_attention)
        return EncoderOutput(self.encoder_norm(x), Intermediates(encoder_self=layers))

    def decode(
        self, target_ids: torch.Tensor, memory: torch.Tensor, source_ids: torch.Tensor
    ) -> DecoderOutput:
        """Run the decoder on its input (begin token, then the target so far).

        Shape: target_ids ``[B, T]``, memory ``[B, S, D]``, source_ids ``[B, S]`` ->
        logits ``[B, T, V]``; L_dec layers of self weights ``[B, H, T, T]`` and of cross
        weights ``[B, H, T, S]``.
        """
        y, self_mask = self._decoder_start(target_ids)  # (B, T, D), (T, T) or (B, 1, T, T)
        cross_mask = _key_mask(source_ids)  # (B, 1, 1, S) or None
        attention = Intermediates()
        for block in self.decoder_blocks:
            y, self_attention, cross_attention = block(y, memory, self_mask, cross_mask)
            attention.decoder_self.append(self_attention)
            attention.cross.append(cross_attention)
        return DecoderOutput(self.output(self.decoder_norm(y)), attention)  # (B, T, V)

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

    def forward(self, source_ids: torch.Tensor, target_ids: torch.Tensor) -> DecoderOutput:
        """Encode the source and decode the target input (teacher forcing).

        Args:
            source_ids: source token ids, padded with 0.
            target_ids: decoder input ids: the begin token, then the target, padded with 0.

        Shape:
            - source_ids: ``[B, S]``, target_ids: ``[B, T]``
            - logits ``[B, T, V]``; the attention of every kind: encoder_self weights
              ``[B, H, S, S]``, decoder_self ``[B, H, T, T]``, cross ``[B, H, T, S]`` a layer
        """
        encoded = self.encode(source_ids)
        decoded = self.decode(target_ids, encoded.memory, source_ids)
        decoded.attention.encoder_self = encoded.attention.encoder_self
        return decoded

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
            logits = self.decode(generated, memory, source_ids).logits  # (B, T, V)
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
