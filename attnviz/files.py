"""Writing output files so that no half-written file is ever left behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from attnviz.errors import AttnvizError


def check_writable(path: Path) -> None:
    """Fail early, before any work, when ``path`` cannot be written."""
    folder = path.parent
    if path.is_dir():
        raise AttnvizError(f"output {path} is a directory; give a file name such as "
                           f"{path / 'attention.png'}")
    if folder.exists() and not folder.is_dir():
        raise AttnvizError(f"cannot write {path}: {folder} is a file, not a folder; "
                           "choose another path")
    if not folder.is_dir():
        raise AttnvizError(f"cannot write {path}: folder {folder} does not exist; create it first "
                           "or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AttnvizError(f"cannot write {path}: folder {folder} is not writable; "
                           "choose another path")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the whole new one; a failure leaves nothing behind.
    """
    write_all({path: data})


def write_all(contents: dict[Path, bytes]) -> None:
    """Write every file or none: each to a temporary file beside it, renamed once all are
    written. A failure removes the temporary files and leaves the old files as they were."""
    written: list[tuple[str, Path]] = []
    try:
        for path, data in contents.items():
            written.append((_temporary_copy(path, data), path))
    except BaseException:
        for temporary, _ in written:
            Path(temporary).unlink(missing_ok=True)
        raise
    for temporary, path in written:
        os.replace(temporary, path)


def _temporary_copy(path: Path, data: bytes) -> str:
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    except OSError as exc:
        raise AttnvizError(f"cannot write {path}: {exc.strerror}; choose another path") from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise AttnvizError(f"cannot write {path}: {exc.strerror}; choose another path") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_regular_file(path: Path, limit: int, what: str, *, way_out: str = "",
                      too_large: str = "") -> bytes:
    """The bytes of ``path``, read only if it is a regular file of at most ``limit`` bytes.

    A FIFO, a device or a socket is refused before a byte is read: the file is opened with
    O_NONBLOCK, so that opening a FIFO nobody writes to does not wait forever, then checked
    with fstat. At most ``limit + 1`` bytes are read, so a file that grows while it is read
    (or one whose size the kernel does not report, as in /proc) is refused too, never read
    until memory runs out.

    Args:
        path: the file to read.
        limit: the largest size accepted, in bytes.
        what: what the file is, for messages: "model file", "pairs file".
        way_out: what to give instead of a missing, unreadable or special file
            (default: "give a {what}").
        too_large: what to do about a file above the limit.

    Raises:
        AttnvizError: one line naming the file, the problem and the way out.
    """
    import stat  # here, so that the writing functions above keep their imports as they are

    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
             (stat.S_ISSOCK, "a socket"))
    way_out = way_out or f"give a {what}"
    size_text = f"{limit / 2**20:,.0f} MiB" if limit >= 2**20 else f"{limit:,} bytes"
    too_big = f"{what} {path} is larger than the limit of {size_text}" + (
        f"; {too_large}" if too_large else "")

    def refusal(mode: int) -> str | None:
        if stat.S_ISDIR(mode):
            return f"{what} {path} is a directory; {way_out}"
        if stat.S_ISREG(mode):
            return None
        kind = next((name for test, name in kinds if test(mode)), "a special file")
        return f"{what} {path} is not a regular file ({kind}); {way_out}"

    # O_NONBLOCK (POSIX): opening a FIFO returns at once; O_BINARY (Windows): bytes as they are.
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise AttnvizError(f"{what} {path} does not exist; {way_out}") from None
    except OSError as exc:
        try:  # a socket cannot be opened at all (ENXIO): say what it is
            message = refusal(os.stat(path).st_mode)
        except OSError:
            message = None
        raise AttnvizError(message or f"cannot read {what} {path}: {exc.strerror}; {way_out}"
                           ) from None
    try:
        status = os.fstat(descriptor)
        message = refusal(status.st_mode)
        if message is not None:
            raise AttnvizError(message)
        if status.st_size > limit:
            raise AttnvizError(too_big)
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(descriptor, min(limit + 1 - size, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise AttnvizError(too_big)
        return b"".join(chunks)
    except OSError as exc:
        raise AttnvizError(f"cannot read {what} {path}: {exc.strerror}; {way_out}") from None
    finally:
        os.close(descriptor)
