"""The render cache: attention maps already computed are read back instead of recomputed.

Looking at the same sentence again with another layer, head, kind, colour map or output
format needs the same maps; they are kept in the user's cache directory
(see :func:`directory`), keyed by everything that changes
the numbers: the attnviz version, the bytes of the model file, the texts, the seed of the
random model and the device. A cache hit imports numpy, not torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from attnviz import __version__, catalog
from attnviz.maps import Result
from attnviz.render import data
from attnviz.request import Request

MAX_BYTES = 256 * 1024 * 1024  # the oldest entries go once the cache holds more than this
META = "attnviz_result"  # the entry's extra array: what the run said besides the maps (JSON)


def directory() -> Path:
    """``$ATTNVIZ_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnviz``, else ``~/.cache/attnviz``."""
    if os.environ.get("ATTNVIZ_CACHE_DIR"):
        return Path(os.environ["ATTNVIZ_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnviz"


def run(request: Request, use_cache: bool = True) -> Result:
    """The result of ``request``: from the cache if it is there, else computed and kept.

    ``use_cache=False`` (``--no-cache``) computes and keeps nothing.
    """
    key = _key(request) if use_cache else None
    if key is not None:
        cached = _load(key)
        if cached is not None:
            return cached
    from attnviz import pipeline

    result = pipeline.run(request)
    if key is not None:
        _store(key, result)
    return result


def _key(request: Request) -> str | None:
    """A digest of everything that changes the maps; None when the model cannot be read
    (the pipeline then reports why)."""
    from attnviz.errors import AttnvizError

    try:
        path = catalog.resolve(request.model)
        weights = "random" if path is None else hashlib.sha256(path.read_bytes()).hexdigest()
    except (AttnvizError, OSError):
        return None
    parts = {**request.to_dict(), "model": weights, "version": __version__}
    if path is not None:
        parts["seed"] = None  # only the random model has a seed
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def _load(key: str) -> Result | None:
    path = directory() / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(bytes(archive[META]).decode("utf-8"))
            maps = data.from_arrays(archive)
        os.utime(path)  # recently used: evicted last
        return Result(maps, meta["default_layers"], meta["warnings"], meta["generated"])
    except FileNotFoundError:
        return None
    except Exception:  # a damaged entry is a miss, and goes
        path.unlink(missing_ok=True)
        return None


def _store(key: str, result: Result) -> None:
    """Keep ``result``; a cache that cannot be written is skipped silently."""
    from attnviz.errors import AttnvizError
    from attnviz.files import write_atomically

    meta = {"default_layers": result.default_layers, "warnings": result.warnings,
            "generated": result.generated}
    content = data.to_npz_bytes(result.maps, **{
        META: np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)})
    folder = directory()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / f"{key}.npz", content)
        _trim(folder)
    except (OSError, AttnvizError):
        pass


def _trim(folder: Path, limit: int = MAX_BYTES) -> None:
    """Delete the least recently used entries until the cache holds at most ``limit`` bytes."""
    entries = sorted(((p.stat().st_mtime, p.stat().st_size, p) for p in folder.glob("*.npz")),
                     key=lambda entry: entry[0])
    total = sum(size for _, size, _ in entries)
    for _, size, path in entries:
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= size
