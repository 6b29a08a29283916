"""The render cache: attention maps already computed are read back instead of recomputed.

Looking at the same sentence again with another layer, head, kind, colour map or output
format needs the same maps. They are kept in the user's cache directory (see
:func:`directory`), keyed by everything that changes the numbers: the source's fingerprint
(its model's bytes, the texts and options), the attnviz version and the bytes of attnviz's
own code. A hit imports numpy, not torch.

The cache never breaks a command: a folder that cannot be read or written, or an entry that
is damaged, is skipped (with one warning when the folder itself is unusable), and the maps
are computed as if there were no cache.

:class:`Cached` wraps any source and is a source itself. What the source warned of while it
computed the maps (an unknown word, say) is kept with them, and warned of again on a hit: a
person is told the same things whether the maps were computed or read back.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import printable
from attnviz.maps.data import MAX_FILE_BYTES, PROVENANCE, AttentionMaps
from attnviz.sources.base import Request, Source
from attnviz.version import __version__, installed_version

MAX_BYTES = 256 * 1024 * 1024  # the oldest entries go once the cache holds more than this
WARNINGS = "attnviz_warnings"  # the entry's extra array: what the run said besides the maps
KEY = "attnviz_key"  # ... and its own key: an entry under another's name (a link) is a miss


def directory() -> Path:
    """``$ATTNVIZ_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnviz``, else ``~/.cache/attnviz``."""
    if os.environ.get("ATTNVIZ_CACHE_DIR"):
        return Path(os.environ["ATTNVIZ_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "attnviz"


@dataclass
class Cached:
    """``source`` behind the render cache: the same protocol, with the maps of a request
    read back when they were computed before."""

    source: Source

    @property
    def name(self) -> str:
        return self.source.name

    def fingerprint(self, request: Request) -> str | None:
        return self.source.fingerprint(request)

    def maps(self, request: Request) -> AttentionMaps:
        """The maps of ``request``: from the cache if they are there, else computed by the
        source and kept, with the warnings it gave."""
        key = _key(self.source, request)
        if key is not None:
            try:
                directory()
            except (RuntimeError, OSError, KeyError):  # no home folder to keep a cache in
                warnings.warn("the render cache has no folder (no home folder here): going on "
                              "without it (set ATTNVIZ_CACHE_DIR to a writable folder)",
                              AttnvizWarning, stacklevel=2)
                key = None
        if key is not None:
            cached = _load(key)
            if cached is not None:
                maps, said = cached
                for message in said:
                    warnings.warn(message, AttnvizWarning, stacklevel=2)
                return maps
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            maps = self.source.maps(request)
        if key is not None:  # kept first: a cache that cannot be written says so first
            said = [str(w.message) for w in caught if issubclass(w.category, AttnvizWarning)]
            _store(key, maps, list(dict.fromkeys(said)))
        for warning in caught:  # on to the caller's filters, in the order they came
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno, source=warning.source)
        return maps


def _key(source: Source, request: Request) -> str | None:
    """The entry of ``request``: the source's fingerprint, the name it was called by (the
    provenance says it), and the code that computed the maps: attnviz's and torch's."""
    fingerprint = source.fingerprint(request)
    if fingerprint is None:
        return None
    parts = {"source": fingerprint, "name": source.name, "version": __version__,
             "code": code_digest(), "torch": installed_version("torch")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


@functools.cache
def code_digest() -> str:
    """A digest of attnviz's own Python files: an edited install never reads maps that older
    code computed. About a millisecond: the package is some 200 KB of source."""
    package = Path(__file__).parents[1]  # attnviz/
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _load(key: str) -> tuple[AttentionMaps, list[str]] | None:
    """The entry ``key``, or None when it is not there or cannot be read. An entry holds its
    own key, checked here: a file put in its place (another entry, linked or copied there)
    is not read as its maps. A damaged or misplaced entry goes, where the folder lets it
    (a link, not what it points to); one that cannot be read for another reason (a folder
    of someone else's) stays."""
    from attnviz.io import arrays as array_files

    path = directory() / f"{key}.npz"
    try:
        if not path.is_file():
            return None
    except OSError:
        return None
    try:
        arrays = array_files.read_npz(path, "cache entry", "", MAX_FILE_BYTES)
        if str(arrays.pop(KEY)) != key:
            raise ValueError("the entry holds the maps of another request")
        notes = json.loads(str(arrays.pop(WARNINGS)))
        provenance = json.loads(str(arrays.get(PROVENANCE)))
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValueError("warnings must be a list of strings")
        if not isinstance(provenance, dict):
            raise ValueError("the provenance must be an object")
        maps = AttentionMaps.from_fields(arrays)
    # Not what _store writes: an npz that cannot be read (damaged, encrypted; read_npz says
    # so as an AttnvizError), or texts that are not the JSON it wrote (nested past the
    # parser's recursion limit: RecursionError).
    except (AttnvizError, KeyError, ValueError, TypeError, RecursionError):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        return None
    except (OSError, MemoryError):
        return None
    try:
        os.utime(path)  # recently used: evicted last
    except OSError:
        pass
    return maps, notes


def _store(key: str, maps: AttentionMaps, said: list[str]) -> None:
    """Keep ``maps`` and what was said of them; a folder that cannot hold them is skipped
    with one warning."""
    from attnviz.io import arrays as array_files
    from attnviz.io.atomic import write_atomically

    folder = directory()
    entry = folder / f"{key}.npz"
    try:
        in_the_way = entry.is_dir()
    except OSError:
        in_the_way = False
    if in_the_way:  # not attnviz's to remove: said, in the cache's words
        warnings.warn(f"the render cache entry {printable(str(entry))} is a folder, not a "
                      "file: these maps are not kept (remove the folder to keep them)",
                      AttnvizWarning, stacklevel=2)
        return
    if sum(maps.stack(kind).nbytes for kind in maps.kinds) > MAX_BYTES // 4:
        return  # a long text's maps would push everything else out, and soon go themselves
    arrays = {**maps.to_arrays(), WARNINGS: np.array(json.dumps(said)), KEY: np.array(key)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(entry, array_files.npz_bytes(arrays))
        _trim(folder)
    except (OSError, AttnvizError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "it is not a folder"
        warnings.warn(f"the render cache in {printable(str(folder))} cannot be written "
                      f"({printable(reason)}); going on without it (set ATTNVIZ_CACHE_DIR to "
                      "a writable folder)", AttnvizWarning, stacklevel=2)


def _trim(folder: Path, limit: int = MAX_BYTES) -> None:
    """Delete the least recently used entries until the cache holds at most ``limit`` bytes,
    counting the temporary files of entries being written (another attnviz may be writing
    one); stale ones, which a killed process left, go first."""
    from attnviz.io.atomic import remove_stale

    entries = []
    for path in folder.glob("*.npz"):
        try:
            status = path.stat()
        except OSError:
            continue
        entries.append((status.st_mtime, status.st_size, path))
    entries.sort(key=lambda entry: entry[0])
    total = sum(size for _, size, _ in entries) + remove_stale(folder)
    for _, size, path in entries:
        if total <= limit:
            break
        try:
            path.unlink(missing_ok=True)
        except OSError:
            continue
        total -= size
