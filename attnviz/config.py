"""The sizes of an attnviz model (saved with its weights, read back first) and of its training.

No torch here: the CLI reads its defaults from these classes without paying for torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_TARGET_LENGTH = 1024  # greedy decoding never writes more tokens than this


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


VALIDATION_SHARE = 0.1  # of a pairs file, kept out of training to choose the best model


@dataclass(frozen=True)
class TrainOptions:
    """How ``attnviz train`` trains (see :func:`attnviz.train.train`)."""

    steps: int = 3000  # optimizer steps, at most: training stops early when it is done
    batch_size: int = 64  # pairs per step
    learning_rate: float = 3e-3  # peak, after a linear warm-up; cosine decay to a tenth
    warmup: int = 200  # steps of warm-up
    eval_every: int = 250  # steps between validations
    seed: int = 0  # weights and the order of the data
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError("the learning rate must be positive")
