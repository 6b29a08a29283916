"""Reading files that nobody vouches for: regular files only, of a bounded size, with errors
that name the file and the way out."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from attnviz.errors import AttnvizError
from attnviz.io.text import printable


def open_regular(path: Path, what: str, way_out: str = "") -> BinaryIO:
    """``path`` opened for reading bytes, if it is a regular file; AttnvizError otherwise.

    A FIFO, a device or a socket is refused before a byte is read: the file is opened with
    O_NONBLOCK, so that opening a FIFO nobody writes to does not wait forever, then checked
    with fstat.

    Args:
        path: the file to read.
        what: what the file is, for messages: "model file", "pairs file".
        way_out: what to give instead of a missing, unreadable or special file
            (default: "give a {what}").
    """
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
             (stat.S_ISSOCK, "a socket"))
    way_out = way_out or f"give a {what}"
    name = printable(str(path))

    def refusal(mode: int) -> str | None:
        if stat.S_ISDIR(mode):
            return f"{what} {name} is a directory; {way_out}"
        if stat.S_ISREG(mode):
            return None
        kind = next((label for test, label in kinds if test(mode)), "a special file")
        return f"{what} {name} is not a regular file ({kind}); {way_out}"

    # O_NONBLOCK (POSIX): opening a FIFO returns at once; O_BINARY (Windows): bytes as they are.
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise AttnvizError(f"{what} {name} does not exist; {way_out}") from None
    except OSError as exc:
        try:  # a socket cannot be opened at all (ENXIO): say what it is
            message = refusal(os.stat(path).st_mode)
        except (OSError, ValueError):
            message = None
        raise AttnvizError(message or f"cannot read {what} {name}: {exc.strerror}; {way_out}"
                           ) from None
    except ValueError:  # a NUL byte in the path
        raise AttnvizError(f"{what} {name} is not a valid path (it holds a NUL byte); "
                           f"{way_out}") from None
    try:
        message = refusal(os.fstat(descriptor).st_mode)
        if message is not None:
            raise AttnvizError(message)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular_file(path: Path, limit: int, what: str, *, way_out: str = "",
                      too_large: str = "") -> bytes:
    """The bytes of ``path``, read only if it is a regular file of at most ``limit`` bytes.

    See :func:`open_regular` for what is refused. At most ``limit + 1`` bytes are read, so a
    file that grows while it is read (or one whose size the kernel does not report, as in
    /proc) is refused too, never read until memory runs out.

    Args:
        path: the file to read.
        limit: the largest size accepted, in bytes.
        what: what the file is, for messages: "model file", "pairs file".
        way_out: what to give instead of a missing, unreadable or special file.
        too_large: what to do about a file above the limit.

    Raises:
        AttnvizError: one line naming the file, the problem and the way out.
    """
    size_text = f"{limit / 2**20:,.0f} MiB" if limit >= 2**20 else f"{limit:,} bytes"
    too_big = f"{what} {printable(str(path))} is larger than the limit of {size_text}" + (
        f"; {too_large}" if too_large else "")
    with open_regular(path, what, way_out) as handle:
        try:
            if os.fstat(handle.fileno()).st_size > limit:
                raise AttnvizError(too_big)
            data = handle.read(limit + 1)
        except OSError as exc:
            raise AttnvizError(f"cannot read {what} {printable(str(path))}: {exc.strerror}; "
                               f"{way_out or f'give a {what}'}") from None
    if len(data) > limit:
        raise AttnvizError(too_big)
    return data
