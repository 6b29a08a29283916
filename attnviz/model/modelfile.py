"""The model file: safetensors, whose loading runs no code, with attnviz's metadata.

No torch here: the metadata (sizes, vocabularies, measured accuracy) is read without it.

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
from pathlib import Path
from typing import Any

from attnviz.errors import AttnvizError
from attnviz.model.config import MAX_HEADER_BYTES, MAX_TOKEN_CHARS, MAX_VOCABULARY_SIZE

FORMAT = "attnviz-model"
SCHEMA_VERSION = 1


def sorted_header(data: bytes) -> bytes:
    """The same file with its JSON header's keys sorted.

    safetensors writes the header from a hash map, in an order that changes from run to
    run; sorted, the same model always gives the same bytes.
    """
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    ordered = json.dumps(header, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode("utf-8")
    if len(ordered) > length:
        raise ValueError("the sorted header is longer than safetensors' own")
    return data[:8] + ordered.ljust(length, b" ") + data[8 + length:]


def check_model_path(path: Path) -> None:
    """Fail before training when ``path`` is not a writable ``.safetensors`` file name."""
    from attnviz.io.atomic import check_writable

    if Path(path).suffix != ".safetensors":
        raise AttnvizError(f"cannot write {path}: model files end in .safetensors; "
                           f"try {Path(path).with_suffix('.safetensors')}")
    check_writable(Path(path))


READ_WAY_OUT = ("give the path of a file written by `attnviz train`, or a shipped model name "
                "(see `attnviz models`)")


def read_model_file(path: Path) -> bytes:
    """The bytes of a model file; AttnvizError when it is missing, not a regular file (a
    pipe or a device would hang or never end), or larger than any attnviz model."""
    from attnviz.io.reading import read_regular_file
    from attnviz.model.config import MAX_MODEL_FILE_BYTES

    return read_regular_file(
        Path(path), MAX_MODEL_FILE_BYTES, "model file", way_out=READ_WAY_OUT,
        too_large="attnviz writes no model file that large, so this is not one of its models")


def check_model_file(path: Path) -> None:
    """Fail before any work when ``path`` cannot be opened as a model file (missing, a folder,
    a pipe), in the words of :func:`read_model_file`; its bytes are checked when loaded."""
    from attnviz.io.reading import open_regular

    with open_regular(Path(path), "model file", READ_WAY_OUT):
        pass


def read_metadata(data: bytes, name: str) -> dict[str, Any]:
    """Parse and check the metadata of a model file's bytes, without building the model."""
    if len(data) < 8:
        raise invalid(name, "the file is too short")
    header_length = int.from_bytes(data[:8], "little")
    if data[8:9] != b"{":  # a safetensors header is JSON: whatever this is, it is no model file
        raise invalid(name, "it is not a safetensors file")
    if header_length > len(data) - 8:
        raise invalid(name, "its header is damaged")
    if header_length > MAX_HEADER_BYTES:
        raise invalid(name, f"its header is {header_length:,} bytes, more than the limit of "
                            f"{MAX_HEADER_BYTES:,} of a model file")
    try:
        header = json.loads(data[8:8 + header_length])
        raw = header["__metadata__"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise invalid(name, "it has no attnviz metadata") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise invalid(name, "it has no attnviz metadata")
    version = raw.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise AttnvizError(f"model file {name} has schema version {version!r}, but this attnviz "
                           f"reads version {SCHEMA_VERSION}; retrain it with `attnviz train`")
    try:
        meta = {key: json.loads(raw[key]) for key in
                ("config", "source_tokenizer", "target_tokenizer", "source_vocab",
                 "target_vocab", "info")}
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise invalid(name, f"its metadata is damaged ({type(exc).__name__})") from None
    for side in ("source", "target"):
        problem = vocabulary_problem(meta[f"{side}_vocab"], side)
        if problem:
            raise invalid(name, problem)
    return meta


def vocabulary_problem(tokens: Any, side: str) -> str | None:
    """Why ``tokens`` is beyond the limits of a model file's vocabulary, or None.

    The same check when a model is saved and when one is loaded (and, through the same
    limits, before training), so that attnviz never writes a file it refuses to read.
    Other faults (tokens that are not strings, duplicates) are the vocabulary's own to name.
    """
    if not isinstance(tokens, list):
        return None
    if len(tokens) > MAX_VOCABULARY_SIZE:
        return (f"its {side} vocabulary holds {len(tokens):,} tokens, more than the limit of "
                f"{MAX_VOCABULARY_SIZE:,}")
    longest = max((len(t) for t in tokens if isinstance(t, str)), default=0)
    if longest > MAX_TOKEN_CHARS:
        return (f"a token of its {side} vocabulary is {longest:,} characters long, more than "
                f"the limit of {MAX_TOKEN_CHARS}")
    return None


def invalid(name: str, reason: str) -> AttnvizError:
    return AttnvizError(f"{name} is not a usable attnviz model file: {reason}; retrain it with "
                        "`attnviz train` or pick a shipped model (see `attnviz models`)")
