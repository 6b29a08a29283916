"""A model with its vocabularies, saved to and loaded from a model file (:mod:`.modelfile`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnviz.errors import AttnvizError
from attnviz.io.atomic import write_atomically
from attnviz.model.config import MAX_HEADER_BYTES, MAX_MODEL_FILE_BYTES, ModelConfig
from attnviz.model.modelfile import (
    FORMAT,
    SCHEMA_VERSION,
    invalid,
    read_metadata,
    read_model_file,
    sorted_header,
    vocabulary_problem,
)
from attnviz.model.tokenize import EOS_ID, Tokenizer, Vocabulary
from attnviz.model.transformer import Transformer


@dataclass
class Checkpoint:
    """Everything needed to turn text into attention maps: weights, tokenizers, vocabularies."""

    model: Transformer
    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    def source_ids(self, tokens: list[str]) -> list[int]:
        """The encoder's input: the ids of the source tokens, then the end token.

        The end token gives every source a fixed last position, from which the model can
        count (reversing a sentence needs that), and a place to put attention it does not
        need elsewhere.
        """
        return [*self.source_vocab.ids(tokens), EOS_ID]

    def target_ids(self, tokens: list[str]) -> list[int]:
        """The ids of the target tokens (the decoder's input adds <bos> in front)."""
        return self.target_vocab.ids(tokens)


def save_checkpoint(checkpoint: Checkpoint, path: Path) -> None:
    """Write the checkpoint to ``path`` atomically: a reader sees the old file or the new one.

    Raises AttnvizError, writing nothing, for a model that :func:`load_checkpoint` would
    refuse: weights that are not finite, or a vocabulary or file beyond a model file's limits.
    """
    from safetensors.torch import save

    for side, vocab in (("source", checkpoint.source_vocab), ("target", checkpoint.target_vocab)):
        problem = vocabulary_problem(vocab.tokens, side)
        if problem:
            raise AttnvizError(f"cannot save the model to {path}: {problem}; train it on fewer "
                               "pairs or with the char tokenizer")
    metadata = {
        "format": FORMAT,
        "schema_version": str(SCHEMA_VERSION),
        "config": json.dumps(checkpoint.config.to_dict()),
        "source_tokenizer": json.dumps(checkpoint.source_tokenizer.to_dict()),
        "target_tokenizer": json.dumps(checkpoint.target_tokenizer.to_dict()),
        "source_vocab": json.dumps(checkpoint.source_vocab.tokens, ensure_ascii=False),
        "target_vocab": json.dumps(checkpoint.target_vocab.tokens, ensure_ascii=False),
        "info": json.dumps(checkpoint.info, ensure_ascii=False),
    }
    state = {name: tensor.detach().to("cpu", torch.float32).contiguous()
             for name, tensor in checkpoint.model.state_dict().items()}
    if not all(bool(torch.isfinite(t).all()) for t in state.values()):
        raise AttnvizError(f"cannot save the model to {path}: its weights contain NaN or "
                           "infinite values; train it again with a lower learning rate")
    size = sum(t.numel() * t.element_size() for t in state.values())
    if size > MAX_MODEL_FILE_BYTES:
        raise AttnvizError(f"cannot save the model to {path}: its weights take {size:,} bytes, "
                           f"more than the limit of {MAX_MODEL_FILE_BYTES:,} of a model file; "
                           "make it smaller (fewer layers, a smaller width)")
    data = sorted_header(save(state, metadata=metadata))
    header = int.from_bytes(data[:8], "little")
    if header > MAX_HEADER_BYTES or len(data) > MAX_MODEL_FILE_BYTES:
        what = (f"its header would take {header:,} bytes, more than the limit of "
                f"{MAX_HEADER_BYTES:,}" if header > MAX_HEADER_BYTES else
                f"the file would take {len(data):,} bytes, more than the limit of "
                f"{MAX_MODEL_FILE_BYTES:,}")
        raise AttnvizError(f"cannot save the model to {path}: {what}; make it smaller")
    write_atomically(Path(path), data)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a model file written by :func:`save_checkpoint`. Raises AttnvizError if unusable."""
    from attnviz.io.text import printable

    return checkpoint_from_bytes(read_model_file(Path(path)), printable(str(path)), device)


def checkpoint_from_bytes(data: bytes, name: str, device: torch.device | str = "cpu"
                          ) -> Checkpoint:
    """Build a checkpoint from the bytes of a model file; ``name`` is used in error messages."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    meta = read_metadata(data, name)
    try:
        config = ModelConfig.from_dict(meta["config"])
        tokenizers = [Tokenizer.from_dict(meta[k]) for k in ("source_tokenizer",
                                                             "target_tokenizer")]
        vocabs = [Vocabulary(meta[k]) for k in ("source_vocab", "target_vocab")]
        if not isinstance(meta["info"], dict):
            raise ValueError("info must be a JSON object")
    except (ValueError, TypeError) as exc:
        raise invalid(name, str(exc)) from None
    if (len(vocabs[0]), len(vocabs[1])) != (config.source_vocab_size, config.target_vocab_size):
        raise invalid(name, "its vocabularies do not match its config")
    try:
        state = load(data)
    except SafetensorError as exc:
        raise invalid(name, f"its weights are damaged ({exc})") from None
    if any(t.dtype != torch.float32 for t in state.values()):
        raise invalid(name, "its weights are not all float32")
    if not all(bool(torch.isfinite(t).all()) for t in state.values()):
        raise invalid(name, "its weights contain NaN or infinite values")
    mismatch = _unwitnessed_size(config, state)
    if mismatch:
        raise invalid(name, f"its weights do not fit its config ({mismatch})")
    model = Transformer(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise invalid(name, f"its weights do not fit its config ({first})") from None
    model.eval().to(device)
    return Checkpoint(model, tokenizers[0], tokenizers[1], vocabs[0], vocabs[1], meta["info"])


def _unwitnessed_size(config: ModelConfig, state: dict[str, torch.Tensor]) -> str | None:
    """Why the config's sizes are not those of the file's tensors, or None if they are.

    Checked before the model is built, so that a config claiming huge sizes cannot make
    the loader allocate more memory than the file itself holds.
    """
    width, hidden = config.d_model, config.d_ff
    shapes = {"source_embedding.weight": (config.source_vocab_size, width),
              "target_embedding.weight": (config.target_vocab_size, width),
              "encoder_blocks.0.feed_forward.0.weight": (hidden, width)}
    for key, shape in shapes.items():
        if key not in state or tuple(state[key].shape) != shape:
            return f"{key} should have shape {list(shape)}"
    for stack, count in (("encoder_blocks", config.n_encoder_layers),
                         ("decoder_blocks", config.n_decoder_layers)):
        found = {key.split(".")[1] for key in state if key.startswith(stack + ".")}
        if len(found) != count or found != {str(i) for i in range(count)}:
            return f"the config has {count} {stack}, the weights {len(found)}"
    return None


