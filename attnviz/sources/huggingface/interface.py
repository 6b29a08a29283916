"""attnviz's attention function inside a Hugging Face model, through transformers' attention
interface.

transformers 5 routes the attention of most of its models (BERT, GPT-2, Llama, Marian, BART,
T5...) through one function chosen by name: ``AttentionInterface.register(name, function)``
adds one, and a model loaded with ``attn_implementation=name`` calls it in every attention
layer, with the layer's module, its queries, keys and values (after the model's own
projections and position code, rotary included) and its mask, and with the keyword arguments
the model was called with. :func:`attention` is that function: it calls
:func:`attnviz.model.attention.scaled_dot_product_attention`, the one formula, and hands what
it computed to the :class:`~attnviz.sources.huggingface.recorder.Recorder` passed down as
``attnviz_recorder=`` in the model call (nothing is fished out with hooks or globals).

The masks come from the same interface's mask side (``AttentionMaskInterface``): registered
here as transformers' boolean masks (True = may attend, attnviz's convention), always
materialised, never skipped in favour of an ``is_causal`` flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IMPLEMENTATION = "attnviz"  # the name a model is loaded with: attn_implementation="attnviz"
RECORDER = "attnviz_recorder"  # the keyword the model call passes down to every layer
# Keywords some models pass whose arithmetic the formula does not have: a model that passes
# them is drawn through its own eager attention and output_attentions instead.
UNSUPPORTED = ("softcap", "s_aux", "sinks")


class Unsupported(Exception):
    """A model's attention needs something the formula lacks (logit soft-capping, learned
    sinks): its maps are computed by the model's own eager attention instead."""


@dataclass
class Call:
    """One call of the attention function by one layer: what it took and what it gave.

    Shape (B batch, H query heads, H_kv key/value heads, T queries, S keys, d head width):
        - queries ``[B, H, T, d]``; keys, values ``[B, H_kv, S, d]``
        - mask ``[B, 1, T, S]`` bool or None (every key visible); bias ``[B, H or 1, T, S]``
          float or None
        - weights ``[B, H, T, S]``; output ``[B, H, T, d]``

    ``module`` is the model's attention module, which holds its projections (its output
    projection, for whoever weighs the values by what they add to the output).
    """

    module: Any
    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor | None
    bias: torch.Tensor | None
    scale: float
    weights: torch.Tensor
    output: torch.Tensor


def register() -> None:
    """Make ``attn_implementation="attnviz"`` known to transformers (again is harmless)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, attention)
    AttentionMaskInterface.register(IMPLEMENTATION, boolean_mask)


def boolean_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """transformers' boolean mask (``sdpa_mask``: True = may attend), the causal one always
    made (the formula takes a mask, not an ``is_causal`` flag); None where no key is hidden
    (a bidirectional mask without padding)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    kwargs.pop("dtype", None)
    return sdpa_mask(*args, **kwargs)


def attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, scaling: float | None = None,
              dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention of one layer of a Hugging Face model, by attnviz's formula.

    Args:
        module: the layer's attention module (transformers passes it).
        query, key, value: after the model's projections and position code.
        attention_mask: a boolean mask (this module's mask function), or a model's own
            additive float mask, which is added as a bias.
        scaling: the factor of Q Kᵀ (None: 1/√d; T5 passes 1).
        dropout: the model's attention dropout; attnviz runs models in eval mode.
        kwargs: what the model passes on: T5's ``position_bias`` (a bias), and the
            recorder under :data:`RECORDER`, which receives a :class:`Call`.

    Shape:
        query ``[B, H, T, d]``, key and value ``[B, H_kv, S, d]`` -> output ``[B, T, H, d]``
        (transformers' layout, heads merged by the module) and weights ``[B, H, T, S]``.
    """
    from attnviz.model.attention import scaled_dot_product_attention

    for name in UNSUPPORTED:
        if kwargs.get(name) is not None:
            raise Unsupported(name)
    if dropout and getattr(module, "training", False):
        raise Unsupported("dropout")  # attnviz draws models in eval mode
    bias = kwargs.get("position_bias")
    mask = attention_mask
    if mask is not None and mask.dtype.is_floating_point:  # a model's own additive mask
        bias = mask if bias is None else bias + mask
        mask = None
    if bias is not None and bias.dtype != query.dtype:
        bias = bias.to(query.dtype)
    scale = float(query.size(-1) ** -0.5 if scaling is None else scaling)
    output, weights = scaled_dot_product_attention(query, key, value, mask, scale=scale,
                                                   bias=bias)  # (B, H, T, d), (B, H, T, S)
    recorder = kwargs.get(RECORDER)
    if recorder is not None:
        recorder(Call(module, query, key, value, mask, bias, scale, weights, output))
    return output.transpose(1, 2).contiguous(), weights  # (B, T, H, d), (B, H, T, S)
