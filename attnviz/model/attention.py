"""Scaled dot-product attention: the one place in attnviz where attention weights are computed.

Encoder self-attention, masked decoder self-attention and cross-attention all call
:func:`scaled_dot_product_attention`, in attnviz's own models and, through transformers'
attention interface, inside Hugging Face models (:mod:`attnviz.sources.huggingface.interface`);
they differ only in where the queries, keys and values come from and in the mask (and bias)
they pass. Its first step, the scores, is :func:`attention_scores`, which ``attnviz explain``
calls too to show them.

Masks are boolean with torch's convention (the ``attn_mask`` of
``torch.nn.functional.scaled_dot_product_attention``): **True means "this key may be
attended to"**. They become -inf in exactly one place, inside :func:`attention_scores`.

Two extensions serve models beyond the seed's: a ``scale`` other than 1/√d_k (T5 uses 1),
an additive ``bias`` (T5's relative positions, ALiBi, a model's own float mask), and grouped
key/value heads (grouped-query attention: H query heads share H_kv key/value heads, query head
h reading key/value head h // (H / H_kv)), computed by broadcasting, never by copying the keys.
"""

from __future__ import annotations

import math

import torch

__all__ = ["scaled_dot_product_attention", "attention_scores", "causal_mask",
           "padding_mask", "key_value_head"]


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(s Q Kᵀ + B + M) V, returning the output and the weights.

    s is ``scale`` (default 1/√d_k), B the optional additive ``bias`` (0 by default), M is 0
    where ``mask`` is True (the key may be seen) and -inf where it is False, so a masked key
    gets a weight of exactly 0.0. A query whose keys are all masked has nothing to look at:
    its weights and its output are all zeros, never NaN.

    Keys and values may have fewer heads than the queries (grouped-query attention): with
    q ``[B, H, T, d_k]`` and k, v ``[B, H_kv, S, d]``, query head h reads key/value head
    ``h // (H // H_kv)``, as transformers' ``repeat_kv`` lays them out.

    Args:
        q: queries.
        k: keys.
        v: values.
        mask: optional boolean tensor, broadcastable to ``[..., T, S]``; True = may attend.
        scale: the factor of Q Kᵀ; None: 1/√d_k.
        bias: optional float tensor added to the scaled scores, broadcastable to
            ``[..., T, S]``.

    Shape:
        - q: ``[..., T, d_k]``, k: ``[..., S, d_k]``, v: ``[..., S, d_v]``; or q
          ``[B, H, T, d_k]`` with k ``[B, H_kv, S, d_k]`` and v ``[B, H_kv, S, d_v]``
        - mask, bias: broadcastable to ``[..., T, S]`` (``[B, H, T, S]`` when grouped)
        - output: ``[..., T, d_v]``, weights: ``[..., T, S]`` (``[B, H, T, S]`` when grouped)
    """
    groups = _groups(q, k)
    if groups > 1:  # (B, H, T, d) -> (B, H_kv, G, T, d); k, v -> (B, H_kv, 1, S, d)
        batch, heads, t, _ = q.shape
        q = q.reshape(batch, heads // groups, groups, t, q.size(-1))
        k, v = k.unsqueeze(2), v.unsqueeze(2)
        mask = _grouped(mask, groups)
        bias = _grouped(bias, groups)
    scores = attention_scores(q, k, mask, scale=scale, bias=bias)  # (..., T, S), our own
    # Without autograd the scores' memory is reused for the weights: for long sequences
    # the T x S buffer is the largest thing in the layer, and a second one costs a third
    # of the time. With autograd the same math runs out of place.
    in_place = _in_place(scores)
    # softmax; a row whose keys are all masked becomes NaN here and zeros below.
    weights = torch.softmax(scores, dim=-1, out=scores) if in_place else torch.softmax(
        scores, dim=-1)  # (..., T, S)
    if mask is not None:
        has_key = mask.any(dim=-1, keepdim=True)  # (..., T, 1)
        if not bool(has_key.all()):
            weights = weights.masked_fill(~has_key, 0.0)
    output = weights @ v  # (..., T, d_v)
    if groups > 1:  # back to one axis of H query heads
        output = output.flatten(1, 2)  # (B, H, T, d_v)
        weights = weights.flatten(1, 2)  # (B, H, T, S)
    return output, weights


def attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None, *,
                     scale: float | None = None, bias: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """The scores of the formula: s Q Kᵀ + B + M, with M = -inf where ``mask`` is False.

    Without a mask these are the scaled scores s Q Kᵀ (+ B) alone (as ``attnviz explain``
    shows them, beside the mask).

    Args:
        q: queries.
        k: keys (with as many heads as the queries: see :func:`key_value_head` for grouped
            ones, which :func:`scaled_dot_product_attention` broadcasts).
        mask: optional boolean tensor, broadcastable to ``[..., T, S]``; True = may attend.
        scale: the factor of Q Kᵀ; None: 1/√d_k.
        bias: optional float tensor added to the scaled scores.

    Shape:
        - q: ``[..., T, d_k]``, k: ``[..., S, d_k]``
        - output: ``[..., T, S]``
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got {mask.dtype}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    # Scaling q (T x d_k values) is cheaper than scaling the scores (T x S values).
    scores = (q * scale if scale != 1.0 else q) @ k.transpose(-2, -1)  # (..., T, S)
    in_place = _in_place(scores)
    if bias is not None:
        scores = scores.add_(bias) if in_place and _fits(bias, scores) else scores + bias
    if mask is not None:
        if in_place:
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean mask that lets position i see positions 0..i (True on and below the diagonal).

    Shape:
        - output: ``[size, size]``, rows are queries, columns are keys.
    """
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


def padding_mask(ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Boolean key mask of a padded batch: True for real tokens, False for padding.

    The result broadcasts over heads and queries, so it can be passed straight to
    :func:`scaled_dot_product_attention` for ``[B, H, T, S]`` scores.

    Args:
        ids: token ids, padded with ``pad_id``.

    Shape:
        - ids: ``[B, S]``
        - output: ``[B, 1, 1, S]``
    """
    return (ids != pad_id)[:, None, None, :]  # (B, 1, 1, S)


