"""Faults while writing and ending: every output file all or none, no temporary file left,
one line and the right exit code, never a traceback.

The library's all-or-none writing is tested by making each step of it fail in turn; what
depends on a real process (signals, pipes, a full device, file size limits, another user's
file) runs as one.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from attnviz import files
from attnviz.errors import AttnvizError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- write_all: all or none, whichever step fails ----------------------------------------

OLD = {"a.npz": b"old a", "c.npz": b"old c"}  # b.npz does not exist before
NEW = {"a.npz": b"new a", "b.npz": b"new b", "c.npz": b"new c"}


class _Acting:
    """Stands in for a module that files.py uses, so that one chosen call (counted over the
    functions in ``watched``) fails, is interrupted, or is followed by a real Ctrl-C."""

    def __init__(self, module, watched: set[str], plan: _Plan) -> None:
        self._module, self._watched, self._plan = module, watched, plan

    def __getattr__(self, name: str):
        value = getattr(self._module, name)
        if name not in self._watched:
            return value

        def step(*args, **kwargs):
            return self._plan.step(f"{self._module.__name__}.{name}", value, args, kwargs)
        return step


class _Plan:
    def __init__(self, mode: str | None, at: int, links: bool) -> None:
        self.mode, self.at, self.links, self.calls = mode, at, links, []

    def step(self, name, function, args, kwargs):
        index = len(self.calls)
        self.calls.append(name)
        if index == self.at and self.mode == "fail":
            raise OSError(errno.EIO, "Input/output error")
        if index == self.at and self.mode == "interrupt":
            raise KeyboardInterrupt
        try:
            if name == "os.link" and not self.links:
                raise PermissionError(errno.EPERM, "Operation not permitted")  # no hard links
            return function(*args, **kwargs)
        finally:
            if index == self.at and self.mode == "signal":
                signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, just after this step


def _write_with(plan: _Plan, folder: Path, monkeypatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(files, "os", _Acting(os, {"lstat", "link", "replace", "chmod",
                                                  "write"}, plan))
        patched.setattr(files, "tempfile", _Acting(tempfile, {"mkstemp"}, plan))
        patched.setattr(files, "shutil", _Acting(shutil, {"copy2"}, plan))
        files.write_all({folder / name: data for name, data in NEW.items()})


def _fresh(folder: Path) -> Path:
    folder.mkdir()
    for name, data in OLD.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
@pytest.mark.parametrize("mode", ["fail", "interrupt", "signal"])
def test_write_all_is_all_or_none_whichever_step_fails(tmp_path, monkeypatch, mode, links):
    counting = _Plan(None, -1, links)
    _write_with(counting, _fresh(tmp_path / "count"), monkeypatch)
    assert _state(tmp_path / "count") == NEW and _temporaries(tmp_path / "count") == []
    assert counting.calls.count("os.replace") == 3
    expected = {"fail": AttnvizError, "interrupt": KeyboardInterrupt,
                "signal": KeyboardInterrupt}[mode]
    for at, name in enumerate(counting.calls):
        folder = _fresh(tmp_path / f"{at}")
        context = f"{mode} at step {at} ({name})"
        if mode == "fail" and name == "os.link":  # a refused link: the old file is copied
            _write_with(_Plan(mode, at, links), folder, monkeypatch)
            assert _state(folder) == NEW and _temporaries(folder) == [], context
            continue
        with pytest.raises(expected) as raised:
            _write_with(_Plan(mode, at, links), folder, monkeypatch)
        assert _temporaries(folder) == [], context
        if mode == "signal":  # Ctrl-C is held while files are renamed: all old or all new
            assert _state(folder) in (OLD, NEW), context
        else:
            assert _state(folder) == OLD, context
        if mode == "fail":
            assert "\n" not in str(raised.value) and "no file was changed" in str(raised.value)


def test_a_target_that_became_a_folder_leaves_the_others_as_they_were(tmp_path):
    folder = _fresh(tmp_path / "out")
    (folder / "b.npz").mkdir()  # after the checks, before the renames
    with pytest.raises(AttnvizError, match="b.npz is a directory"):
        files.write_all({folder / name: data for name, data in NEW.items()})
    assert _state(folder) == OLD and _temporaries(folder) == []


def test_a_link_to_a_file_is_replaced_and_put_back_as_a_link(tmp_path):
    (tmp_path / "real.npz").write_bytes(b"old")
    (tmp_path / "a.npz").symlink_to("real.npz")
    (tmp_path / "b.npz").mkdir()
    with pytest.raises(AttnvizError):
        files.write_all({tmp_path / "a.npz": b"new", tmp_path / "b.npz": b"new"})
    assert os.readlink(tmp_path / "a.npz") == "real.npz"
    assert (tmp_path / "real.npz").read_bytes() == b"old" and _temporaries(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="acting as another user needs root")
def test_someone_elses_file_in_a_sticky_folder_changes_nothing():
    """/tmp-like: anyone may create files, only the owner may replace them. A real process
    that became user nobody writes its own file and root's: the rename over root's is refused."""
    folder = Path(tempfile.mkdtemp(prefix="attnviz-sticky-", dir="/tmp"))
    try:
        folder.chmod(0o1777)
        (folder / "theirs.npz").write_bytes(b"root's")
        (folder / "mine.npz").write_bytes(b"old")
        os.chown(folder / "mine.npz", 65534, 65534)
        code = ("import os, sys; from pathlib import Path; from attnviz import files\n"
                "from attnviz.errors import AttnvizError\n"
                "os.setgid(65534); os.setuid(65534); folder = Path(sys.argv[1])\n"
                "try:\n"
                "    files.write_all({folder / 'mine.npz': b'new',\n"
                "                     folder / 'theirs.npz': b'new'})\n"
                "except AttnvizError as exc:\n"
                "    print(exc)\n")
        done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                              text=True, timeout=60, env=ENV)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert "cannot write" in done.stdout and "theirs.npz" in done.stdout
        assert _state(folder) == {"mine.npz": b"old", "theirs.npz": b"root's"}
        assert _temporaries(folder) == []
    finally:
        shutil.rmtree(folder)


# --- names -----------------------------------------------------------------------------------

def test_a_name_of_255_bytes_is_written(tmp_path):
    path = tmp_path / ("a" * 251 + ".npz")
    files.check_writable(path)
    files.write_all({path: b"x"})
    assert path.read_bytes() == b"x" and _temporaries(tmp_path) == []


@pytest.mark.parametrize("name, fragment", [
    ("a" * 252 + ".npz", "choose a shorter name"),  # 256 bytes: one more than the limit
    ("notes.txt/x.npz", "is a file, not a folder"),
    ("x\0y.npz", "NUL"),
    ("x" * 300 + "/y.npz", "choose a shorter name"),
])
def test_a_name_the_system_refuses_is_one_line(tmp_path, name, fragment):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(AttnvizError, match=fragment) as raised:
        files.check_writable(tmp_path / name)
    assert "\n" not in str(raised.value) and "\0" not in str(raised.value)
    if "\0" not in name:  # the write itself fails cleanly too, should the check be skipped
        with pytest.raises(AttnvizError) as raised:
            files.write_all({tmp_path / name: b"x"})
        assert "\n" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
