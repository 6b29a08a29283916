"""The raw attention numbers as npz or json files, with the keys of :data:`attnviz.maps.KEYS`.

npz: token lists as string arrays, maps as float32 arrays ``[layer, head, query, key]``;
loads with ``numpy.load(path)`` (no pickle). json: the same keys, arrays as nested lists.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.files import write_atomically
from attnviz.maps import KINDS, AttentionMaps
from attnviz.render import output_format


def save(maps: AttentionMaps, path: Path) -> None:
    """Write every map of ``maps`` to ``path`` (``.npz`` or ``.json``)."""
    write_atomically(path, to_bytes(maps, output_format(path)))


def to_bytes(maps: AttentionMaps, fmt: str) -> bytes:
    """The maps as an ``npz`` or ``json`` file."""
    return to_npz_bytes(maps) if fmt == "npz" else to_json_bytes(maps)


def to_npz_bytes(maps: AttentionMaps, **extra: np.ndarray) -> bytes:
    """The npz file of ``maps``, with ``extra`` arrays beside them if given."""
    # Uncompressed: attention weights are floats that zlib barely shrinks (a tenth), and
    # compressing the maps of a long text takes seconds.
    buffer = io.BytesIO()
    np.savez(
        buffer,
        source_tokens=np.array(maps.source_tokens, dtype=str),
        target_tokens=np.array(maps.target_tokens, dtype=str),
        **{kind: np.asarray(getattr(maps, kind), dtype=np.float32) for kind in KINDS},
        **extra,
    )
    return buffer.getvalue()


def from_arrays(archive) -> AttentionMaps:
    """The maps held by an opened npz file (or any mapping of its keys to arrays)."""
    return AttentionMaps.from_dict({
        "source_tokens": archive["source_tokens"].tolist(),
        "target_tokens": archive["target_tokens"].tolist(),
        **{kind: archive[kind] for kind in KINDS},
    })


def to_json_bytes(maps: AttentionMaps) -> bytes:
    data = {key: value if isinstance(value, list) else value.tolist()
            for key, value in maps.to_dict().items()}
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def load(path: Path) -> AttentionMaps:
    """Read maps written by :func:`save`; a file of another shape raises AttnvizError."""
    try:
        if output_format(path) == "npz":
            with np.load(path, allow_pickle=False) as archive:
                return from_arrays(archive)
        return AttentionMaps.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise AttnvizError(f"cannot read attention maps from {path}: {exc}") from None
