"""attnviz: see the attention inside an encoder-decoder transformer."""

__version__ = "0.1.0"
