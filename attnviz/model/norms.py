"""Norm-based attention weights (Kobayashi et al., 2020, "Attention is Not Only a Weight"):
how much each key adds to a query's output, ‖α f(x)‖, beside how much it is weighted, α.

A head's output for query i is Σ_j α_ij f(x_j), where f(x_j) = v_j W_O^h is key j's value
vector after the head's share of the output projection (W_O^h: the columns of the output
projection that read head h; the projection's bias is added once per query, not per key, and
is left out). A key with a large weight but a small f(x_j), such as a sink that a head looks
at when it has nothing to do, adds little; ‖α_ij f(x_j)‖ says so where α alone does not.

The functions take tensors as any model gives them: attnviz's own models from the same
forward pass's :class:`~attnviz.model.transformer.LayerAttention` (values) and
``MultiHeadAttention.out_proj``; a Hugging Face model from the values its attention function
was called with and its module's output projection, which grouped key/value heads may share.
"""

from __future__ import annotations

import torch

__all__ = ["norm_based_weights", "row_shares"]


def norm_based_weights(weights: torch.Tensor, values: torch.Tensor, out_weight: torch.Tensor
                       ) -> torch.Tensor:
    """‖α_ij f(x_j)‖ = α_ij ‖v_j W_O^h‖ for every head h, query i and key j (α_ij >= 0).

    Args:
        weights: the attention weights α of one layer.
        values: its value vectors, per head (grouped-query attention: fewer key/value heads,
            query head h reading key/value head h // (H / H_kv)).
        out_weight: the output projection's weight, as ``torch.nn.Linear`` holds it
            (out_features, in_features), its input the heads' outputs side by side (head h
            at columns h·d to (h+1)·d - 1, as the heads are merged).

    Shape:
        - weights: ``[B, H, T, S]``
        - values: ``[B, H_kv, S, d]``
        - out_weight: ``[D_out, H * d]``
        - output: ``[B, H, T, S]``
    """
    heads, width = weights.size(1), values.size(-1)
    if out_weight.size(1) != heads * width:
        raise ValueError(f"the output projection reads {out_weight.size(1)} features, not "
                         f"{heads} heads of {width}")
    if values.size(1) != heads:  # grouped key/value heads: each serves H / H_kv query heads
        values = values.repeat_interleave(heads // values.size(1), dim=1)  # (B, H, S, d)
    per_head = out_weight.reshape(out_weight.size(0), heads, width).permute(1, 2, 0)
    # (H, d, D_out): W_O^h, as values are multiplied by it
    transformed = values.to(per_head.dtype) @ per_head  # (B, H, S, D_out): f(x_j) per head
    sizes = torch.linalg.vector_norm(transformed, dim=-1)  # (B, H, S): ‖f(x_j)‖
    return weights * sizes[:, :, None, :].to(weights.dtype)  # (B, H, T, S)


def row_shares(norms: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum, so that a row of norm-based weights sums to 1 as
    attention weights do: key j's share of what the keys add to query i, Σ_j over
    ‖α_ij f(x_j)‖. A row that adds nothing (a query that saw no key) stays 0.

    Shape: ``[..., T, S]`` -> ``[..., T, S]``.
    """
    total = norms.sum(dim=-1, keepdim=True)  # (..., T, 1)
    return torch.where(total > 0, norms / torch.where(total > 0, total, 1.0), 0.0)
