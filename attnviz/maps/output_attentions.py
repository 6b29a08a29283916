"""The ``output_attentions`` of a forward pass (Hugging Face's layout: a tuple of ``[batch, H,
query, key]`` tensors, one per layer) as one array per kind, for
:meth:`attnviz.maps.data.AttentionMaps.from_huggingface`. Needs numpy only: a tensor is
converted through its own ``.detach()``, without importing torch here."""

from __future__ import annotations

from typing import Any

import numpy as np

from attnviz.errors import AttnvizError


def attention_arrays(outputs: Any, *, source_given: bool, target_given: bool,
                     batch_index: int = 0) -> dict[str, np.ndarray | None]:
    """The maps of each kind in a forward pass run with ``output_attentions=True``.

    An encoder-decoder model's outputs hold ``encoder_attentions``, ``decoder_attentions``
    and ``cross_attentions``; an encoder-only or decoder-only model's hold ``attentions``,
    which are the encoder's when its tokens are given (``source_given``) and the decoder's
    when its are (``target_given``). Each is a tuple with one tensor per layer.

    Shape:
        each layer's tensor: ``[batch, H, query, key]`` -> each kind's ``[L, H, query, key]``

    Raises:
        AttnvizError: outputs without attention weights, layers that differ, a batch index
            out of range.
    """
    def get(name: str):
        value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name,
                                                                             None)
        if value is not None and not isinstance(value, (tuple, list)):
            raise AttnvizError(f"outputs.{name} must hold one tensor per layer (a tuple), "
                               f"not {type(value).__name__}")
        return None if value is None or len(value) == 0 else value  # () is not there

    def stacked(name: str) -> np.ndarray | None:
        layers = get(name)
        if layers is None:
            return None
        arrays = []
        for layer in layers:
            try:
                array = _to_numpy(layer)
            except (TypeError, ValueError, RuntimeError):
                raise AttnvizError(f"outputs.{name} holds a {type(layer).__name__}, not a "
                                   "tensor of weights") from None
            if array.ndim != 4:
                raise AttnvizError(f"outputs.{name} holds a tensor of shape "
                                   f"{list(array.shape)}, not [batch, heads, queries, keys]")
            if not -len(array) <= batch_index < len(array):
                raise AttnvizError(f"batch_index {batch_index} is out of range: the batch "
                                   f"holds {len(array)} sequences, 0 to {len(array) - 1}")
            arrays.append(array[batch_index])
        try:
            return np.stack(arrays)  # (L, H, Q, K)
        except ValueError:
            raise AttnvizError(f"the layers of outputs.{name} differ in shape") from None

    maps: dict[str, np.ndarray | None] = {
        "encoder_self": stacked("encoder_attentions"),
        "decoder_self": stacked("decoder_attentions"),
        "cross": stacked("cross_attentions"),
    }
    single = stacked("attentions")
    if single is not None:
        if source_given and not target_given:
            maps["encoder_self"] = single
        elif target_given and not source_given:
            maps["decoder_self"] = single
        else:
            raise AttnvizError("outputs.attentions belongs to an encoder or to a decoder: "
                               "give source_tokens (encoder) or target_tokens (decoder), "
                               "not both")
    if not any(value is not None for value in maps.values()):
        raise AttnvizError("the outputs hold no attention weights: run the model with "
                           "output_attentions=True and attn_implementation='eager' (other "
                           "attention implementations do not return the weights)")
    return maps


def _to_numpy(tensor: Any) -> np.ndarray:
    """A torch tensor (any device or dtype) or an array as float32 numpy, without importing
    torch here."""
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().float().cpu().numpy()
    return np.asarray(tensor, dtype=np.float32)
