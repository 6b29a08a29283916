"""Faults while writing and ending: every output file all or none, no temporary file left,
one line and the right exit code, never a traceback.

The library's all-or-none writing is tested by making each step of it fail in turn; what
depends on a real process (signals, pipes, a full device, file size limits, another user's
file) runs as one.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.cli import exits, interrupt
from attnviz.cli.app import app
from attnviz.errors import AttnvizError
from attnviz.io import atomic as files
from attnviz.io import signals
from tests.conftest import SOURCE, TARGET

runner = CliRunner()


def _env() -> dict[str, str]:
    """The environment of a real process: read when it starts, so that it holds this test's
    own render cache (conftest's private_cache)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "100"}


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _warm_cache(args: list[str]) -> None:
    """Run the command here first, where torch is already loaded, so that the real process
    reads its maps from this test's cache (numpy only, no torch to load: a fraction of a
    second instead of several on a busy machine). Its output goes the same way."""
    if args[0] in ("encode", "decode"):
        assert runner.invoke(app, args).exit_code == 0


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
        patched.setattr(files, "os", _Acting(os, {"open", "lstat", "link", "replace",
                                                  "fchmod", "write"}, plan))
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
        code = ("import os, sys; from pathlib import Path; from attnviz.io import atomic as files\n"
                "from attnviz.errors import AttnvizError\n"
                "os.setgid(65534); os.setuid(65534); folder = Path(sys.argv[1])\n"
                "try:\n"
                "    files.write_all({folder / 'mine.npz': b'new',\n"
                "                     folder / 'theirs.npz': b'new'})\n"
                "except AttnvizError as exc:\n"
                "    print(exc)\n")
        done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                              text=True, timeout=60, env=_env())
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


