"""Where attention maps come from: a source turns a request (texts, options) into maps.

(A source here is what provides maps: a model or a file. The encoder's input is always called
the source *text*.)

A source is named the way a person names a model (``--model`` on the command line, ``model=``
in the API), and :data:`SOURCES` says which module reads which names. Adding a source is one
module with an ``open(name) -> Source`` function, and one line here.

Opening a source is cheap (no torch, no weights): it finds the files and can name their
bytes, so the render cache can look up a request without loading the model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from attnviz.model.catalog import DEFAULT_MODEL
from attnviz.sources.base import PARTS, Request, Source

__all__ = ["DEFAULT_MODEL", "PARTS", "SOURCES", "Request", "Source", "open_source",
           "source_module"]


# Which module reads a name: the first whose rule accepts it.
SOURCES: list[tuple[Callable[[str], bool], str]] = [
    (lambda name: name.startswith("hf:"), "huggingface"),  # a Hugging Face model
    (lambda name: name.lower().endswith(".gguf"), "huggingface"),  # a GGUF file, through it
    (lambda name: name.lower().endswith((".npz", ".json")), "saved"),  # maps saved before
    (lambda name: True, "own"),  # attnviz's own: a shipped model, random, a model file
]


def open_source(name: str | None = None) -> Source:
    """The source ``name`` means (default: the shipped translate model)."""
    name = name or DEFAULT_MODEL
    return importlib.import_module(f"{__name__}.{source_module(name)}").open(name)


def source_module(name: str | None = None) -> str:
    """The module of :data:`SOURCES` that reads ``name`` (``own``, ``saved``, ...), without
    opening anything."""
    name = name or DEFAULT_MODEL
    for accepts, module in SOURCES:
        if accepts(name):
            return module
    raise AssertionError("the last source accepts every name")
