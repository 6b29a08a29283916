"""One forward pass of a Hugging Face model and the maps it keeps: through attnviz's function
(transformers' attention interface, recorded layer by layer), or, for a model whose attention
does not use the interface, through its own eager attention and ``output_attentions``.

Either way the maps hold what :class:`~attnviz.maps.keep.Keep` asks for, and say in their
provenance which path computed them (:data:`THROUGH_INTERFACE`, :data:`THROUGH_OUTPUTS`).
An exception raised inside transformers' own code is the model library's failure, said as
such (:func:`library_failure`), never passed on as a bug of attnviz.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.io.text import printable, shorten
from attnviz.maps.keep import Keep
from attnviz.sources.huggingface.interface import RECORDER, Unsupported
from attnviz.sources.huggingface.projections import Projections
from attnviz.sources.huggingface.recorder import Recorder, RecordingError, recorder_for

THROUGH_INTERFACE = "attnviz's attention function, through transformers' attention interface"
THROUGH_OUTPUTS = "the model's own eager attention (output_attentions): it does not use " \
    "transformers' attention interface"
MESSAGE_CHARS = 200  # of transformers' own message, in ours
ATTNVIZ = str(Path(__file__).parents[2])  # attnviz/: where a bug of attnviz's own is raised


class NotThroughInterface(Exception):
    """The model's attention did not (all) come through attnviz's function."""


def recorded(model: Any, kind: str, inputs: dict[str, Any], keep: Keep,
             layers: dict[str, int], name: str,
             explain: tuple[str, int, int] | None = None, weights: str = "attention"
             ) -> Recorder:
    """One forward pass of ``model`` on ``inputs`` with a recorder keeping ``keep`` of
    ``weights``: the attention weights, or (``"norm"``) the norm-based ones.

    Raises:
        NotThroughInterface: the model computed some attention elsewhere (no call came,
            or fewer than its layers), or passed what the formula does not compute; its
            message says which, in words.
        AttnvizError: norm-based weights of a model whose output projection is not found.
    """
    projections = Projections(model, name) if weights == "norm" else None
    recorder = recorder_for(model, kind, keep, layers, explain, projections)
    try:
        forward(model, name, **inputs, **{RECORDER: recorder})
        recorder.finish()
    except Unsupported as exc:
        raise NotThroughInterface(f"it passes {exc}, which the formula lacks") from None
    except RecordingError as exc:
        raise NotThroughInterface(f"its layers did not all call it: {exc}") from None
    return recorder


def forward(module: Any, name: str, **inputs: Any) -> Any:
    """One forward pass; a failure inside transformers is said as the model library's."""
    with library_failure(name):
        return module(**inputs)


class library_failure:  # noqa: N801 - used as a context manager, as contextlib's are
    """Turns an exception raised inside transformers (or torch) while running ``name`` into
    one AttnvizError line saying so: its message, the model, and that it is not attnviz's
    bug. An exception raised in attnviz's own code (the attention function, the recorder)
    passes on: that is a bug of attnviz."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception) or isinstance(
                exc, (AttnvizError, Unsupported, RecordingError, MemoryError)):
            return False
        if _raised_in_attnviz(tb):
            return False
        message = " ".join((str(exc) or type(exc).__name__).split())
        if isinstance(exc, (TypeError, ValueError)) and "input_ids" in message:
            said = printable(shorten(message, 160))
            raise AttnvizError(f"the model cannot be run on a text ({said}); attnviz draws "
                               "text models") from None
        raise AttnvizError(
            f"transformers failed while running {printable(self.name)} "
            f"({type(exc).__name__}: {printable(shorten(message, MESSAGE_CHARS))}); this is "
            "the model library's failure, not attnviz's: try another transformers version, "
            "or report it to transformers with the model's config") from None


def _raised_in_attnviz(tb: Any) -> bool:
    """Whether, of attnviz's code and the model libraries' (transformers, torch), the
    innermost frame of a traceback is attnviz's: its attention function or its recorder
    (or a function they called) failed, not the model library."""
    for frame in reversed(traceback.extract_tb(tb)):
        name = frame.filename.replace("\\", "/")
        if name.startswith(ATTNVIZ):
            return True
        if any(f"/{library}/" in name for library in LIBRARIES):
            return False
    return False


LIBRARIES = ("transformers", "torch", "tokenizers", "huggingface_hub", "safetensors")


def outputs_maps(outputs: Any, kind: str, keep: Keep) -> tuple[dict[str, np.ndarray],
                                                               dict[str, dict[str, list[int]]]]:
    """The kept part of ``output_attentions``' maps, by kind, and the numbers they hold.

    Shape: each layer ``[1, H, Q, K]`` -> each kind ``[L_kept, H_kept, Q, K]``.
    """
    from attnviz.maps.output_attentions import attention_arrays

    arrays = attention_arrays(outputs, source_given=kind != "decoder_self",
                              target_given=kind == "decoder_self")
    kept_maps, numbers = {}, {}
    dtype = np.float32 if keep.precision == "float32" else np.float16
    for name, array in arrays.items():
        if array is None or not keep.wants(name):
            continue
        layers, heads = keep.layers_of(array.shape[0]), keep.heads_of(array.shape[1])
        kept_maps[name] = np.ascontiguousarray(array[layers][:, heads], dtype=dtype)
        if keep.layers is not None or keep.heads is not None:
            numbers[name] = {"layers": layers, "heads": heads}
    return kept_maps, numbers


def kept_numbers(recorder: Recorder) -> dict[str, dict[str, list[int]]]:
    """The layers and heads each kind of a recording holds, where not all."""
    keep = recorder.keep
    if keep.layers is None and keep.heads is None:
        return {}
    return {kind: {"layers": keep.layers_of(recorder.layers[kind]),
                   "heads": recorder.heads[kind]} for kind in recorder.kept}


def said_in(exc: BaseException) -> str:
    return printable(shorten(" ".join(str(exc).split()), 80))

