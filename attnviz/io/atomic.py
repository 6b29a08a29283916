"""Writing output files so that no half-written file is ever left behind."""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path

from attnviz.errors import AttnvizError
from attnviz.io import signals
from attnviz.io.text import printable

# Temporary files are named ".attnviz-XXXXXXXX.tmp" beside their target: short, so that a
# target name of up to the file system's limit (255 bytes) still has a temporary beside it,
# and recognisable as attnviz's in a listing.
_TEMPORARY_PREFIX = ".attnviz-"
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\.attnviz-[0-9a-f]{8}\.tmp")
# A temporary file lives while one file is written: seconds, even for the largest attnviz
# writes (1 GB of maps), and its status time moves as it is written, linked or renamed. One
# untouched for an hour was left by a process that was killed (SIGKILL, a power cut), which
# could not remove it: it is stale.
STALE_AFTER = 3600.0  # seconds


def temporaries(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """attnviz's temporary files in ``folder`` (``.attnviz-XXXXXXXX.tmp``, regular files, not
    links), each with its status; none where the folder cannot be listed."""
    found = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if _TEMPORARY.fullmatch(name):
            try:
                status = os.lstat(folder / name)
            except OSError:
                continue
            if stat.S_ISREG(status.st_mode):
                found.append((folder / name, status))
    return found


def is_stale(status: os.stat_result) -> bool:
    """Whether a temporary file with this status was left by a process that died (see
    :data:`STALE_AFTER`)."""
    return time.time() - max(status.st_mtime, status.st_ctime) > STALE_AFTER


def remove_stale(folder: Path, *, every: bool = False) -> int:
    """Remove the stale temporary files in ``folder`` (``every``: all of them, where the
    caller knows that no one else writes there now); returns the bytes of those left."""
    left = 0
    for path, status in temporaries(folder):
        if every or is_stale(status):
            _remove(str(path))
        else:
            left += status.st_size
    return left


def check_writable(path: Path) -> None:
    """Fail early, before any work, when ``path`` cannot be written."""
    if "\0" in str(path):
        raise AttnvizError(f"cannot write {printable(str(path))}: a file name cannot hold a NUL "
                           "character; choose another name")
    try:
        _check_writable(path)
    except OSError as exc:  # the name is too long, a link loops, ...: stat itself failed
        raise _cannot_write(path, exc) from None


def _check_writable(path: Path) -> None:
    folder = path.parent
    if path.is_dir():
        raise _is_a_directory(path)
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
    """Write every file or none.

    Each file is first written whole to a temporary file beside it. Once all are written,
    each existing file is kept under a temporary name (a hard link, else a copy) and the new
    one is renamed over it. A failure at any point renames the old files back, removes the
    new files that had no old one, removes every temporary file and raises one
    ``AttnvizError``. Ctrl-C (or SIGTERM, see :mod:`attnviz.cli.interrupt`) while the files are
    written leaves the old files untouched; during the renames it is held until they are
    done, so the files are all old or all new.

    Args:
        contents: the bytes of each file, by path, or a function that writes them to the
            binary file it is given.
    """
    temporaries: dict[Path, str] = {}
    try:
        for path, data in contents.items():
            _write_temporary(path, data, temporaries)
        with signals.held():
            _replace_all(temporaries)
            temporaries.clear()  # renamed into place: nothing left to remove
    except BaseException:
        with signals.held():
            for temporary in temporaries.values():
                _remove(temporary)
        raise


def _write_temporary(path: Path, data, temporaries: dict[Path, str]) -> None:
    """Write ``data`` to a new temporary file beside ``path``, noted in ``temporaries`` as
    soon as it exists, so that an interrupt at any later point finds it to remove.
    ``data`` is bytes, or a function that writes them to the binary file it is given (an
    npz of a gigabyte is then never held twice in memory)."""
    handle = None
    try:
        with signals.held():
            handle, temporary = _create_beside(path)
            temporaries[path] = temporary
        if callable(data):
            # The file object never closes the descriptor: that stays below, done once.
            file = os.fdopen(handle, "wb", closefd=False)
            try:
                data(file)
                file.flush()
            finally:
                try:
                    file.close()
                except OSError:
                    pass  # a failed flush, said by the write that raised it
        else:
            _write_bytes(handle, data)
        closing, handle = handle, None
        os.close(closing)  # a network file system may report a failed write only here
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    finally:
        if handle is not None:
            os.close(handle)


def _write_bytes(handle: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # os.write may write less than it was given
        view = view[os.write(handle, view):]


def _create_beside(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, open for writing, with the mode the file at
    ``path`` has (a private file stays private), or else the usual one: 0666 less the
    umask, which the kernel applies."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    opened: list[int] = []
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    name = _new_name_beside(path, lambda name: opened.append(
        os.open(name, flags, 0o666 if mode is None else mode & 0o666)))
    if mode is not None:
        try:
            os.fchmod(opened[0], mode)  # exactly the old mode, whatever the umask
        except BaseException:
            os.close(opened[0])
            _remove(name)
            raise
    return opened[0], name


def _replace_all(temporaries: dict[Path, str]) -> None:
    """Rename each temporary file over its target; on a failure, undo the renames done."""
    done: list[tuple[Path, str | None]] = []  # target, and its old file's temporary name
    try:
        for path, temporary in temporaries.items():
            old = _keep_old(path)
            try:
                os.replace(temporary, path)
            except BaseException:
                if old is not None:
                    _remove(old)  # a link to (or copy of) the old file, which is still there
                raise
            done.append((path, old))
    except OSError as exc:
        raise _cannot_write(path, exc, _undo(done)) from None
    except BaseException:
        _undo(done)
        raise
    for _, old in done:
        if old is not None:
            _remove(old)


def _keep_old(path: Path) -> str | None:
    """A temporary name holding the file now at ``path`` (None when there is none), so that
    it can be put back. A hard link costs nothing; a copy is made where links are refused."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    try:
        return _new_name_beside(path, lambda name: os.link(path, name, follow_symlinks=False))
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links, or someone else's protected file
        pass
    handle, kept = _create_beside(path)
    os.close(handle)
    try:
        shutil.copy2(path, kept)
    except BaseException:
        _remove(kept)
        raise
    return kept


def _new_name_beside(path: Path, make) -> str:
    """Call ``make(name)`` with a fresh temporary name beside ``path`` until one is free
    (``make`` refuses a name that exists, as ``os.link`` does), and return that name."""
    for _ in range(100):
        name = str(path.parent / f"{_TEMPORARY_PREFIX}{secrets.token_hex(4)}{_TEMPORARY_SUFFIX}")
        try:
            make(name)
        except FileExistsError:
            continue
        return name
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def _undo(done: list[tuple[Path, str | None]]) -> list[str]:
    """Put the old files back, newest first; what could not be put back, said in words."""
    problems = []
    for path, old in reversed(done):
        try:
            if old is None:
                os.unlink(path)  # there was no file before
            else:
                os.replace(old, path)
        except OSError as exc:
            problems.append(f"{path} is new, not restored ({exc.strerror})" if old is None else
                            f"the old {path} is kept as {old} ({exc.strerror})")
    return problems


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass  # nothing more can be done; the error that matters is already on its way


def _cannot_write(path: Path, exc: OSError, problems: list[str] | None = None) -> AttnvizError:
    """One line for a failed write: what failed, what was left, and the way out."""
    left = "; ".join(problems) if problems else "no file was changed"
    if exc.errno == errno.EISDIR:
        return AttnvizError(f"output {path} is a directory; {left}; give a file name such as "
                            f"{path / 'attention.png'}")
    way_out = {errno.ENAMETOOLONG: "choose a shorter name",
               errno.ENOSPC: "free some space or choose another folder",
               errno.EDQUOT: "free some space or choose another folder"}.get(
                   exc.errno, "choose another path")
    return AttnvizError(f"cannot write {path}: {exc.strerror or exc}; {left}; {way_out}")


def _is_a_directory(path: Path) -> AttnvizError:
    return AttnvizError(f"output {path} is a directory; give a file name such as "
                        f"{path / 'attention.png'}")
