"""The render cache: same maps back, never stale, bounded, and no torch on a hit."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from typing import NamedTuple

import numpy as np
import pytest
import torch

from attnviz.errors import AttnvizWarning
from attnviz.flow import pipeline
from attnviz.io import arrays as mapfile
from attnviz.maps.data import AttentionMaps
from attnviz.model.checkpoint import load_checkpoint, save_checkpoint
from attnviz.render.colors import colormap, lookup_table, rgb
from attnviz.sources import Request, cache, open_source
from tests import damaged
from tests.conftest import SOURCE, TARGET


class Traced(NamedTuple):
    """Maps, and the AttnvizWarnings said while they were made or read back."""

    maps: AttentionMaps
    warnings: tuple[str, ...]


def _said(compute) -> Traced:
    """What ``compute()`` gives and warns of; every warning goes on to the caller too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = compute()
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    return Traced(maps, tuple(str(w.message) for w in caught
                              if issubclass(w.category, AttnvizWarning)))


def traced(text, target=None, model=None, seed=0, part="decoder", use_cache=True):
    return _said(lambda: pipeline.trace(model, Request(text, target, part, seed),
                                        cache=use_cache))


def fresh(text, target=None, model=None, seed=0, part="decoder"):
    return _said(lambda: open_source(model).maps(Request(text, target, part, seed)))


def _same(a, b) -> None:
    assert a.maps.source_tokens == b.maps.source_tokens
    assert a.maps.target_tokens == b.maps.target_tokens
    assert a.maps.kinds == b.maps.kinds
    for kind in a.maps.kinds:
        assert np.array_equal(a.maps.stack(kind), b.maps.stack(kind))
    assert a.maps.provenance == b.maps.provenance
    # What the source said, whether computed or read back; the cache's own words aside.
    assert _source_said(a) == _source_said(b)


def _source_said(traced: Traced) -> tuple[str, ...]:
    return tuple(said for said in traced.warnings if not said.startswith("the render cache"))


@pytest.mark.parametrize("target", [TARGET, None])
def test_a_hit_returns_exactly_what_was_computed(private_cache, target):
    first = traced(SOURCE + " zebra", target)
    assert len(list(private_cache.glob("*.npz"))) == 1
    second = traced(SOURCE + " zebra", target)
    _same(first, second)
    _same(first, fresh(SOURCE + " zebra", target))
    assert second.warnings and "zebra" in second.warnings[0]


def test_texts_seeds_and_parts_have_their_own_entries(private_cache):
    traced(SOURCE, None, "random", 0, "encoder")
    traced(SOURCE, None, "random", 1, "encoder")
    traced(SOURCE, None, "random", 0, "decoder")
    traced(SOURCE + " .", None, "random", 0, "encoder")
    assert len(list(private_cache.glob("*.npz"))) == 4
    _same(traced(SOURCE, None, "random", 1, "encoder"), fresh(SOURCE, None, "random", 1,
                                                               "encoder"))


def test_a_changed_model_file_is_never_served_stale(private_cache, model_file, checkpoint):
    before = traced(SOURCE, model=str(model_file), part="encoder")
    with torch.no_grad():
        for parameter in checkpoint.model.parameters():
            parameter.add_(0.1)
    save_checkpoint(checkpoint, model_file)
    after = traced(SOURCE, model=str(model_file), part="encoder")
    assert not np.array_equal(before.maps.encoder_self, after.maps.encoder_self)
    _same(after, fresh(SOURCE, model=str(model_file), part="encoder"))
    assert load_checkpoint(model_file) is not None


def test_a_new_version_does_not_read_old_entries(private_cache, monkeypatch):
    traced(SOURCE, part="encoder")
    monkeypatch.setattr(cache, "__version__", "999")
    traced(SOURCE, part="encoder")
    assert len(list(private_cache.glob("*.npz"))) == 2


def test_changed_code_does_not_read_old_entries(private_cache, monkeypatch):
    traced(SOURCE, part="encoder")
    monkeypatch.setattr(cache, "code_digest", lambda: "edited")
    traced(SOURCE, part="encoder")
    assert len(list(private_cache.glob("*.npz"))) == 2


