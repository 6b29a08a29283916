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


VALIDATION_SHARE = 0.1  # of a pairs file, kept out of training to choose the best model
MAX_VALIDATION_PAIRS = 1000  # measured at each validation, so that one validation takes a
#   bounded time whatever the size of the file; an exact match measured on 1,000 pairs is
#   within about 3 points of the whole split's (two standard errors at 50%)
MAX_TEST_EXAMPLES = 100_000  # of a task, for `attnviz eval --examples`: they are drawn into
#   memory first, and 100,000 already measure an exact match to within 0.3 points
MAX_PAIRS_FILE_BYTES = 256 * 2**20  # a pairs file is read whole and split into words: a
#   128 MiB file of 2.3 million short pairs took 47 s and 1.4 GB to read and train 3 steps
#   (attnviz train --steps 3, a file written like the 50 MB one of issue 7)
MAX_PAIR_LINE_CHARS = 2**20  # characters in one line of a pairs file. A legitimate pair is
#   far shorter (256 source and 1,024 target tokens of 128 characters make 164k); splitting
#   a 128 MiB line into words took 4 GB before its length could be refused.
MAX_SOURCE_LENGTH = 256  # tokens of a source in a pairs file, in training and evaluation:
#   attention keeps B x H x S x S weights a layer, so memory grows with the square of the
#   longest source of a batch. A step of the default model on 64 pairs took 0.57 GB with
#   256-token sources, 5.1 GB with 1,024 (python benchmarks/train_memory.py).
MAX_LEARNING_RATE = 1.0  # Adam moves each weight by about the learning rate at each step:
#   at 1 or more, every step replaces the weights, so training can only diverge
MAX_BATCH_SIZE = 4096  # pairs per step, 64 times the default: a step's memory grows with it
#   (the logits alone are B x T x V floats), and a task draws that many examples a step


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
        if self.batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"the batch size must be at most {MAX_BATCH_SIZE:,}, got "
                             f"{self.batch_size:,}")
        # Written so that NaN fails it too: every comparison with NaN is false.
        if not 0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise ValueError(f"the learning rate must be above 0 and at most "
                             f"{MAX_LEARNING_RATE:g}, got {self.learning_rate:g}")
