"""Scaled dot-product attention: the one place in attnviz where attention weights are computed.

Encoder self-attention, masked decoder self-attention and cross-attention all call
:func:`scaled_dot_product_attention`; they differ only in where the queries, keys and
values come from and in the mask they pass. Its first step, the scores, is
:func:`attention_scores`, which ``attnviz explain`` calls too to show them.

Masks are boolean with torch's convention (the ``attn_mask`` of
``torch.nn.functional.scaled_dot_product_attention``): **True means "this key may be
attended to"**. They become -inf in exactly one place, inside the function below.
"""

from __future__ import annotations

import math

import torch

__all__ = ["scaled_dot_product_attention", "attention_scores", "causal_mask",
           "padding_mask"]


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V, returning the output and the weights.

    M is 0 where ``mask`` is True (the key may be seen) and -inf where it is False, so a
    masked key gets a weight of exactly 0.0. A query whose keys are all masked has nothing
    to look at: its weights and its output are all zeros, never NaN.

    Args:
        q: queries.
        k: keys.
        v: values.
        mask: optional boolean tensor, broadcastable to ``[..., T, S]``; True = may attend.

    Shape:
        - q: ``[..., T, d_k]``, k: ``[..., S, d_k]``, v: ``[..., S, d_v]``
        - mask: broadcastable to ``[..., T, S]``
        - output: ``[..., T, d_v]``, weights: ``[..., T, S]``
    """
    scores = attention_scores(q, k, mask)  # (..., T, S), a new tensor of our own
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
    return weights @ v, weights  # (..., T, d_v), (..., T, S)


def attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """The scores of the formula: Q Kᵀ / √d_k + M, with M = -inf where ``mask`` is False.

    Without a mask these are the scaled scores Q Kᵀ / √d_k alone (as ``attnviz explain``
    shows them, beside the mask).

    Args:
        q: queries.
        k: keys.
        mask: optional boolean tensor, broadcastable to ``[..., T, S]``; True = may attend.

    Shape:
        - q: ``[..., T, d_k]``, k: ``[..., S, d_k]``
        - output: ``[..., T, S]``
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got {mask.dtype}")
    d_k = q.size(-1)
    # Scaling q (T x d_k values) is cheaper than scaling the scores (T x S values).
    scores = (q * (1.0 / math.sqrt(d_k))) @ k.transpose(-2, -1)  # (..., T, S)
    if mask is not None:
        if _in_place(scores):
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def _in_place(scores: torch.Tensor) -> bool:
    """Whether ``scores`` may be overwritten: not while autograd records them."""
    return not (torch.is_grad_enabled() and scores.requires_grad)


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