def test_the_code_digest_covers_every_source_file_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(cache, "__file__", str(package / "cache.py"))
    digests = []
    for change in (None, "a.py", "sub/b.py"):
        if change:
            (package / change).write_text("changed\n")
        cache.code_digest.cache_clear()
        digests.append(cache.code_digest())
    cache.code_digest.cache_clear()
    assert len(set(digests)) == 3


def test_no_cache_writes_nothing(private_cache):
    traced(SOURCE, part="encoder", use_cache=False)
    assert not private_cache.exists() or not list(private_cache.iterdir())


def test_a_damaged_entry_is_recomputed(private_cache):
    first = traced(SOURCE, part="encoder")
    (entry,) = private_cache.glob("*.npz")
    entry.write_bytes(b"broken")
    _same(first, traced(SOURCE, part="encoder"))
    assert entry.read_bytes() != b"broken"


def _entry_with(private_cache, **changes) -> None:
    """Rewrite the one cache entry with some arrays changed."""
    (entry,) = private_cache.glob("*.npz")
    with np.load(entry) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(changes)
    entry.write_bytes(mapfile.npz_bytes(arrays))


@pytest.mark.parametrize("changes", [
    {"attnviz_warnings": np.array("{\"not\": \"a list\"}")},
    {"attnviz_warnings": np.array("[1, 2]")},
    {"attnviz_warnings": np.array("not json")},
    {"provenance": np.array("[]")},
    {"encoder_self": np.zeros((2, 4, 3, 3), np.float32)},
    {"source_tokens": np.arange(8)},
])
def test_an_entry_with_wrong_types_is_a_miss(private_cache, changes):
    first = traced(SOURCE, part="encoder")
    _entry_with(private_cache, **changes)
    again = traced(SOURCE, part="encoder")
    assert again.maps.source_tokens == first.maps.source_tokens
    assert np.array_equal(again.maps.encoder_self, first.maps.encoder_self)


def _cli(*args):
    from typer.testing import CliRunner

    from attnviz.cli.app import app

    return CliRunner().invoke(app, list(args))


def _arrays_of(entry) -> dict[str, np.ndarray]:
    with np.load(entry) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("damage", [
    *damaged.DAMAGES,  # a member flagged encrypted, corrupt deflate, LZMA, bzip2 data
    "warnings nested 100,000 deep", "provenance nested 100,000 deep"])
def test_a_damaged_entry_falls_back_to_computing_and_goes(private_cache, damage):
    """The README: a damaged entry never breaks a command; it gives the output of
    --no-cache. It was exit 70 for every later run, and the entry stayed."""
    plain = _cli("encode", SOURCE, "--no-cache")
    assert _cli("encode", SOURCE).exit_code == 0
    (entry,) = private_cache.glob("*.npz")
    arrays = _arrays_of(entry)
    if damage in damaged.DAMAGES:
        entry.write_bytes(damaged.DAMAGES[damage](arrays, "encoder_self"))
    else:
        key = "attnviz_warnings" if damage.startswith("warnings") else "provenance"
        entry.write_bytes(mapfile.npz_bytes({**arrays, key: np.array(damaged.nested())}))
    spoilt = entry.read_bytes()
    for _ in range(2):  # the entry is dropped and written afresh: the next run hits it
        result = _cli("encode", SOURCE)
        assert result.exit_code == 0, result.stderr
        assert (result.stdout, result.stderr) == (plain.stdout, plain.stderr)
        assert entry.read_bytes() != spoilt
    assert _arrays_of(entry).keys() == arrays.keys()


@pytest.mark.parametrize("how", ["symlink", "copy"])
def test_an_entry_in_the_place_of_another_is_a_miss(private_cache, how):
    """Another sentence's entry linked in place of this one's was trusted: `encode "the
    cat"` printed the other sentence's maps. An entry holds its key, checked on reading."""
    other = "a dog sees the red car"
    plain = _cli("encode", SOURCE, "--no-cache")
    assert _cli("encode", other).exit_code == 0
    (theirs,) = private_cache.glob("*.npz")
    assert _cli("encode", SOURCE).exit_code == 0
    (ours,) = set(private_cache.glob("*.npz")) - {theirs}
    ours.unlink()
    if how == "symlink":
        ours.symlink_to(theirs)
    else:
        ours.write_bytes(theirs.read_bytes())
    result = _cli("encode", SOURCE)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == plain.stdout and other not in result.stdout
    assert not ours.is_symlink() and str(_arrays_of(ours)[cache.KEY]) == ours.stem
    assert str(_arrays_of(theirs)[cache.KEY]) == theirs.stem  # what it pointed to: kept


