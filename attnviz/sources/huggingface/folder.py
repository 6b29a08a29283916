"""A model folder written by ``save_pretrained``: the digest of its files, and the checks made
before transformers reads it (safetensors only, never a pickle; no more layers than the weights
hold)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from attnviz.errors import AttnvizError
from attnviz.io.text import printable

SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")


PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


# The files transformers reads from a model folder: configs, tokenizers, weights.
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".model", ".txt", ".spm", ".tiktoken",
                       ".bpe", ".vocab", ".merges")


MAX_MODEL_FILE_BYTES = 64 * 1024**3  # a shard of the largest models is a few GB


MAX_LAYERS = 1024  # more than any published model has


def files_digest(folder: Path) -> str:
    """A digest of the names and bytes of the files of a folder that transformers reads: the
    top level's configs, tokenizers and weights (hidden files, such as a download's .cache,
    READMEs and other formats are left out). A FIFO or a device among them is refused, not
    read; so is a file above :data:`MAX_MODEL_FILE_BYTES`."""
    from attnviz.io.reading import open_regular

    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.name.endswith(MODEL_FILE_SUFFIXES):
            continue
        with open_regular(path, "model file", "give a folder written by save_pretrained") as file:
            if os.fstat(file.fileno()).st_size > MAX_MODEL_FILE_BYTES:
                raise AttnvizError(f"{printable(str(path))} is larger than "
                                   f"{MAX_MODEL_FILE_BYTES // 1024**3} GB; attnviz reads no "
                                   "model file that large")
            digest.update(path.name.encode("utf-8") + b"\0")
            for block in iter(lambda: file.read(1 << 20), b""):  # noqa: B023 - read at once
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def weights_named(folder: Path) -> list[str] | None:
    """The weight files a safetensors index names (None without an index)."""
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return None
    from attnviz.io.reading import read_regular_file

    try:
        weight_map = json.loads(read_regular_file(index, 64 * 1024**2, "weights index"))[
            "weight_map"]
        return [str(name) for name in weight_map.values()]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise AttnvizError(f"{printable(str(index))} is damaged; save the model again with "
                           "save_pretrained") from None


LAYER_KEY = re.compile(r"(?:^|\.)(?:layers?|h|blocks?)\.(\d+)\.")


def layers_in_weights(folder: Path) -> int:
    """The most layers one stack has in the folder's safetensors files, read from their
    headers (the names of the tensors, such as ``encoder.layer.5.attention...``); 0 when
    the names say nothing of layers."""
    from attnviz.io.reading import open_regular

    most = 0
    for path in folder.glob("*.safetensors"):
        with open_regular(path, "model file", "give a folder written by save_pretrained") as file:
            length = int.from_bytes(file.read(8), "little")
            if length > 100 * 1024**2:  # safetensors' own limit on a header
                continue
            try:
                names = json.loads(file.read(length))
            except (ValueError, RecursionError):
                continue
        if isinstance(names, dict):
            for name in names:
                found = LAYER_KEY.search(name)
                if found:
                    most = max(most, int(found[1]) + 1)
    return most


def config_weights(folder: Path) -> str | None:
    """The weights file a config names (``transformers_weights``), if it names one."""
    try:
        value = json.loads((folder / "config.json").read_text("utf-8")).get(
            "transformers_weights")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
