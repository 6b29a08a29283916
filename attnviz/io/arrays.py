"""The bytes of npz and json files of named arrays, read safely from files nobody vouches for.

npz: a zip of ``.npy`` arrays, as :func:`numpy.savez` writes it, read without pickle; each
array's header (its shape and type) is checked before the array is read, so a small file
cannot make the reader allocate gigabytes. json: an object, parsed with a size cap.
This module knows nothing of attention: :mod:`attnviz.maps` says which keys mean what.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.io.reading import open_regular
from attnviz.io.text import printable

MAX_JSON_BYTES = 512 * 1024**2  # json of maps is ~10 bytes a weight: 50 million weights

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma: zipfile cannot read such members either
    class LZMAError(Exception):  # type: ignore[no-redef]
        pass

# What a damaged zip member raises while it is read, besides zipfile's own BadZipFile:
# RuntimeError for a member flagged encrypted ("password required"), zlib.error for corrupt
# deflate data, LZMAError for corrupt LZMA data, OSError for corrupt bzip2 data, EOFError
# for a member cut short, NotImplementedError for a compression zipfile does not know;
# SyntaxError and RecursionError for an .npy header that is not a Python literal.
DAMAGED = (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, TypeError,
           NotImplementedError, RuntimeError, zlib.error, LZMAError, SyntaxError,
           RecursionError)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An npz file holding ``arrays``, uncompressed.

    Attention weights are floats that zlib barely shrinks (a tenth), and compressing the
    maps of a long text takes seconds.
    """
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def json_bytes(data: Any) -> bytes:
    """``data`` as UTF-8 JSON, arrays as nested lists."""
    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"cannot write {type(value).__name__} as JSON")

    try:
        return json.dumps(data, ensure_ascii=False, default=plain).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: written as its \\u escape, still valid JSON
        return json.dumps(data, ensure_ascii=True, default=plain).encode("ascii")


def read_npz(path: Path, what: str, way_out: str, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of an npz file; AttnvizError for anything else (a pickle among them).

    Each array's header is read first, and its size checked against what is left of
    ``max_bytes`` and against the size the zip says the member has, before any memory is
    taken for it; the data is then read straight into the array, never held twice.

    Args:
        path: the file.
        what: what the file should be, for messages ("attention maps file").
        way_out: what to do when it is not.
        max_bytes: the most the arrays may take in memory, all together.
    """
    name = printable(str(path))
    try:
        with open_regular(path, what, way_out) as handle, zipfile.ZipFile(handle) as archive:
            budget = max_bytes
            arrays = {}
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    continue
                key = member.filename[: -len(".npy")]
                with archive.open(member) as stream:
                    shape, dtype, fortran = _npy_header(stream, key, name)
                    size = math.prod(shape) * dtype.itemsize
                    if size > budget:
                        raise AttnvizError(f"{name} holds arrays of more than "
                                           f"{max_bytes / 1024**3:.1f} GB; attnviz reads at most "
                                           "that much")
                    if size > member.file_size - stream.tell():
                        raise ValueError(f"array {key!r} is cut short")
                    budget -= size
                    arrays[key] = _read_npy_body(stream, shape, dtype, fortran)
            return arrays
    except AttnvizError:
        raise
    except MemoryError:
        raise AttnvizError(f"{name} does not fit in memory; {way_out}") from None
    except DAMAGED as exc:
        raise AttnvizError(f"{name} is not a readable npz file ({_damage(exc)}); {way_out}"
                           ) from None


def _npy_header(stream, key: str, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unknown .npy version {version}")
    if dtype.hasobject:
        raise AttnvizError(f"{name}: array {printable(key)!r} holds Python objects (a pickle); "
                           "attnviz never unpickles, save plain numbers and strings")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"array {key!r} declares the shape {shape}")
    return tuple(shape), dtype, fortran


def _read_npy_body(stream, shape: tuple[int, ...], dtype: np.dtype, fortran: bool
                   ) -> np.ndarray:
    """The array's data, read from ``stream`` into the array itself, a chunk at a time."""
    array = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        count = stream.readinto(view[done:done + (1 << 24)])
        if not count:
            raise ValueError("an array is cut short")
        done += count
    return array.T if fortran else array  # column-major on disk: the reversed shape, transposed


def read_json(path: Path, what: str = "file", way_out: str = "check the path") -> Any:
    """The parsed JSON of a file of at most :data:`MAX_JSON_BYTES`; AttnvizError otherwise."""
    name = printable(str(path))
    try:
        with open_regular(path, what, way_out) as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise AttnvizError(f"{name} is larger than {MAX_JSON_BYTES // 1024**2} MB; save "
                               "large maps as .npz")
        return json.loads(data.decode("utf-8-sig"))  # a byte order mark may lead (RFC 8259)
    except AttnvizError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError, OverflowError, OSError) as exc:
        raise AttnvizError(f"{name} is not a readable JSON file ({_reason(exc)}); {way_out}"
                           ) from None


def _damage(exc: BaseException) -> str:
    """What is wrong with a damaged npz file, in words rather than zipfile's repr."""
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return "a member is encrypted, and attnviz reads no password"
    if isinstance(exc, (zlib.error, LZMAError)):
        return f"its compressed data is damaged: {_reason(exc)}"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return printable(text.splitlines()[0] if text.strip() else type(exc).__name__)[:200]