@pytest.mark.parametrize("where", ["a file", "/dev/null", "under a file", "/proc/nope"])
def test_an_unusable_cache_folder_gives_the_same_output_and_one_warning(tmp_path, monkeypatch,
                                                                        where):
    plain = _cli("encode", SOURCE, "--no-cache")
    (tmp_path / "file").write_text("x")
    folder = {"a file": tmp_path / "file", "/dev/null": "/dev/null",
              "under a file": tmp_path / "file" / "cache", "/proc/nope": "/proc/nope"}[where]
    monkeypatch.setenv("ATTNVIZ_CACHE_DIR", str(folder))
    for _ in range(2):
        result = _cli("encode", SOURCE)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == plain.stdout
        assert result.stderr.count("warning:") == 1 and "cache" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_entry_that_is_a_directory_is_skipped(private_cache):
    first = traced(SOURCE, part="encoder")
    (entry,) = private_cache.glob("*.npz")
    entry.unlink()
    entry.mkdir()
    with pytest.warns(AttnvizWarning, match="cache"):
        again = traced(SOURCE, part="encoder")
    _same(first, again)
    result = _cli("encode", SOURCE)
    assert result.exit_code == 0 and result.stderr.count("warning:") == 1
    # In the cache's words: not the advice of -o to a folder (".../attention.png").
    assert result.stderr == (f"warning: the render cache entry {entry} is a folder, not a "
                             "file: these maps are not kept (remove the folder to keep them)\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_with_a_damaged_entry_is_recomputed(private_cache):
    first = traced(SOURCE, part="encoder")
    (entry,) = private_cache.glob("*.npz")
    entry.write_bytes(b"broken")
    private_cache.chmod(0o500)
    try:
        with pytest.warns(AttnvizWarning, match="cache"):
            _same(first, traced(SOURCE, part="encoder"))
    finally:
        private_cache.chmod(0o700)


def test_a_read_only_cache_with_a_damaged_entry_as_root_is_recomputed(private_cache,
                                                                       monkeypatch):
    """Root can write anywhere: make every write and removal fail instead."""
    first = traced(SOURCE, part="encoder")
    (entry,) = private_cache.glob("*.npz")
    entry.write_bytes(b"broken")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache.Path, "unlink", refuse)
    monkeypatch.setattr("attnviz.io.atomic.write_all", refuse)
    with pytest.warns(AttnvizWarning, match="Permission denied"):
        _same(first, traced(SOURCE, part="encoder"))


def test_the_cache_is_bounded_and_drops_the_least_recently_used(private_cache):
    private_cache.mkdir(parents=True)
    for index in range(5):
        path = private_cache / f"{index}.npz"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (index, index))
    cache._trim(private_cache, limit=2500)
    assert sorted(p.name for p in private_cache.iterdir()) == ["3.npz", "4.npz"]


def _temporary(folder, size: int, name: str = ".attnviz-0badf00d.tmp"):
    """A temporary file as a process killed while writing an entry leaves it: sparse, so that
    it claims ``size`` bytes without taking them."""
    path = folder / name
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def test_temporaries_count_against_the_limit_and_stale_ones_go(private_cache, monkeypatch):
    """A 300 MB temporary left by a SIGKILL stayed for ever, uncounted: the cache went over
    its limit."""
    from attnviz.io import atomic

    private_cache.mkdir(parents=True)
    for index in range(5):
        path = private_cache / f"{index}.npz"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (index, index))
    fresh = _temporary(private_cache, 1500)  # another attnviz may be writing it now: kept
    cache._trim(private_cache, limit=2500)
    assert sorted(p.name for p in private_cache.iterdir()) == [fresh.name, "4.npz"]
    monkeypatch.setattr(atomic, "STALE_AFTER", -1.0)  # as if an hour had gone by
    _temporary(private_cache, 300 * 1024**2, ".attnviz-deadbeef.tmp")
    (private_cache / "notes.tmp").write_text("not attnviz's")
    cache._trim(private_cache, limit=2500)
    assert sorted(p.name for p in private_cache.iterdir()) == ["4.npz", "notes.tmp"]