@pytest.mark.parametrize("args, fragment", [
    (["-o", "a" * 252 + ".png"], "File name too long"),
    (["-m", "m" * 256], "File name too long"),
    (["-m", "m" * 256 + ".safetensors"], "File name too long"),
    (["-o", "a" * 4000 + "/x.png"], "File name too long"),
])
def test_names_too_long_give_one_line(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["encode", SOURCE, *args])
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and fragment in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_name_of_255_bytes_works_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = "a" * 251 + ".npz"
    result = runner.invoke(app, ["encode", SOURCE, "-m", "random", "-o", name, "-o", "b.npz"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / name).read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert _temporaries(tmp_path) == []


def test_a_name_that_is_not_utf8_is_written_under_its_own_bytes(tmp_path):
    _warm_cache(["encode", SOURCE, "-m", "random"])
    done = subprocess.run([sys.executable, "-m", "attnviz", "encode", SOURCE, "-m", "random",
                           "-o", b"caf\xe9.npz"], cwd=tmp_path, capture_output=True,
                          timeout=120, env=_env())
    assert done.returncode == 0, done.stderr
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9.npz"]


def test_a_target_that_became_a_folder_through_the_cli(tmp_path, monkeypatch):
    (tmp_path / "a.npz").write_bytes(b"old")
    write_all = files.write_all

    def meanwhile(contents):
        (tmp_path / "b.png").mkdir(exist_ok=True)  # after the checks passed
        write_all(contents)
    monkeypatch.setattr(files, "write_all", meanwhile)
    result = runner.invoke(app, ["encode", SOURCE, "-o", str(tmp_path / "a.npz"),
                                 "-o", str(tmp_path / "b.png")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "b.png is a directory" in result.stderr
    assert (tmp_path / "a.npz").read_bytes() == b"old" and _temporaries(tmp_path) == []


# --- exit codes for what is nobody's fault but attnviz's -------------------------------------

def test_a_bug_is_one_line_with_exit_70_and_the_way_to_the_traceback(monkeypatch):
    from attnviz.flow import pipeline

    def broken(*args):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(pipeline, "check_outputs", broken)
    monkeypatch.delenv(exits.DEBUG_VARIABLE, raising=False)
    result = runner.invoke(app, ["encode", SOURCE])
    assert result.exit_code == exits.BUG == 70
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "ZeroDivisionError" in result.stderr and "bug" in result.stderr
    assert "ATTNVIZ_DEBUG=1" in result.stderr

    monkeypatch.setenv(exits.DEBUG_VARIABLE, "1")
    result = runner.invoke(app, ["encode", SOURCE])
    assert result.exit_code == 70 and "Traceback" in result.stderr
    assert "in broken" in result.stderr and "ZeroDivisionError" in result.stderr


@pytest.mark.parametrize("raised, code, line", [
    (KeyboardInterrupt, 130, "interrupted"),
    (signals.Terminated, 143, "terminated"),
    (BrokenPipeError, 0, None),
])
def test_interrupts_and_a_closed_pipe_inside_a_command(monkeypatch, raised, code, line):
    from attnviz.flow import pipeline

    def stopped(*args):
        raise raised()
    monkeypatch.setattr(pipeline, "check_outputs", stopped)
    result = runner.invoke(app, ["encode", SOURCE])
    assert result.exit_code == code and result.stdout == ""
    assert result.stderr == (f"{line}\n" if line else "")


def test_a_bug_in_a_real_process(tmp_path):
    code = ("import sys; from attnviz.cli import app; from attnviz.flow import pipeline\n"
            "def broken(*args): raise RuntimeError('boom')\n"
            "pipeline.check_outputs = broken; sys.argv = ['attnviz', 'encode', 'a b']; "
            "app.main()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=_env())
    assert done.returncode == 70 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "RuntimeError: boom" in done.stderr
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []


def test_usage_errors_keep_typers_code_2():
    result = runner.invoke(app, ["encode", SOURCE, "--no-such-option"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr


# --- standard output: full, closed ----------------------------------------------------------

def _attnviz(*args, cwd, stdout=subprocess.PIPE, env=None):
    return subprocess.run([sys.executable, "-m", "attnviz", *args], cwd=cwd, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120,
                          env={**_env(), **(env or {})})


# How each command reaches stdout: rich's Console (heatmaps, the models table), typer.echo
# (a written translation, --version, --help).
PRINTING = {
    "rich heatmap": ["decode", SOURCE, "-t", TARGET],
    "rich table": ["models"],
    "echo then rich": ["decode", "the black cat sees the red car"],
    "typer help": ["--help"],
    "typer echo": ["--version"],
}




@pytest.mark.process
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", PRINTING.values(), ids=PRINTING.keys())
def test_a_full_standard_output_is_one_line(tmp_path, args):
    _warm_cache(args)
    with open("/dev/full", "w") as full:
        done = _attnviz(*args, cwd=tmp_path, stdout=full)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ("error: cannot write to standard output: No space left on device; "
                           "check where it goes (a full disk?)\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_still_buffered_at_the_end_is_flushed_while_it_can_be_said(tmp_path):
    code = "import sys; from attnviz.cli import exits; exits.run(lambda: sys.stdout.write('x'))"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert done.returncode == 1  # not Python's 120 with "Exception ignored"
    assert done.stderr.startswith("error: cannot write to standard output: No space left")
    assert done.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.process
@pytest.mark.parametrize("args, reader", [
    *[(args, "true") for args in PRINTING.values()],
    (PRINTING["echo then rich"], "head -1"),
], ids=[*PRINTING.keys(), "head"])
def test_a_reader_that_goes_away_is_success_even_with_pipefail(tmp_path, args, reader):
    """`true` leaves before the first write (a certain broken pipe); `head -1` after one line."""
    _warm_cache(args)
    script = f'set -o pipefail; "$@" | {reader}; echo "status $?" >&2'
    done = subprocess.run(["bash", "-c", script, "bash", sys.executable, "-m", "attnviz", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env())
    assert done.stderr == "status 0\n"  # and not a word from attnviz
    assert done.stdout.count("\n") == (0 if reader == "true" else 1)
    assert list(tmp_path.iterdir()) == []


# --- signals during a large write ------------------------------------------------------------

WORDS = " ".join(f"w{i % 97}" for i in range(1500))  # a 72 MB npz: a write that takes a while


ENCODE = [sys.executable, "-m", "attnviz", "encode", "-m", "random", "--no-cache",
          "-o", "big.npz"]


def _start(folder: Path, command: list[str], **options) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=folder, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **options)


def _ended_cleanly(process: subprocess.Popen, folder: Path, signum: int) -> None:
    out, err = process.communicate(timeout=120)
    assert process.returncode == -signum, err  # ended by the signal, after cleaning up
    assert "Traceback" not in err and "Exception ignored" not in err and out == ""
    assert err in ("", {signal.SIGINT: "interrupted\n", signal.SIGTERM: "terminated\n"}[signum])
    assert _temporaries(folder) == []
    if (folder / "big.npz").exists():  # renamed before the signal was handled: whole
        assert np.load(folder / "big.npz")["encoder_self"].shape[-1] == 1500


@pytest.mark.process
def test_ctrl_c_and_sigterm_during_a_large_write_leave_no_partial_file(tmp_path):
    """Three runs at once, each a real process:

    - Ctrl-C while the 72 MB file is written, as a terminal sends it: to the whole process
      group of a bash loop that runs attnviz. bash waits for attnviz and stops its loop only
      if attnviz died of SIGINT (an exit code of 130 alone would let it go on: "after 130").
    - SIGTERM while the 72 MB file is written.
    - SIGTERM one second in, while the model is still at work on a short text.
    """
    folders = [tmp_path / name for name in ("int", "term", "early")]
    for folder in folders:
        folder.mkdir()
    loop = 'for i in 1 2; do "$@"; echo "after $?"; done'
    runs = [_start(folders[0], ["bash", "-c", loop, "bash", *ENCODE, WORDS],
                   start_new_session=True),
            _start(folders[1], [*ENCODE, WORDS]),
            _start(folders[2], [*ENCODE, " ".join(WORDS.split()[:300])])]
    send = [lambda: os.killpg(runs[0].pid, signal.SIGINT),
            lambda: runs[1].send_signal(signal.SIGTERM),
            lambda: runs[2].send_signal(signal.SIGTERM)]
    try:
        started = time.monotonic()
        waiting = {0, 1, 2}
        while waiting:
            for index in sorted(waiting):
                due = (time.monotonic() - started > 1.0 if index == 2 else
                       bool(_temporaries(folders[index])))  # its write has begun
                if runs[index].poll() is not None:
                    waiting.discard(index)  # ended before its signal: the checks below say so
                elif due:
                    send[index]()
                    waiting.discard(index)
            time.sleep(0.0005)
        for run, folder, signum in zip(runs, folders, (signal.SIGINT, signal.SIGTERM,
                                                       signal.SIGTERM), strict=True):
            _ended_cleanly(run, folder, signum)
        assert not (folders[2] / "big.npz").exists()
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()


def test_a_write_beyond_the_file_size_limit_leaves_nothing(tmp_path):
    """A real short write: RLIMIT_FSIZE makes the kernel refuse bytes past 1 MB (EFBIG)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
    text = " ".join(WORDS.split()[:300])  # a 2.9 MB npz
    _warm_cache(["encode", text, "-m", "random"])  # so the process has no cache to write
    done = subprocess.run([sys.executable, "-m", "attnviz", "encode", text, "-m", "random",
                           "-o", "big.npz"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=_env(),
                          preexec_fn=limit)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot write big.npz: File too large; no file was changed" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_rewritten_file_keeps_its_mode_and_a_new_one_gets_the_umasks(tmp_path, monkeypatch):
    private = tmp_path / "private.npz"
    private.write_bytes(b"old")
    private.chmod(0o600)
    shared = tmp_path / "shared.npz"
    shared.write_bytes(b"old")
    shared.chmod(0o664)

    def no_umask(*args):
        raise AssertionError("the process umask must not change (another thread may be "
                             "creating files)")

    monkeypatch.setattr(os, "umask", no_umask)
    files.write_all({private: b"new", shared: b"new", tmp_path / "fresh.npz": b"new"})
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664
    monkeypatch.undo()
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "fresh.npz").stat().st_mode) == 0o666 & ~mask


@pytest.mark.process
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_as_the_command_ends_is_not_lost(tmp_path, signum):
    """Right after the last file is written, torch and matplotlib are still loaded: a signal
    then must end the process by that signal, with no "Exception ignored" traceback."""
    for attempt in range(3):
        process = subprocess.Popen(
            [sys.executable, "-m", "attnviz", "decode", "the cat sees a car", "-o",
             str(tmp_path / "a.npz"), "-o", str(tmp_path / "b.png")],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, "ATTNVIZ_CACHE_DIR": str(tmp_path / "cache")})
        lines = []
        with process.stderr:
            for line in process.stderr:
                lines.append(line)
                if "wrote" in line and "b.png" in line:
                    time.sleep(0.01 * attempt)
                    process.send_signal(signum)
            process.wait(timeout=60)
            stderr = "".join(lines) + process.stderr.read()
        assert process.returncode in (-signum, 128 + signum), (process.returncode, stderr)
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
        assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


# --- signals while a command starts -----------------------------------------------------------

# A real signal, sent by the process to itself while torch's C start-up imports numpy (a
# command run by exits.run that imports torch before numpy, as train does). torch clears the
# exception raised there, or mishandles it: the command ran on ("ran on"), or failed with an
# unrelated ImportError (exit 70).
SIGNAL_WHILE_TORCH_LOADS = """
import signal, sys
from attnviz.cli import exits
class SignalWhileTorchLoads:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and "torch" in sys.modules:
            sys.meta_path.remove(self)
            signal.raise_signal(signal.{signal})
        return None
sys.meta_path.insert(0, SignalWhileTorchLoads())
def command():
    import torch
    print("ran on", flush=True)
exits.run(command)
"""


@pytest.mark.process
@pytest.mark.parametrize("module, signum", [
    ("numpy", signal.SIGINT),  # the first import torch asks for: the interrupt was lost
    ("numpy", signal.SIGTERM),
    ("numpy.exceptions", signal.SIGINT),  # deeper: "cannot load module more than once"
], ids=["lost-sigint", "lost-sigterm", "importerror"])
def test_a_signal_while_torch_loads_ends_the_command_once_torch_is_in(module, signum):
    code = SIGNAL_WHILE_TORCH_LOADS.format(module=module, signal=signal.Signals(signum).name)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=_env())
    assert done.returncode == -signum, done.stderr
    assert done.stderr == {signal.SIGINT: "interrupted\n", signal.SIGTERM: "terminated\n"}[signum]
    assert done.stdout == ""


# A real signal, raised while torch's C++ start-up (torch._C._autograd_init) imports modules
# through Python: at the start of its first, second... import. At the fourth, the process
# crashed (SIGSEGV here; benchmarks/interrupts.py saw SIGABRT, "terminate called after
# throwing an instance of 'pybind11::error_already_set'", in encode).
SIGNAL_INSIDE_TORCH_C = """
import signal, sys
from attnviz.cli import exits
state = {{"inside": False, "imports": 0}}
def watch(frame, event, arg):
    if event == "c_call" and getattr(arg, "__name__", "") == "_autograd_init":
        state["inside"] = True
    elif state["inside"] and event == "call" and frame.f_code.co_name == "_lock_unlock_module":
        state["imports"] += 1
        if state["imports"] == {k}:
            sys.setprofile(None)
            print("signal sent", flush=True)
            signal.raise_signal(signal.SIGINT)
sys.setprofile(watch)
def command():
    import torch
    print("ran on", flush=True)
exits.run(command)
"""


@pytest.mark.process
def test_a_signal_inside_torchs_c_start_up_never_crashes_it():
    runs = [subprocess.Popen([sys.executable, "-c", SIGNAL_INSIDE_TORCH_C.format(k=k)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env())
            for k in (1, 2, 3, 4)]  # at once: a second each, mostly torch's import
    try:
        ended = [(run.communicate(timeout=120), run.returncode) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    for k, ((out, err), code) in enumerate(ended, start=1):
        assert out == "signal sent\n", (k, out)  # sent, and the command did not run on
        assert (code, err) == (-signal.SIGINT, "interrupted\n"), (k, code, err)


def test_importing_attnviz_changes_no_handler_and_no_import():
    """Only the CLI's run holds torch's import and sets signal handlers; a library caller
    keeps its own."""
    code = ("import signal, sys\n"
            "def state(): return (list(sys.meta_path), signal.getsignal(signal.SIGINT),"
            " signal.getsignal(signal.SIGTERM), sys.unraisablehook)\n"
            "before = state()\n"
            "import attnviz, attnviz.api, attnviz.cli.app, attnviz.cli.entry, attnviz.cli.exits\n"
            "import attnviz.__main__\n"
            "print(state() == before)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")


def test_the_held_import_of_torch_ends_with_its_block():
    finders = list(sys.meta_path)
    with interrupt.held_while_importing("torch"):
        assert len(sys.meta_path) == len(finders) + 1
    assert sys.meta_path == finders


def _imported(line: str) -> str:
    """The module of a line of ``-X importtime`` (``import time: 12 | 34 | click``)."""
    return line.rpartition("|")[2].strip() if line.startswith("import time:") else ""


@pytest.mark.parametrize("how", ["script", "module"])
def test_ctrl_c_while_the_cli_is_imported_ends_quietly(tmp_path, how):
    """Ctrl-C before exits.run has set its handlers, while attnviz.cli imports typer (the
    first tenth of a second), printed a KeyboardInterrupt traceback. The process is paused
    (SIGSTOP) as soon as typer's first module is in, so the signal lands inside that
    import."""
    script = Path(sys.executable).parent / "attnviz"
    if how == "script" and not script.exists():
        pytest.skip("no attnviz console script next to this Python")
    command = [str(script)] if how == "script" else [sys.executable, "-m", "attnviz"]
    process = subprocess.Popen([*command, "--version"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**_env(), "PYTHONPROFILEIMPORTTIME": "1"})
    try:
        seen = []
        for line in process.stderr:
            seen.append(line)
            if _imported(line).startswith("typer."):  # attnviz.cli is half-imported
                process.send_signal(signal.SIGSTOP)
                break
        assert _imported(seen[-1]).startswith("typer."), "".join(seen)
        assert not any(_imported(line) == "attnviz.cli.app" for line in seen)
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGCONT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    err = "".join(seen) + err
    words = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert process.returncode == -signal.SIGINT, err
    assert words == [] and out == ""


@pytest.mark.process
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_picture_that_does_not_fit_the_address_space_left_is_refused_in_one_line(tmp_path):
    """`show` of a 4,000 x 4,000 map to PNG under a 1.2 GB address limit was "a bug in
    attnviz" (a MemoryError, exit 70). Its memory is known before it is drawn: refused,
    with the way out, which then draws."""
    import resource

    from attnviz.maps.data import AttentionMaps

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1_200_000_000, 1_200_000_000))
    n = 4000
    AttentionMaps([f"t{i}" for i in range(n)], [], encoder_self=np.full(
        (1, 1, n, n), 1 / n, np.float32)).save(tmp_path / "long.npz")
    for suffix in ("png", "svg"):
        done = subprocess.run([sys.executable, "-m", "attnviz", "show", "long.npz", "-o",
                               f"long.{suffix}"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env=_env(), preexec_fn=limit)
        assert done.returncode == 1, done.stderr
        assert re.fullmatch(r"error: this picture would take about \d\.\d GB of memory to draw, "
                            r"more than the \d\.\d GB of memory left to this process: draw a "
                            r"window of the maps \(--window\), or view them in the terminal, "
                            r"which pools long maps to fit, or save them as numbers \(\.npz\)\n",
                            done.stderr), done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["long.npz"]
    window = subprocess.run([sys.executable, "-m", "attnviz", "show", "long.npz", "-o",
                             "window.png", "--window", ":1000"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, env=_env(),
                            preexec_fn=limit)
    assert window.returncode == 0 and window.stderr == "wrote window.png\n", window.stderr


def test_running_out_of_memory_while_drawing_is_one_line_not_a_bug(tmp_path, monkeypatch):
    import matplotlib.figure

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 488. MiB for an array")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_memory)
    result = runner.invoke(app, ["encode", SOURCE, "-o", str(tmp_path / "e.png")])
    assert result.exit_code == 1
    assert result.stderr == ("error: drawing this picture ran out of memory: draw a window of "
                             "the maps (--window), or view them in the terminal, which pools "
                             "long maps to fit, or save them as numbers (.npz)\n")
    assert list(tmp_path.iterdir()) == []


def test_running_out_of_memory_anywhere_is_one_line_not_a_bug(monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("attnviz.flow.pipeline.trace", no_memory)
    result = runner.invoke(app, ["encode", SOURCE])
    assert result.exit_code == 1
    assert result.stderr == ("error: attnviz ran out of memory; give it less to do at once (a "
                             "shorter text, fewer layers or heads, a window) or free some "
                             "memory\n")
