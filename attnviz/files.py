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