def test_a_run_clears_the_stale_temporaries_of_the_cache(private_cache, monkeypatch):
    from attnviz.io import atomic

    private_cache.mkdir(parents=True)
    stale = _temporary(private_cache, 300 * 1024**2)
    monkeypatch.setattr(atomic, "STALE_AFTER", -1.0)
    assert _cli("encode", SOURCE).exit_code == 0
    assert not stale.exists() and len(list(private_cache.glob("*.npz"))) == 1


def _run_cli(*args, cache_home):
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "attnviz", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ATTNVIZ_CACHE_DIR": str(cache_home)})


def _imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:")}


@pytest.mark.process
def test_a_cache_hit_imports_neither_torch_nor_matplotlib_for_the_terminal(tmp_path):
    first = _run_cli("decode", SOURCE, "--kind", "cross", cache_home=tmp_path)
    assert first.returncode == 0 and "torch" in _imported(first.stderr)
    assert "matplotlib" not in _imported(first.stderr)  # the terminal never needs it
    again = _run_cli("decode", SOURCE, "--kind", "self", "--layer", "0", "--head", "1",
                     cache_home=tmp_path)
    assert again.returncode == 0
    imported = _imported(again.stderr)
    assert "torch" not in imported and "matplotlib" not in imported
    assert "Masked decoder self-attention · layer 0 · head 1" in again.stdout
    assert again.stdout.splitlines()[0] == first.stdout.splitlines()[0]  # the same translation


@pytest.mark.process
def test_a_cache_hit_draws_an_image_without_torch(tmp_path):
    assert _run_cli("encode", SOURCE, cache_home=tmp_path).returncode == 0
    png = _run_cli("encode", SOURCE, "-o", str(tmp_path / "e.png"), cache_home=tmp_path)
    assert png.returncode == 0 and (tmp_path / "e.png").stat().st_size > 1000
    assert "torch" not in _imported(png.stderr)


def test_the_terminal_table_of_viridis_is_matplotlibs():
    assert np.array_equal(lookup_table("viridis"),
                          np.rint(colormap("viridis")(np.linspace(0, 1, 256))[:, :3] * 255))


@pytest.mark.parametrize("name", ["viridis", "magma", "Greys"])
def test_terminal_colours_are_the_image_colours(name):
    values = np.random.default_rng(0).random(500)
    expected = np.rint(colormap(name)(values)[:, :3] * 255).astype(np.uint8)
    assert np.array_equal(rgb(name, values), expected)


def test_no_cache_on_the_command_line_keeps_nothing(private_cache):
    from typer.testing import CliRunner

    from attnviz.cli.app import app

    result = CliRunner().invoke(app, ["encode", SOURCE, "--no-cache"])
    assert result.exit_code == 0
    assert not private_cache.exists() or not list(private_cache.iterdir())
    assert CliRunner().invoke(app, ["encode", SOURCE]).exit_code == 0
    assert len(list(private_cache.glob("*.npz"))) == 1


def test_the_cache_follows_xdg_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv("ATTNVIZ_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.directory() == tmp_path / "attnviz"
    monkeypatch.setenv("ATTNVIZ_CACHE_DIR", str(tmp_path / "mine"))
    assert cache.directory() == tmp_path / "mine"


def test_a_hit_says_the_name_the_model_was_called_by(private_cache, tmp_path):
    """The same bytes under another name: the provenance names the model asked for."""
    import shutil

    from attnviz.model.catalog import shipped_models

    copy = tmp_path / "mine.safetensors"
    shutil.copy(shipped_models()["translate"], copy)
    first = traced(SOURCE, model="translate", part="encoder")
    second = traced(SOURCE, model=str(copy), part="encoder")
    assert first.maps.provenance.model == "translate"
    assert second.maps.provenance.model == str(copy)
    assert first.maps.provenance.model_sha256 == second.maps.provenance.model_sha256
