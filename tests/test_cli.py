"""The attnviz command, through Typer's CliRunner and as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.sources import Request, open_source
from tests.conftest import SOURCE, TARGET

runner = CliRunner()
BIN = Path(sys.executable).parent


def run(*args: str):
    return runner.invoke(app, list(args))


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]


def test_encode_to_the_terminal_shows_every_source_token():
    result = run("encode", SOURCE)
    assert result.exit_code == 0, result.stderr
    assert "Encoder self-attention · layer 1 · mean of 4 heads" in result.stdout
    rows = [line.split()[0] for line in result.stdout.splitlines()
            if line.strip() and line.split()[0] in SOURCE.split()]
    assert rows == SOURCE.split()


def test_decode_with_a_target_shows_both_decoder_maps():
    result = run("decode", SOURCE, "--target", TARGET)
    assert result.exit_code == 0, result.stderr
    assert "Masked decoder self-attention · layer 1 · mean of 4 heads" in result.stdout
    assert "Cross-attention · layer 1 · mean of 4 heads" in result.stdout
    assert "masked: a future position" in result.stdout
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    for token in ["<bos>", *TARGET.split()]:
        assert rows.count(token) >= 2  # a row in each of the two maps


def test_decode_kind_layer_and_head_pick_the_map():
    result = run("decode", SOURCE, "-t", TARGET, "--kind", "cross", "--layer", "0",
                 "--head", "3")
    assert result.exit_code == 0, result.stderr
    assert "Cross-attention · layer 0 · head 3" in result.stdout
    assert "Masked decoder" not in result.stdout


def test_decode_without_a_target_writes_one_and_prints_it():
    result = run("decode", SOURCE, "--kind", "cross")
    assert result.exit_code == 0, result.stderr
    expected = open_source().maps(Request(SOURCE)).provenance.target_text
    assert expected and result.stdout.splitlines()[0] == expected


def test_seed_changes_the_random_model(tmp_path):
    run("encode", SOURCE, "-m", "random", "-o", str(tmp_path / "a.npz"))
    run("encode", SOURCE, "-m", "random", "-o", str(tmp_path / "b.npz"), "--seed", "1")
    run("encode", SOURCE, "-m", "random", "-o", str(tmp_path / "c.npz"))
    load = lambda name: np.load(tmp_path / name)["encoder_self"]  # noqa: E731
    assert np.array_equal(load("a.npz"), load("c.npz"))
    assert not np.allclose(load("a.npz"), load("b.npz"))


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_images_are_written_and_readable(tmp_path, suffix):
    path = tmp_path / f"dec.{suffix}"
    result = run("decode", SOURCE, "-t", TARGET, "-o", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # nothing drawn in the terminal when writing a file
    assert f"wrote {path}" in result.stderr
    content = path.read_bytes()
    assert content[:5] in {"png": [b"\x89PNG\r"], "svg": [b"<?xml"], "pdf": [b"%PDF-"]}[suffix]
    if suffix == "png":
        with Image.open(path) as picture:
            assert picture.size[0] > 800
            assert np.asarray(picture.convert("L")).std() > 10


def test_npz_and_json_hold_exactly_what_the_model_returned(tmp_path):
    result = run("decode", SOURCE, "-t", TARGET, "-o", str(tmp_path / "m.npz"),
                 "-o", str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.stderr
    maps = open_source().maps(Request(SOURCE, TARGET))
    with np.load(tmp_path / "m.npz") as archive:
        npz = {key: archive[key] for key in archive.files}
    parsed = json.loads((tmp_path / "m.json").read_text())
    for stored in (npz, parsed):
        assert list(stored["source_tokens"]) == [*SOURCE.split(), "<eos>"]
        assert list(stored["target_tokens"]) == ["<bos>", *TARGET.split()]
        for kind in ("encoder_self", "decoder_self", "cross"):
            assert np.array_equal(np.asarray(stored[kind], dtype=np.float32),
                                  getattr(maps, kind)), kind


def test_encode_npz_holds_the_encoder_maps_only(tmp_path):
    assert run("encode", SOURCE, "-o", str(tmp_path / "e.npz")).exit_code == 0
    with np.load(tmp_path / "e.npz") as archive:
        assert archive["encoder_self"].shape == (2, 4, 8, 8)  # 7 words and <eos>
        assert "decoder_self" not in archive.files and "cross" not in archive.files
        assert list(archive["target_tokens"]) == []


def test_a_model_file_is_used_and_unknown_words_are_named(model_file, tmp_path):
    result = run("encode", "the Zebra sees the red car", "--model", str(model_file))
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr and "'zebra'" in result.stderr and "<unk>" in \
        result.stderr
    assert f"attnviz models {model_file} --vocab" in result.stderr  # where to see the words
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    assert "Zebra?" in rows and "<unk>" not in rows  # the word as written, marked unknown
    assert "word?: a word the model's vocabulary lacks" in result.stdout
    # The maps keep <unk>; the file keeps the word as written.
    saved = tmp_path / "m.json"
    assert run("encode", "the Zebra sees the red car", "--model", str(model_file),
               "-o", str(saved)).exit_code == 0
    stored = json.loads(saved.read_text())
    assert stored["source_tokens"][1] == "<unk>"
    assert stored["provenance"]["source_written"] == {"1": "Zebra"}


@pytest.mark.parametrize("args, fragments", [
    (["encode", ""], ["source text is empty"]),
    (["encode", "   \t "], ["source text is empty"]),
    (["decode", SOURCE, "--target", " "], ["--target is empty"]),
    (["encode", SOURCE, "--layer", "5"], ["--layer 5 is out of range", "layers 0 to 1"]),
    (["decode", SOURCE, "--layer", "-1"], ["--layer -1 is out of range", "layers 0 to 1"]),
    (["encode", SOURCE, "--head", "4"], ["--head 4 is out of range", "heads 0 to 3"]),
    (["encode", SOURCE, "--model", "missing.safetensors"], ["does not exist"]),
    (["encode", SOURCE, "--model", "nosuchmodel"], ["unknown model 'nosuchmodel'", "random"]),
    (["encode", SOURCE, "--model", "translat"], ["unknown model 'translat' (did you mean "
                                                 "translate?)"]),
    (["encode", SOURCE, "--cmap", "rainbowz"], ["unknown colour map 'rainbowz'"]),
    (["encode", SOURCE, "--device", "cuda"], ["--device cuda", "use cpu"]),
])
def test_mistakes_give_one_line_and_write_nothing(tmp_path, args, fragments):
    if "cuda" in args and torch.cuda.is_available():  # the error needs a machine without CUDA
        args, fragments = ["encode", ""], ["source text is empty"]
    out = tmp_path / "out.png"
    result = run(*args, "-o", str(out))
    _assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, fragments", [
    ("x.bmp", ["'.bmp' is not a supported output", ".png, .svg, .pdf, .gif, .npz, .json"]),
    ("x", ["it has no suffix to tell the format", ".png, .svg"]),
    ("missing/dir/x.png", ["folder", "does not exist"]),
])
def test_bad_output_paths_give_one_line_and_write_nothing(tmp_path, name, fragments):
    result = run("encode", SOURCE, "-o", str(tmp_path / name))
    _assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["encode", SOURCE], ["decode", SOURCE, "-t", TARGET],
                                     ["explain", SOURCE]])
def test_the_same_file_named_twice_is_written_and_said_once(tmp_path, monkeypatch, command):
    """`-o view.png -o view.png` said "wrote view.png" twice; ./, an absolute path and a
    folder that leads back name the same file too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    names = ["view.png", "view.png", "./view.png", str(tmp_path / "view.png"),
             "sub/../view.png", "maps.npz", "./maps.npz"]
    result = run(*command, *[arg for name in names for arg in ("-o", name)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == ["wrote view.png", "wrote maps.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.npz", "sub", "view.png"]


def test_an_unwritable_folder_gives_one_line_and_no_file(tmp_path):
    if os.geteuid() == 0:  # root may write anywhere on disk; /proc refuses everyone
        folder = Path("/proc")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
    result = run("encode", SOURCE, "-o", str(folder / "attnviz-test.png"))
    _assert_one_line_error(result, "cannot write")
    assert not (folder / "attnviz-test.png").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_corrupt_model_gives_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    result = run("decode", SOURCE, "--model", str(bad))
    _assert_one_line_error(result, "not a usable attnviz model file")


def test_help_shows_examples():
    result = run("--help")
    assert result.exit_code == 0 and "encode" in result.stdout and "decode" in result.stdout
    for command in ("encode", "decode"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example:" in result.stdout


def _subprocess(*args, cwd, env=None):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "100", **(env or {})})


@pytest.mark.process
def test_console_script_and_python_m_write_the_same_png(tmp_path):
    script = _subprocess(str(BIN / "attnviz"), "encode", SOURCE, "-o", "a.png", cwd=tmp_path)
    module = _subprocess(sys.executable, "-m", "attnviz", "encode", SOURCE, "-o", "b.png",
                         cwd=tmp_path)
    assert script.returncode == 0 and module.returncode == 0, script.stderr + module.stderr
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    with Image.open(tmp_path / "a.png") as picture:
        assert picture.format == "PNG"


@pytest.mark.process
def test_a_real_process_prints_plain_text_to_a_pipe_and_errors_to_stderr(tmp_path):
    done = _subprocess(sys.executable, "-m", "attnviz", "decode", SOURCE, "-t", TARGET,
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stdout  # a pipe gets no colour codes
    assert "Cross-attention" in done.stdout and done.stderr == ""
    failed = _subprocess(sys.executable, "-m", "attnviz", "encode", " ", cwd=tmp_path)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and "source text is empty" in failed.stderr


@pytest.mark.process
def test_no_color_gives_plain_text_even_on_a_forced_terminal(tmp_path):
    done = _subprocess(sys.executable, "-m", "attnviz", "encode", SOURCE, cwd=tmp_path,
                       env={"NO_COLOR": "1", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    assert done.returncode == 0, done.stderr
    assert "48;2;" not in done.stdout and "48;5;" not in done.stdout
    assert "@" in done.stdout  # the character ramp


@pytest.mark.process
def test_forced_colour_terminal_gets_24_bit_cells(tmp_path):
    done = _subprocess(sys.executable, "-m", "attnviz", "encode", SOURCE, cwd=tmp_path,
                       env={"FORCE_COLOR": "1", "COLORTERM": "truecolor", "TERM": "xterm"})
    assert done.returncode == 0, done.stderr
    assert "48;2;" in done.stdout


def test_importing_the_cli_loads_neither_torch_nor_matplotlib():
    code = ("import sys, attnviz.cli; heavy = [m for m in ('torch', 'matplotlib', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_the_cycle_collector_is_back_on_after_a_command():
    import gc

    assert gc.isenabled()
    assert run("encode", SOURCE).exit_code == 0
    assert gc.isenabled()


def test_head_mean_and_a_head_that_is_not_a_number():
    mean = run("encode", SOURCE, "--head", "mean")
    assert mean.exit_code == 0 and "mean of 4 heads" in mean.stdout
    bad = run("encode", SOURCE, "--head", "first")
    assert bad.exit_code == 2 and "is not a head" in bad.stderr


def test_version():
    from attnviz.version import __version__

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"attnviz {__version__}"


def test_a_seed_out_of_range_is_refused_without_a_traceback():
    result = run("encode", SOURCE, "-m", "random", "--seed", "99999999999999999999999")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "--seed" in result.stderr


def test_outputs_are_all_written_or_none(tmp_path):
    if os.geteuid() == 0:
        blocked = Path("/proc/attnviz-test.png")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o500)
        blocked = folder / "x.png"
    result = run("decode", SOURCE, "-o", str(tmp_path / "ok.png"), "-o",
                 str(tmp_path / "ok.npz"), "-o", str(blocked))
    _assert_one_line_error(result, "cannot write")
    assert not (tmp_path / "ok.png").exists() and not (tmp_path / "ok.npz").exists()
    assert result.stdout == ""  # not even the translation: the command failed
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_output_inside_a_file_is_named_as_such(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = run("encode", SOURCE, "-o", str(tmp_path / "notes.txt" / "x.png"))
    _assert_one_line_error(result, "is a file, not a folder")


def test_every_command_has_a_one_line_summary_in_the_help():
    # A summary broken by hard line ends reads cut mid-sentence in `attnviz --help`.
    import typer.main

    commands = typer.main.get_command(app).commands
    assert {"encode", "decode", "show", "explain", "export", "train", "eval", "models"} <= \
        set(commands)
    for name, command in commands.items():
        summary = command.short_help or (command.help or "").split("\n\n")[0]
        assert "\n" not in summary.strip(), name


def test_the_vocab_command_of_a_model_whose_path_has_a_space_is_quoted(checkpoint, tmp_path):
    from attnviz.model.checkpoint import save_checkpoint

    model_file = tmp_path / "my model.safetensors"
    save_checkpoint(checkpoint, model_file)
    result = run("encode", "the Zebra sees the red car", "--model", str(model_file))
    assert result.exit_code == 0, result.stderr
    assert f"attnviz models '{model_file}' --vocab" in result.stderr