def key_value_head(head: int, heads: int, key_value_heads: int) -> int:
    """The key/value head query head ``head`` reads when ``heads`` query heads share
    ``key_value_heads`` (grouped-query attention; the same head without grouping)."""
    return head // (heads // key_value_heads)


def _groups(q: torch.Tensor, k: torch.Tensor) -> int:
    """How many query heads share one key/value head: 1 unless q and k are ``[B, H, ., d]``
    and ``[B, H_kv, ., d]`` with H a multiple of H_kv > 1 times."""
    if q.dim() != 4 or k.dim() != 4 or q.size(1) == k.size(1):
        return 1
    if k.size(1) == 0 or q.size(1) % k.size(1):
        raise ValueError(f"{q.size(1)} query heads cannot share {k.size(1)} key/value heads "
                         "evenly")
    return q.size(1) // k.size(1)


def _grouped(tensor: torch.Tensor | None, groups: int) -> torch.Tensor | None:
    """A mask or bias of ``[B, H or 1, T, S]`` as ``[B, H_kv or 1, G or 1, T, S]``."""
    if tensor is None:
        return None
    while tensor.dim() < 4:
        tensor = tensor.unsqueeze(0)
    if tensor.size(1) == 1:
        return tensor.unsqueeze(2)  # (B, 1, 1, T, S)
    return tensor.unflatten(1, (tensor.size(1) // groups, groups))  # (B, H_kv, G, T, S)


def _fits(addend: torch.Tensor, scores: torch.Tensor) -> bool:
    """Whether ``scores += addend`` keeps the scores' shape and dtype (it broadcasts in)."""
    try:
        return torch.broadcast_shapes(addend.shape, scores.shape) == scores.shape and \
            torch.promote_types(addend.dtype, scores.dtype) == scores.dtype
    except RuntimeError:
        return False


def _in_place(scores: torch.Tensor) -> bool:
    """Whether ``scores`` may be overwritten: not while autograd records them."""
    return not (torch.is_grad_enabled() and scores.requires_grad)
