"""The output projection of a Hugging Face model's attention layers, where the heads' outputs
meet again: what the norm-based weights (:mod:`attnviz.model.norms`) weigh each value by.

transformers names it per architecture, and keeps it in one of two places:

- in the attention module that calls the attention function: ``o_proj`` (Llama, Mistral,
  Qwen, Gemma...), ``out_proj`` (BART, Marian, OPT, CLIP...), ``o`` (T5), ``c_proj`` (GPT-2,
  a ``Conv1D`` that holds its weight as (in, out)), ``dense`` (GPT-NeoX, Falcon, Phi),
  ``out_lin`` (DistilBERT), ``Wo`` (ModernBERT), and a few more;
- in its parent, beside it, as ``output.dense``: BERT and its family (RoBERTa, ELECTRA,
  XLM-R, ViT...), whose self-attention module holds only the queries, keys and values.

A candidate counts only when it reads exactly the heads' outputs side by side (``H * d``
features), so a feed-forward layer of the same name is never taken for it. The norm-based
weight takes the heads' outputs as they go into that projection: a model that changes them
in between (a norm or a gate on the attention's output) is weighed by its projection alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attnviz.errors import AttnvizError
from attnviz.io.text import printable

if TYPE_CHECKING:
    import torch

    from attnviz.sources.huggingface.interface import Call

# The names of an attention module's output projection in transformers' models, the most
# common first (counted over transformers' modeling files).
NAMES = ("o_proj", "out_proj", "o", "c_proj", "dense", "out_lin", "Wo", "linear_out", "proj",
         "projection", "output_projection", "projection_layer", "output")
BESIDE = "output"  # the parent's child that holds it beside the attention (BERT's BertSelfOutput)


@dataclass
class Projections:
    """Each attention module's output projection in ``model``, found at its first call.

    Args:
        model: the model (or the encoder) that the forward pass runs.
        name: the model as the person named it, for the message when none is found.
    """

    model: Any
    name: str
    _parents: dict[int, Any] | None = field(default=None, repr=False)
    _found: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def norm_based(self, call: Call) -> torch.Tensor:
        """The norm-based weights of one call, each row as shares of its sum, as attnviz's
        own models give them: ``row_shares(norm_based_weights(α, values, W_O))``.

        Shape: call.weights ``[B, H, T, S]``, call.values ``[B, H_kv, S, d]`` ->
        ``[B, H, T, S]``.
        """
        from attnviz.model.norms import norm_based_weights, row_shares

        return row_shares(norm_based_weights(call.weights, call.values, self.of(call)))

    def of(self, call: Call) -> torch.Tensor:
        """The weight of the output projection of ``call``'s module, as ``torch.nn.Linear``
        holds it: ``[D_out, H * d]``.

        Raises:
            AttnvizError: the module has no projection that reads its heads' outputs.
        """
        key = id(call.module)
        if key not in self._found:
            heads, width = call.weights.shape[1], call.values.shape[-1]
            weight = output_weight(call.module, self._parent(call.module), heads * width)
            if weight is None:
                raise AttnvizError(
                    f"{printable(self.name)}: attnviz cannot find the output projection of its "
                    f"attention layers ({type(call.module).__name__} has no "
                    f"{', '.join(NAMES[:5])}... reading its {heads} heads of {width}), which "
                    "norm-based weights weigh the values by; draw it with "
                    "\u27e8weights\u27e9 attention")
            self._found[key] = weight
        return self._found[key]

    def _parent(self, module: Any) -> Any:
        if self._parents is None:
            self._parents = {id(child): parent for parent in self.model.modules()
                             for child in parent.children()}
        return self._parents.get(id(module))


def output_weight(module: Any, parent: Any, features: int) -> torch.Tensor | None:
    """The weight ``[D_out, features]`` of the first layer named in :data:`NAMES` that reads
    ``features`` inputs: in ``module``, then beside it in ``parent`` (``parent.output``),
    then in ``parent``. None when there is none."""
    places = [module]
    if parent is not None:
        places += [getattr(parent, BESIDE, None), parent]
    for place in places:
        if place is None:
            continue
        for name in NAMES:
            weight = _reading(getattr(place, name, None), features)
            if weight is not None:
                return weight
    return None


def _reading(layer: Any, features: int) -> torch.Tensor | None:
    """``layer``'s weight in ``torch.nn.Linear``'s layout (out, in) when ``layer`` is a linear
    layer (torch's, or transformers' ``Conv1D``) of ``features`` inputs, else None."""
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(layer, Conv1D):  # GPT-2's: x @ W + b, W held as (in, out)
        return layer.weight.T if layer.weight.shape[0] == features else None
    if isinstance(layer, torch.nn.Linear):
        return layer.weight if layer.in_features == features else None
    return None
