"""npz files damaged the ways a disk, a copy or a hostile hand damages them, for the tests of
every reader of npz files (``show``, the render cache)."""

from __future__ import annotations

import io
import zipfile

import numpy as np


def _members(arrays: dict[str, np.ndarray], compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            archive.writestr(f"{key}.npy", member.getvalue())
    return buffer.getvalue()


def _spoil_data(data: bytes, member: str) -> bytes:
    """``data`` with the stored bytes of ``member`` flipped, past the start of its stream."""
    spoilt = bytearray(data)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for at in range(start + 8, start + min(info.compress_size, 64)):
        spoilt[at] ^= 0x55
    return bytes(spoilt)


def encrypted(arrays: dict[str, np.ndarray]) -> bytes:
    """An npz whose members are flagged encrypted (bit 0 of the general purpose flags), in
    their local headers and in the central directory: zipfile asks for a password."""
    data = bytearray(_members(arrays, zipfile.ZIP_STORED))
    for info in zipfile.ZipFile(io.BytesIO(bytes(data))).infolist():
        data[info.header_offset + 6] |= 1
    central = data.find(b"PK\x01\x02")
    while central != -1:
        data[central + 8] |= 1
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)


def bad_deflate(arrays: dict[str, np.ndarray], member: str) -> bytes:
    """A compressed npz (as ``numpy.savez_compressed`` writes) with corrupt deflate data."""
    return _spoil_data(_members(arrays, zipfile.ZIP_DEFLATED), f"{member}.npy")


def bad_lzma(arrays: dict[str, np.ndarray], member: str) -> bytes:
    """An npz of LZMA members with corrupt LZMA data."""
    return _spoil_data(_members(arrays, zipfile.ZIP_LZMA), f"{member}.npy")


def bad_bzip2(arrays: dict[str, np.ndarray], member: str) -> bytes:
    """An npz of bzip2 members with corrupt bzip2 data."""
    return _spoil_data(_members(arrays, zipfile.ZIP_BZIP2), f"{member}.npy")


DAMAGES = {
    "encrypted": lambda arrays, member: encrypted(arrays),
    "deflate": bad_deflate,
    "lzma": bad_lzma,
    "bzip2": bad_bzip2,
}


def nested(depth: int = 100_000) -> str:
    """A JSON text nested ``depth`` lists deep: valid, and past the parser's recursion."""
    return "[" * depth + "]" * depth
