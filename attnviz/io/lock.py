"""One writer at a time: a lock on a file, held while a process writes what the file guards.

The lock is the kernel's (``flock(2)``): it goes with the process, so a process that dies in
any way, SIGKILL included, leaves no stale lock behind to clear by hand. Processes forked
while it is held hold it with their parent, until the last of them ends. Where there is no
``flock`` (Windows), nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class Busy(Exception):
    """Another process holds the lock; ``pid`` is its process id, as it wrote it (None when
    it could not be read)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


_HELD: set[str] = set()  # the lock files this process holds: held again, they are taken


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold the lock of ``path`` (made if missing) for the block, or raise :class:`Busy` at
    once when another process holds it. The file says which process holds it: its id. A
    block inside another that holds the same lock goes on (the process holds it already).

    Raises:
        Busy: another process holds the lock.
        OSError: the lock file cannot be made or opened.
    """
    try:
        import fcntl
    except ImportError:  # no flock here: as without a lock
        yield
        return
    key = os.path.realpath(path)
    if key in _HELD:
        yield
        return
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(_holder(descriptor)) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(descriptor)  # releases the lock (forked holders keep it until they end)


def _holder(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
