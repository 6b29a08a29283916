"""How much more memory this process may take: what the system has free, and what its limit
on address space (``ulimit -v``) leaves. Read, never reserved: work that knows its size asks
before it starts, instead of failing half way with a MemoryError (or being killed)."""

from __future__ import annotations

import os


def room() -> int | None:
    """The bytes this process may still take, at most: the system's available memory
    (``MemAvailable`` in /proc/meminfo) and what ``RLIMIT_AS`` leaves above the address
    space in use (``VmSize``). None where neither can be read (not Linux)."""
    found = [size for size in (_available(), _address_space_left()) if size is not None]
    return min(found) if found else None


def _available() -> int | None:
    return _kilobytes("/proc/meminfo", "MemAvailable:")


def _address_space_left() -> int | None:
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    used = _kilobytes(f"/proc/{os.getpid()}/status", "VmSize:")
    return None if used is None else max(0, soft - used)


def _kilobytes(path: str, field: str) -> int | None:
    """The value of ``field`` (in kB) in a /proc file, in bytes."""
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
