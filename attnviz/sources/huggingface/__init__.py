"""Hugging Face models as a source: see :mod:`.source`. ``open`` is what the registry calls."""

from attnviz.sources.huggingface.source import PREFIX, open

__all__ = ["PREFIX", "open"]
