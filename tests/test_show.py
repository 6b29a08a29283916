"""`attnviz show`: saved maps drawn again, by attnviz's files and by hand; bad files refused."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.maps.data import AttentionMaps
from tests import damaged
from tests.conftest import SOURCE, TARGET
from tests.test_maps import make_maps

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("suffix", ["npz", "json"])
def test_show_draws_what_decode_saved_with_its_provenance(tmp_path, suffix):
    saved = tmp_path / f"maps.{suffix}"
    assert run("decode", SOURCE, "-t", TARGET, "-o", saved).exit_code == 0
    again = run("decode", SOURCE, "-t", TARGET, "--kind", "cross", "--head", "2")
    shown = run("show", saved, "--kind", "cross", "--head", "2")
    assert shown.exit_code == 0, shown.stderr
    assert "Cross-attention · layer 1 · head 2" in shown.stdout
    body = [line for line in shown.stdout.splitlines() if not line.startswith("model ")]
    assert body == [line for line in again.stdout.splitlines() if not line.startswith("model ")]
    assert "model translate (" in shown.stdout and "attnviz 0.1.0" in shown.stdout
    words = " ".join(shown.stdout.split())  # the caption wraps at the terminal's width
    assert f"source {SOURCE!r}" in words and "target 'le chat noir" in words


def test_show_draws_every_kind_by_default_and_to_images(tmp_path):
    saved = tmp_path / "m.npz"
    assert run("decode", SOURCE, "-o", saved).exit_code == 0
    shown = run("show", saved)
    assert shown.exit_code == 0
    for title in ("Encoder self-attention", "Masked decoder self-attention", "Cross-attention"):
        assert title in shown.stdout
    png = tmp_path / "again.png"
    assert run("show", saved, "--layer", "0", "-o", png).exit_code == 0
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size[0] > 1000


def test_an_encoder_only_file_written_by_hand(tmp_path):
    weights = np.full((1, 2, 3, 3), 1 / 3, dtype=np.float32)
    path = tmp_path / "bert.npz"
    np.savez(path, source_tokens=np.array(["[CLS]", "hi", "[SEP]"]), encoder_self=weights)
    shown = run("show", path)
    assert shown.exit_code == 0, shown.stderr
    assert "Encoder self-attention · layer 0 · mean of 2 heads" in shown.stdout
    assert "[CLS]" in shown.stdout
    cross = run("show", path, "--kind", "cross")
    _one_line_error(cross, "Cross-attention is not in these maps", "encoder self-attention",
                    "choose another --kind")


def test_a_decoder_only_file_written_by_hand_in_json(tmp_path):
    causal = np.tril(np.ones((3, 3)))
    causal /= causal.sum(-1, keepdims=True)
    path = tmp_path / "gpt.json"
    path.write_text(json.dumps({"target_tokens": ["The", " cat", " sat"],
                                "decoder_self": [[causal.tolist()]]}))
    shown = run("show", path)
    assert shown.exit_code == 0, shown.stderr
    assert "Masked decoder self-attention · layer 0 · the only head" in shown.stdout
    assert "␣cat" in shown.stdout and "masked: a future position" in shown.stdout


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


GOOD = make_maps(s=3, t=4, layers=1, heads=2)


@pytest.mark.parametrize("name, arrays, fragments", [
    ("no-tokens.npz", {"encoder_self": GOOD.encoder_self},
     ["encoder_self must have shape [layers, heads, S=0, S=0]", "got [1, 2, 3, 3]"]),
    ("short-tokens.npz", {"source_tokens": np.array(["a", "b"]), "encoder_self":
                          GOOD.encoder_self}, ["S=2", "got [1, 2, 3, 3]"]),
    ("three-d.npz", {"source_tokens": np.array(["a", "b", "c"]),
                     "encoder_self": GOOD.encoder_self[0]}, ["[layers, heads"]),
    ("rows.npz", {"source_tokens": np.array(["a", "b", "c"]),
                  "encoder_self": GOOD.encoder_self * 0.9},
     ["not attention weights", "row 0 at layer 0, head 0 sums to 0.9"]),
    ("nan.npz", {"source_tokens": np.array(["a", "b", "c"]),
                 "encoder_self": np.full((1, 1, 3, 3), np.nan, np.float32)}, ["NaN"]),
    ("negative.npz", {"source_tokens": np.array(["a", "b", "c"]), "encoder_self":
                      np.tile(np.array([2.0, -1.0, 0.0], np.float32), (1, 1, 3, 1))},
     ["negative"]),
    ("empty.npz", {"source_tokens": np.array(["a"])}, ["holds no attention maps"]),
    ("strings.npz", {"source_tokens": np.array(["a"]), "encoder_self": np.array([["x"]])},
     ["array of numbers"]),
    ("mismatch.npz", {"source_tokens": np.array(["a", "b", "c"]),
                      "target_tokens": np.array(["<bos>", "x", "y", "z"]),
                      "decoder_self": GOOD.decoder_self,
                      "cross": np.repeat(GOOD.cross, 2, axis=1) / 1},
     ["same layers and heads"]),
])
def test_bad_npz_files_get_one_line_each(tmp_path, name, arrays, fragments):
    _one_line_error(run("show", _npz(tmp_path / name, **arrays)), name, *fragments)


def test_a_pickle_inside_an_npz_is_never_loaded(tmp_path):
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("source_tokens.npy", "w") as member:
            np.lib.format.write_array(member, np.array([Boom()], dtype=object),
                                      allow_pickle=True)
        with archive.open("encoder_self.npy", "w") as member:
            np.lib.format.write_array(member, np.ones((1, 1, 1, 1), np.float32))
    _one_line_error(run("show", path), "Python objects (a pickle)")
    assert not marker.exists()
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps(Boom()))
    _one_line_error(run("show", raw), "not a readable npz file")
    assert not marker.exists()


def test_a_huge_declared_array_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (64, 64, 4096, 4096)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("encoder_self.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(b"\0" * 1000)
    _one_line_error(run("show", path), "more than 1.1 GB", "attnviz reads at most")


def _npy_member(archive, name: str, header: dict, body: bytes) -> None:
    with archive.open(name, "w") as member:
        np.lib.format.write_array_header_1_0(member, header)
        member.write(body)


@pytest.mark.parametrize("shape", [(-1, 1, 1, 1), (1, 1, -4, 2)])
def test_a_negative_shape_is_refused(tmp_path, shape):
    path = tmp_path / "negative.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _npy_member(archive, "encoder_self.npy", {"descr": "<f4", "fortran_order": False,
                                                  "shape": shape}, b"\0" * 10_000_000)
    _one_line_error(run("show", path), "not a readable npz file", "shape")


def test_an_array_larger_than_its_member_is_refused_before_memory_is_taken(tmp_path):
    """A header may claim 800 MB where the zip member holds 1 KB: refused at once."""
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _npy_member(archive, "encoder_self.npy", {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1, 1, 10_000, 20_000)}, b"\0" * 1000)
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _one_line_error(run("show", path), "cut short")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KB


def test_a_map_with_no_weight_at_all_is_refused_and_empty_rows_are_named(tmp_path):
    zeros = tmp_path / "zeros.npz"
    np.savez(zeros, source_tokens=np.array(["a", "b"]), encoder_self=np.zeros((1, 1, 2, 2)))
    _one_line_error(run("show", zeros), "holds no weight at all")
    padded = tmp_path / "padded.npz"
    weights = np.array([[[[1.0, 0.0], [0.0, 0.0]]]], dtype=np.float32)
    np.savez(padded, source_tokens=np.array(["a", "<pad>"]), encoder_self=weights)
    shown = run("show", padded)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stderr.count("warning:") == 1 and "1 of encoder_self" in shown.stderr


def test_a_truncated_npz_is_refused(tmp_path):
    saved = tmp_path / "m.npz"
    GOOD.save(saved)
    data = saved.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(run("show", cut), "cut.npz")


@pytest.mark.parametrize("damage, fragment", [
    ("encrypted", "encrypted"), ("deflate", "compressed data is damaged"),
    ("lzma", "compressed data is damaged"), ("bzip2", "not a readable npz")])
def test_a_damaged_member_is_one_line_not_a_bug(tmp_path, damage, fragment):
    """An encrypted flag, corrupt deflate or LZMA data: "a bug in attnviz" (exit 70), where
    corrupt bzip2 data, the same class of damage, was one line and exit 1."""
    spoilt = tmp_path / "spoilt.npz"
    spoilt.write_bytes(damaged.DAMAGES[damage](GOOD.to_arrays(), "encoder_self"))
    _one_line_error(run("show", spoilt), "spoilt.npz", fragment, "-o maps.npz")


def test_fortran_ordered_arrays_are_read_right(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, source_tokens=np.array(GOOD.source_tokens),
             encoder_self=np.asfortranarray(GOOD.encoder_self))
    back = AttentionMaps.load(path)
    assert np.array_equal(back.encoder_self, GOOD.encoder_self)


@pytest.mark.parametrize("content, fragments", [
    ("not json", ["not a readable JSON file"]),
    ("[1, 2]", ["holds no attention maps"]),
    ("{}", ["holds no attention maps"]),
    ('{"source_tokens": "abc", "encoder_self": [[[[1]]]]}', ["list of strings"]),
    ('{"source_tokens": ["a"], "encoder_self": [[[["x"]]]]}', ["array of numbers"]),
    ('{"source_tokens": ["a"], "encoder_self": [[[[1, 2]]]]}', ["S=1"]),
    ("[" * 100_000 + "]" * 100_000, ["not a readable JSON file"]),
    ('{"source_tokens": ["a"], "encoder_self": [[[[NaN]]]]}', ["NaN"]),
])
def test_bad_json_files_get_one_line_each(tmp_path, content, fragments):
    path = tmp_path / "bad.json"
    path.write_text(content)
    _one_line_error(run("show", path), "bad.json", *fragments)


def test_files_that_are_not_files(tmp_path):
    _one_line_error(run("show", tmp_path / "missing.npz"), "does not exist")
    (tmp_path / "dir.npz").mkdir()
    _one_line_error(run("show", tmp_path / "dir.npz"), "is a directory")
    _one_line_error(run("show", tmp_path / "maps.txt"), ".npz or .json")
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    _one_line_error(run("show", fifo), "not a regular file")


def test_a_device_is_not_read(tmp_path):
    link = tmp_path / "zero.npz"
    link.symlink_to("/dev/zero")
    _one_line_error(run("show", link), "not a regular file")


def test_show_options_are_checked_before_reading(tmp_path):
    saved = tmp_path / "m.npz"
    GOOD.save(saved)
    _one_line_error(run("show", saved, "--layer", "3"), "--layer 3 is out of range")
    _one_line_error(run("show", saved, "--head", "2"), "--head 2 is out of range")
    _one_line_error(run("show", saved, "-o", tmp_path / "x.bmp"), "not a supported output")
    _one_line_error(run("show", saved, "--cmap", "nope"), "unknown colour map")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # as a raw stderr line would be: a fault
def test_a_weight_beyond_float32_is_one_line_without_numpy_warning(tmp_path):
    # 1e39 is a finite JSON number that float32 cannot hold: numpy's RuntimeWarning of the
    # cast reached stderr as a raw line with a source path, beside the error.
    path = tmp_path / "big.json"
    path.write_text('{"source_tokens": ["a", "b"], "encoder_self": [[[[1e39, 0], [0.5, 0.5]]]]}')
    _one_line_error(run("show", path), "big.json", "encoder_self", "too large")
    wide = _npz(tmp_path / "wide.npz", source_tokens=np.array(["a"]),
                encoder_self=np.full((1, 1, 1, 1), 1e300))
    _one_line_error(run("show", wide), "wide.npz", "too large")


def test_a_deeply_nested_provenance_in_an_npz_is_dropped_as_other_bad_provenance(tmp_path):
    # A provenance string that is not JSON is ignored; one nested past the recursion limit
    # made the whole file fail with "maximum recursion depth exceeded".
    path = _npz(tmp_path / "deep.npz", source_tokens=np.array(["a"]),
                encoder_self=np.ones((1, 1, 1, 1), np.float32),
                provenance=np.array("[" * 100_000 + "]" * 100_000))
    shown = run("show", path)
    assert shown.exit_code == 0, shown.stderr
    assert "recursion" not in shown.stderr


def test_a_file_without_maps_says_the_way_out(tmp_path):
    saved = tmp_path / "explained.npz"
    assert run("explain", SOURCE, "-o", saved).exit_code == 0
    _one_line_error(run("show", saved), "holds no attention maps", "-o maps.npz")
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    _one_line_error(run("show", path), "holds no attention maps", "-o maps.npz")


def test_a_json_file_that_starts_with_a_byte_order_mark_is_read(tmp_path):
    # Windows tools (PowerShell 5's Set-Content -Encoding UTF8) write one; RFC 8259 lets a
    # reader ignore it.
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"source_tokens": ["a"], "encoder_self": [[[[1.0]]]]}).encode())
    shown = run("show", path)
    assert shown.exit_code == 0, shown.stderr


def test_an_absent_kind_is_worded_as_the_command_line_names_it(tmp_path):
    # "--kind encoder_self is not in these maps" named a value --kind refuses, and --rollout
    # (not --kind) was what asked for the encoder.
    path = tmp_path / "cross.json"
    path.write_text(json.dumps({"source_tokens": ["a", "b"], "target_tokens": ["x"],
                                "cross": [[[[0.5, 0.5]]]]}))
    for args in (["--kind", "encoder"], ["--kind", "self"], ["--rollout"]):
        result = run("show", path, *args)
        _one_line_error(result, "is not in these maps")
        assert "encoder_self" not in result.stderr and "decoder_self" not in result.stderr
    assert "--kind" not in run("show", path, "--rollout").stderr


def test_the_readme_states_the_limits_the_readers_apply(tmp_path):
    """The README said npz arrays of at most 8 GB; the code refused files over 1.1 GB."""
    from pathlib import Path

    from attnviz.io.arrays import MAX_JSON_BYTES
    from attnviz.maps.budget import MAX_MAP_BYTES
    from attnviz.maps.data import MAX_FILE_BYTES

    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text("utf-8").split())
    extra = (MAX_FILE_BYTES - MAX_MAP_BYTES) // 1024**2
    assert (f"an npz whose arrays hold at most {MAX_MAP_BYTES // 1024**3} GB of maps and "
            f"{extra} MB more for its tokens, a json of at most {MAX_JSON_BYTES // 1024**2} MB"
            ) in readme
    assert f"for attnviz's own models, in {MAX_MAP_BYTES // 1024**3} GB" in readme
    big = tmp_path / "big.npz"  # declares one array just over the limit
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (MAX_FILE_BYTES // 4 + 1,)
    with zipfile.ZipFile(big, "w") as archive:
        stream = io.BytesIO()
        np.lib.format.write_array_header_1_0(stream, header)
        archive.writestr("encoder_self.npy", stream.getvalue())
    _one_line_error(run("show", big), f"holds arrays of more than "
                    f"{MAX_FILE_BYTES / 1024**3:.1f} GB; attnviz reads at most that much")
