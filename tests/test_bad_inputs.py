"""The table of bad inputs and faults: each gives its exit code, one line naming the problem,
no traceback, no file left behind, and no escape byte from the input on the terminal.

Every case runs through Typer's CliRunner; the cases marked ``real`` also run as real
processes, where the terminal, the environment and the exit code are the operating system's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.model.checkpoint import Checkpoint, save_checkpoint
from attnviz.model.tokenize import SPECIALS, Tokenizer, Vocabulary
from attnviz.model.transformer import Transformer
from tests.conftest import SOURCE, tiny_config

ESC = "\x1b"
TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title when printed raw
CLEAR = "\x1b[2J"  # clears the screen when printed raw
runner = CliRunner()


@dataclass
class Case:
    """One bad input: the arguments (``{tmp}`` is the test's folder), what to prepare, and
    what must come out."""

    id: str
    args: list[str]
    code: int = 1  # 0: it works (with a warning, say), 1: an error line, 2: a usage error
    says: str = ""  # a fragment of the line on stderr
    prepare: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)  # ({tmp} too)
    real: bool = False  # also as a real process


def _write(name: str, content: bytes | str) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return prepare


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda tmp: os.mkfifo(tmp / name)


def _folder(name: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).mkdir(parents=True)


def _link(name: str, target: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).symlink_to(target)


def _hostile_model(tmp: Path) -> None:
    """A model whose vocabularies hold escape sequences, and whose decoder writes one."""
    tokenizer = Tokenizer("word")
    source = Vocabulary([*SPECIALS, "the", "cat", TITLE])
    target = Vocabulary([*SPECIALS, CLEAR, TITLE])
    torch.manual_seed(0)
    model = Transformer(tiny_config(source_vocab_size=len(source),
                                    target_vocab_size=len(target))).eval()
    with torch.no_grad():
        model.output.bias.copy_(torch.tensor([0, 0, -50, 0, 50, 0], dtype=torch.float32))
    save_checkpoint(Checkpoint(model, tokenizer, tokenizer, source, target, {"task": TITLE}),
                    tmp / "hostile.safetensors")


def _model_with_nan(tmp: Path) -> None:
    _hostile_model(tmp)
    data = bytearray((tmp / "hostile.safetensors").read_bytes())
    data[-4:] = np.array([np.nan], dtype=np.float32).tobytes()
    (tmp / "nan.safetensors").write_bytes(bytes(data))


LONG_NAME = "n" * 251 + ".png"  # 255 bytes: the longest name a folder can hold
TOO_LONG_NAME = "n" * 252 + ".png"  # 256 bytes
LONG = " ".join(f"w{i}" for i in range(20_000))

CASES = [
    # texts
    Case("empty text", ["encode", ""], says="the source text is empty", real=True),
    Case("blank text", ["encode", "  \t "], says="the source text is empty"),
    Case("only punctuation for words", ["encode", "...", "-m", "reverse"], code=0),
    Case("empty target", ["decode", SOURCE, "--target", ""], says="--target is empty"),
    Case("blank target", ["decode", SOURCE, "-t", "\n"], says="--target is empty"),
    Case("20,000 words", ["encode", LONG, "-m", "random"], says="cut it to at most",
         real=True),
    Case("100,000 characters", ["decode", "a" * 100_000, "-m", "dates"],
         says="cut it to at most"),
    Case("escape codes in the text", ["encode", f"the {CLEAR} cat {TITLE}", "-m", "random"],
         code=0, real=True),
    Case("escape codes in the target", ["decode", SOURCE, "-t", f"le {TITLE} chat"], code=0),
    Case("escape codes in an unknown word", ["encode", f"the zebra{CLEAR}x"], code=0,
         says="not in this model's vocabulary"),
    Case("a 100,000-character unknown word", ["encode", "the " + "z" * 100_000], code=0,
         says="…'"),
    Case("not UTF-8 to json", ["encode", "caf\udce9 au lait", "-m", "random", "-o",
                               "{tmp}/x.json"], code=0, says="not UTF-8"),
    Case("not UTF-8 to png", ["decode", "caf\udce9", "-m", "random", "-o", "{tmp}/x.png"],
         code=0, says="not UTF-8"),
    Case("not UTF-8 to svg", ["encode", "\udcff\udcfe", "-m", "random", "-o", "{tmp}/x.svg"],
         code=0, says="not UTF-8"),
    Case("not UTF-8 target", ["decode", SOURCE, "-m", "random", "-t", "x\udc80y"], code=0,
         says="--target holds bytes that are not UTF-8"),
    # views
    Case("layer too high", ["encode", SOURCE, "--layer", "5"],
         says="--layer 5 is out of range"),
    Case("layer negative", ["decode", SOURCE, "--layer", "-1"],
         says="--layer -1 is out of range"),
    Case("head too high", ["encode", SOURCE, "--head", "4"], says="--head 4 is out of range"),
    Case("head not a number", ["encode", SOURCE, "--head", "first"], code=2),
    Case("head escape codes", ["encode", SOURCE, "--head", CLEAR], code=2),
    Case("kind unknown", ["decode", SOURCE, "--kind", "both"], code=2),
    Case("kind escape codes", ["decode", SOURCE, "--kind", TITLE], code=2),
    Case("layer huge", ["encode", SOURCE, "--layer", "9" * 30], says="is out of range"),
    Case("unknown colour map", ["encode", SOURCE, "--cmap", "rainbowz"],
         says="unknown colour map"),
    Case("colour map escape codes", ["encode", SOURCE, "--cmap", CLEAR],
         says="unknown colour map"),
    Case("no CUDA", ["encode", SOURCE, "--device", "cuda"], says="--device cuda"),
    Case("seed too large", ["encode", SOURCE, "-m", "random", "--seed", "9" * 30], code=2),
    Case("seed negative", ["encode", SOURCE, "-m", "random", "--seed", "-1"], code=2),
    Case("unknown command", ["encodez", SOURCE], code=2),
    Case("unknown command escape codes", [CLEAR], code=2),
    Case("unknown option", ["encode", SOURCE, "--colour", "red"], code=2),
    # models
    Case("unknown model name", ["encode", SOURCE, "-m", "nosuchmodel"],
         says="unknown model 'nosuchmodel'"),
    Case("model name escape codes", ["encode", SOURCE, "-m", f"x{TITLE}"],
         says="unknown model"),
    Case("missing model file", ["encode", SOURCE, "-m", "{tmp}/none.safetensors"],
         says="does not exist", real=True),
    Case("model is a folder", ["encode", SOURCE, "-m", "{tmp}/dir.safetensors"],
         says="is a directory", prepare=_folder("dir.safetensors")),
    Case("model is a FIFO", ["encode", SOURCE, "-m", "{tmp}/fifo.safetensors"],
         says="not a regular file", prepare=_fifo("fifo.safetensors"), real=True),
    Case("model is /dev/zero", ["encode", SOURCE, "-m", "/dev/zero"],
         says="not a regular file", real=True),
    Case("model links to /dev/zero", ["encode", SOURCE, "-m", "{tmp}/z.safetensors"],
         says="not a regular file", prepare=_link("z.safetensors", "/dev/zero")),
    Case("model is garbage", ["decode", SOURCE, "-m", "{tmp}/g.safetensors"],
         says="not a usable attnviz model file", prepare=_write("g.safetensors", b"\0" * 99)),
    Case("model is a pickle", ["encode", SOURCE, "-m", "{tmp}/p.safetensors"],
         says="not a usable attnviz model file",
         prepare=_write("p.safetensors", b"\x80\x04\x95" + b"cos\nsystem\n" * 3)),
    Case("model is empty", ["encode", SOURCE, "-m", "{tmp}/e.safetensors"],
         says="too short", prepare=_write("e.safetensors", b"")),
    Case("model with NaN weights", ["encode", SOURCE, "-m", "{tmp}/nan.safetensors"],
         says="NaN or infinite", prepare=_model_with_nan),
    Case("model path of 256 characters", ["encode", SOURCE, "-m", "{tmp}/" + "m" * 256],
         says="File name too long"),
    Case("model path escape codes", ["encode", SOURCE, "-m", f"{{tmp}}/{CLEAR}.safetensors"],
         says="does not exist"),
    Case("model vocabulary with escape codes", ["decode", "the cat", "-m",
                                                "{tmp}/hostile.safetensors"],
         code=0, prepare=_hostile_model, real=True),
    Case("model vocabulary with escape codes to files",
         ["decode", "the cat zebra", "-m", "{tmp}/hostile.safetensors", "-o", "{tmp}/h.png",
          "-o", "{tmp}/h.json"], code=0, says="not in this model's vocabulary",
         prepare=_hostile_model),
    Case("eval of the random model", ["eval", "-m", "random", "--task", "translate"],
         says="nothing to measure"),
    Case("eval on another task", ["eval", "-m", "dates", "--task", "translate"],
         says="trained on the dates task"),
    # outputs
    Case("unknown suffix", ["encode", SOURCE, "-o", "{tmp}/x.bmp"],
         says="not a supported output"),
    Case("no suffix", ["encode", SOURCE, "-o", "{tmp}/x"], says="no suffix"),
    Case("missing folder", ["encode", SOURCE, "-o", "{tmp}/no/such/x.png"],
         says="does not exist"),
    Case("folder is a file", ["encode", SOURCE, "-o", "{tmp}/file/x.png"],
         says="is a file, not a folder", prepare=_write("file", "x")),
    Case("output is a folder", ["encode", SOURCE, "-o", "{tmp}/out.png"],
         says="is a directory", prepare=_folder("out.png")),
    Case("output in /proc", ["encode", SOURCE, "-o", "/proc/attnviz.png"],
         says="cannot write"),
    Case("one good and one bad output", ["encode", SOURCE, "-o", "{tmp}/ok.png", "-o",
                                         "{tmp}/bad.bmp"], says="not a supported output"),
    Case("output name of 255 bytes", ["encode", SOURCE, "-o", "{tmp}/" + LONG_NAME], code=0),
    Case("output name of 256 bytes", ["encode", SOURCE, "-o", "{tmp}/" + TOO_LONG_NAME],
         says="File name too long", real=True),
    Case("output path escape codes", ["encode", SOURCE, "-o", f"{{tmp}}/{CLEAR}/x.png"],
         says="does not exist"),
    # the render cache
    Case("cache is a file", ["encode", SOURCE], code=0, says="render cache",
         prepare=_write("cachefile", "x"), env={"ATTNVIZ_CACHE_DIR": "{tmp}/cachefile"},
         real=True),
    Case("cache is /dev/null", ["encode", SOURCE], code=0, says="render cache",
         env={"ATTNVIZ_CACHE_DIR": "/dev/null"}),
    Case("cache under a file", ["encode", SOURCE], code=0, says="render cache",
         prepare=_write("cachefile", "x"), env={"ATTNVIZ_CACHE_DIR": "{tmp}/cachefile/c"}),
    # saved maps
    Case("show a missing file", ["show", "{tmp}/none.npz"], says="does not exist"),
    Case("show a FIFO", ["show", "{tmp}/f.npz"], says="not a regular file",
         prepare=_fifo("f.npz"), real=True),
    Case("show garbage", ["show", "{tmp}/g.npz"], says="not a readable npz file",
         prepare=_write("g.npz", b"PK\x03\x04garbage")),
    Case("show bad json", ["show", "{tmp}/g.json"], says="not a readable JSON file",
         prepare=_write("g.json", "{")),
    Case("show a text file", ["show", "{tmp}/g.txt"], says=".npz or .json",
         prepare=_write("g.txt", "x")),
    Case("show json with escape codes", ["show", "{tmp}/e.json"], code=0,
         prepare=_write("e.json", '{"source_tokens": ["\\u001b[2J", "\\u001b]0;x\\u0007"], '
                                  '"encoder_self": [[[[0.5, 0.5], [1, 0]]]], "provenance": '
                                  '{"model": "\\u001b[2J"}}')),
    # training
    Case("train without data", ["train", "-o", "{tmp}/m.safetensors"], says="--task"),
    Case("train to a bad suffix", ["train", "--task", "translate", "-o", "{tmp}/m.pt"],
         says=".safetensors"),
    Case("train on a missing file", ["train", "--data", "{tmp}/none.tsv", "-o",
                                     "{tmp}/m.safetensors"], says="does not exist"),
    Case("train on a FIFO", ["train", "--data", "{tmp}/p.tsv", "-o", "{tmp}/m.safetensors"],
         says="not a regular file", prepare=_fifo("p.tsv")),
    Case("train on /dev/zero", ["train", "--data", "/dev/zero", "-o", "{tmp}/m.safetensors"],
         says="not a regular file"),
    Case("train on a line without a tab", ["train", "--data", "{tmp}/p.tsv", "-o",
                                           "{tmp}/m.safetensors"],
         says="no tab", prepare=_write("p.tsv", "a b c\n")),
    Case("train on bytes that are not UTF-8", ["train", "--data", "{tmp}/p.tsv", "-o",
                                               "{tmp}/m.safetensors"],
         says="not UTF-8", prepare=_write("p.tsv", b"a\t\xff\n")),
]


def _fill(value: str, tmp: Path) -> str:
    return value.replace("{tmp}", str(tmp))


def _check(case: Case, tmp: Path, before: set[Path], code: int, stdout: str, stderr: str,
           args: list[str]) -> None:
    assert code == case.code, (code, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    if case.code == 1:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    if case.says:
        assert case.says in stderr, stderr
    hostile = any(ESC in arg for arg in args) or case.prepare in (_hostile_model,) or \
        case.id.startswith("show json with escape")
    if hostile:
        assert ESC not in stdout and ESC not in stderr, (stdout, stderr)
    left = {p for p in tmp.rglob("*") if p not in before}
    if case.code != 0:
        assert left == set(), left
    assert not [p for p in left if p.name.endswith(".tmp")], left


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_a_bad_input_gets_its_exit_code_and_one_line(case, tmp_path, monkeypatch):
    if case.prepare:
        case.prepare(tmp_path)
    for key, value in case.env.items():
        monkeypatch.setenv(key, _fill(value, tmp_path))
    before = set(tmp_path.rglob("*"))
    args = [_fill(arg, tmp_path) for arg in case.args]
    result = runner.invoke(app, args)
    _check(case, tmp_path, before, result.exit_code, result.stdout, result.stderr, args)


REAL = [case for case in CASES if case.real]


@pytest.mark.process
@pytest.mark.parametrize("case", REAL, ids=[case.id for case in REAL])
def test_a_bad_input_as_a_real_process(case, tmp_path):
    if case.prepare:
        case.prepare(tmp_path)
    env = {**os.environ, "COLUMNS": "80", "ATTNVIZ_CACHE_DIR": str(tmp_path / "cache"),
           **{key: _fill(value, tmp_path) for key, value in case.env.items()}}
    before = set(tmp_path.rglob("*")) | {tmp_path / "cache"}
    args = [_fill(arg, tmp_path) for arg in case.args]
    done = subprocess.run([sys.executable, "-m", "attnviz", *args], capture_output=True,
                          timeout=120, env=env, cwd=tmp_path)
    stdout = done.stdout.decode("utf-8", "replace")
    stderr = done.stderr.decode("utf-8", "replace")
    cache = set((tmp_path / "cache").rglob("*"))  # entries a run may keep, but no temporary
    assert not [p for p in cache if p.name.endswith(".tmp")], cache
    _check(case, tmp_path, before | cache, done.returncode, stdout, stderr, args)


def test_the_table_is_long_enough():
    assert len(CASES) >= 60 and len(REAL) >= 10


def test_a_hostile_vocabulary_is_shown_escaped(tmp_path):
    _hostile_model(tmp_path)
    result = runner.invoke(app, ["decode", "the cat", "-m", str(tmp_path / "hostile.safetensors"),
                                 "--kind", "cross"])
    assert result.exit_code == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("\\x1b[2J") or first.startswith("\\x1b]0;pwned\\x07"), first
    assert ESC not in result.stdout
