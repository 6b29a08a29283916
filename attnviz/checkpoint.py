"""A model with its vocabularies, and the file that stores them (safetensors: loading runs no code).

File layout: a safetensors file whose tensors are the model's weights (float32) and whose
string metadata holds, as JSON, everything needed to rebuild it:

    format          "attnviz-model"
    schema_version  "1"
    config          ModelConfig fields
    source_tokenizer, target_tokenizer    {"kind": "word"|"char", "lowercase": bool}
    source_vocab, target_vocab            token lists, ids = positions
    info            free-form facts: task, training command, measured accuracy, default layers
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from attnviz.config import ModelConfig
from attnviz.errors import AttnvizError
from attnviz.files import write_atomically
from attnviz.model import Transformer
from attnviz.tokenize import EOS_ID, Tokenizer, Vocabulary

FORMAT = "attnviz-model"
SCHEMA_VERSION = 1
_MAX_HEADER_BYTES = 16 * 1024 * 1024  # vocabularies are small; a larger header is not ours


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
    """Write the checkpoint to ``path`` atomically: a reader sees the old file or the new one."""
    from safetensors.torch import save

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
    write_atomically(Path(path), _sorted_header(save(state, metadata=metadata)))


def _sorted_header(data: bytes) -> bytes:
    """The same file with its JSON header's keys sorted.

    safetensors writes the header from a hash map, in an order that changes from run to
    run; sorted, the same model always gives the same bytes.
    """
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    ordered = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(ordered) > length:  # never expected: the same JSON, reordered
        return data
    return data[:8] + ordered.ljust(length, b" ") + data[8 + length:]


def check_model_path(path: Path) -> None:
    """Fail before training when ``path`` is not a writable ``.safetensors`` file name."""
    from attnviz.files import check_writable

    if Path(path).suffix != ".safetensors":
        raise AttnvizError(f"cannot write {path}: model files end in .safetensors; "
                           f"try {Path(path).with_suffix('.safetensors')}")
    check_writable(Path(path))


def read_metadata(data: bytes, name: str) -> dict[str, Any]:
    """Parse and check the metadata of a model file's bytes, without building the model."""
    if len(data) < 8:
        raise _invalid(name, "the file is too short")
    header_length = int.from_bytes(data[:8], "little")
    if header_length > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise _invalid(name, "its header is damaged")
    try:
        header = json.loads(data[8:8 + header_length])
        raw = header["__metadata__"]
    except (ValueError, KeyError, TypeError):
        raise _invalid(name, "it has no attnviz metadata") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise _invalid(name, "it has no attnviz metadata")
    version = raw.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise AttnvizError(f"model file {name} has schema version {version!r}, but this attnviz "
                           f"reads version {SCHEMA_VERSION}; retrain it with `attnviz train`")
    try:
        return {key: json.loads(raw[key]) for key in
                ("config", "source_tokenizer", "target_tokenizer", "source_vocab",
                 "target_vocab", "info")}
    except (KeyError, TypeError, ValueError) as exc:
        raise _invalid(name, f"its metadata is damaged ({exc})") from None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a model file written by :func:`save_checkpoint`. Raises AttnvizError if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AttnvizError(f"model file {path} does not exist; give the path of a file written "
                           "by `attnviz train`, or a shipped model name (see `attnviz models`)"
                           ) from None
    except IsADirectoryError:
        raise AttnvizError(f"model path {path} is a directory; give a model file") from None
    except OSError as exc:
        raise AttnvizError(f"cannot read model file {path}: {exc.strerror}") from None
    return checkpoint_from_bytes(data, str(path), device)


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
        raise _invalid(name, str(exc)) from None
    if (len(vocabs[0]), len(vocabs[1])) != (config.source_vocab_size, config.target_vocab_size):
        raise _invalid(name, "its vocabularies do not match its config")
    try:
        state = load(data)
    except SafetensorError as exc:
        raise _invalid(name, f"its weights are damaged ({exc})") from None
    if any(t.dtype != torch.float32 for t in state.values()):
        raise _invalid(name, "its weights are not all float32")
    mismatch = _unwitnessed_size(config, state)
    if mismatch:
        raise _invalid(name, f"its weights do not fit its config ({mismatch})")
    model = Transformer(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise _invalid(name, f"its weights do not fit its config ({first})") from None
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


def _invalid(name: str, reason: str) -> AttnvizError:
    return AttnvizError(f"{name} is not a usable attnviz model file: {reason}; retrain it with "
                        "`attnviz train` or pick a shipped model (see `attnviz models`)")
