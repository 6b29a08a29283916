"""The sizes of an attnviz model (saved with its weights, read back first) and of its training.

No torch here: the CLI reads its defaults from these classes without paying for torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_TARGET_LENGTH = 1024  # greedy decoding never writes more tokens than this
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds both take it; a short range to print

# What a model file may hold. The same limits are checked when training is planned (before
# the first step), when a model is saved and when one is loaded: attnviz never writes a file
# that it then refuses to read.
MAX_VOCABULARY_SIZE = 65_536  # tokens per side, specials included. Well above the word
#   vocabulary of a sentence-pair corpus of a few hundred thousand lines; at the default
#   width each of the three V x D matrices (two embeddings, the output layer) is 16 MiB.
MAX_TOKEN_CHARS = 128  # characters in one vocabulary token: more than any dictionary word
#   or a SHA-512 digest; a longer "word" is text without spaces (Chinese, Japanese: use the
#   char tokenizer) or data that is not a sentence.
MAX_HEADER_BYTES = 2 * MAX_VOCABULARY_SIZE * (4 * MAX_TOKEN_CHARS + 6) + 2**20
#   The JSON header at these limits: two full vocabularies whose every character takes 4
#   bytes at worst (4-byte UTF-8, or a quote escaped twice: in the vocabulary's JSON and in
#   the header's), 6 bytes of quotes and comma per token, and 1 MiB for the config, the
#   info and the table of tensors. About 66 MiB, under safetensors' own 100 MB limit.
MAX_LAYERS = 64  # encoder blocks, and decoder blocks: 32 times the shipped models' 2, and
#   few enough that the table of tensors fits in the 1 MiB of MAX_HEADER_BYTES left for it
MAX_MODEL_FILE_BYTES = 2 * 2**30  # 2 GiB: a file is read whole into memory, then copied
#   into the model. 537 million float32 weights: 41 times the default model at the largest
#   vocabularies (12.9 million).


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoder-decoder transformer (see :mod:`attnviz.model`)."""

    source_vocab_size: int  # tokens the encoder can read, specials included
    target_vocab_size: int  # tokens the decoder can read and write, specials included
    d_model: int = 64  # D: width of every token vector
    n_heads: int = 4  # H: attention heads per attention layer
    n_encoder_layers: int = 2  # encoder blocks, one self-attention layer each
    n_decoder_layers: int = 2  # decoder blocks, masked self-attention then cross-attention
    d_ff: int = 256  # hidden width of each feed-forward layer
    dropout: float = 0.0  # dropout while training; off at inference
    max_target_length: int = 64  # the longest target, in tokens; greedy decoding stops there

    def __post_init__(self) -> None:
        for name in ("source_vocab_size", "target_vocab_size", "d_model", "n_heads",
                     "n_encoder_layers", "n_decoder_layers", "d_ff", "max_target_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            if getattr(self, name) > MAX_LAYERS:
                raise ValueError(f"{name} must be at most {MAX_LAYERS}, got "
                                 f"{getattr(self, name)}")
        for name in ("source_vocab_size", "target_vocab_size"):
            if getattr(self, name) > MAX_VOCABULARY_SIZE:
                raise ValueError(f"{name} must be at most {MAX_VOCABULARY_SIZE:,} (the limit of "
                                 f"a vocabulary), got {getattr(self, name):,}")
        if self.max_target_length > MAX_TARGET_LENGTH:
            raise ValueError(f"max_target_length must be at most {MAX_TARGET_LENGTH}, got "
                             f"{self.max_target_length}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from saved data; unknown or missing fields raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError("the model config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # a required field is missing
            raise ValueError(str(exc)) from None
