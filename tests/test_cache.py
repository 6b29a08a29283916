"""The render cache: same maps back, never stale, bounded, and no torch on a hit."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnviz import cache, pipeline
from attnviz.checkpoint import load_checkpoint, save_checkpoint
from attnviz.maps import KINDS
from attnviz.render.colors import colormap, lookup_table, rgb
from attnviz.request import Request
from tests.conftest import SOURCE, TARGET


def _same(a, b) -> None:
    assert a.maps.source_tokens == b.maps.source_tokens
    assert a.maps.target_tokens == b.maps.target_tokens
    for kind in KINDS:
        assert np.array_equal(getattr(a.maps, kind), getattr(b.maps, kind))
    assert (a.default_layers, a.warnings, a.generated) == (b.default_layers, b.warnings,
                                                           b.generated)


@pytest.mark.parametrize("target", [TARGET, None])
def test_a_hit_returns_exactly_what_was_computed(private_cache, target):
    first = cache.run(Request("decode", SOURCE + " zebra", target, None, 0))
    assert len(list(private_cache.glob("*.npz"))) == 1
    second = cache.run(Request("decode", SOURCE + " zebra", target, None, 0))
    _same(first, second)
    _same(first, pipeline.decode(SOURCE + " zebra", target))
    assert second.warnings and "zebra" in second.warnings[0]


def test_texts_seeds_and_commands_have_their_own_entries(private_cache):
    cache.run(Request("encode", SOURCE, None, "random", 0))
    cache.run(Request("encode", SOURCE, None, "random", 1))
    cache.run(Request("decode", SOURCE, None, "random", 0))
    cache.run(Request("encode", SOURCE + " .", None, "random", 0))
    assert len(list(private_cache.glob("*.npz"))) == 4
    seeded = cache.run(Request("encode", SOURCE, None, "random", 1))
    _same(seeded, pipeline.encode(SOURCE, "random", seed=1))


def test_a_changed_model_file_is_never_served_stale(private_cache, model_file, checkpoint):
    before = cache.run(Request("encode", SOURCE, None, str(model_file), 0))
    with torch.no_grad():
        for parameter in checkpoint.model.parameters():
            parameter.add_(0.1)
    save_checkpoint(checkpoint, model_file)
    after = cache.run(Request("encode", SOURCE, None, str(model_file), 0))
    assert not np.array_equal(before.maps.encoder_self, after.maps.encoder_self)
    _same(after, pipeline.encode(SOURCE, str(model_file)))
    assert load_checkpoint(model_file) is not None


def test_a_new_version_does_not_read_old_entries(private_cache, monkeypatch):
    cache.run(Request("encode", SOURCE, None, None, 0))
    monkeypatch.setattr(cache, "__version__", "999")
    cache.run(Request("encode", SOURCE, None, None, 0))
    assert len(list(private_cache.glob("*.npz"))) == 2


def test_no_cache_writes_nothing(private_cache):
    cache.run(Request("encode", SOURCE, None, None, 0), use_cache=False)
    assert not private_cache.exists() or not list(private_cache.iterdir())


def test_a_damaged_entry_is_recomputed(private_cache):
    first = cache.run(Request("encode", SOURCE, None, None, 0))
    (entry,) = private_cache.glob("*.npz")
    entry.write_bytes(b"broken")
    _same(first, cache.run(Request("encode", SOURCE, None, None, 0)))
    assert entry.read_bytes() != b"broken"


def test_the_cache_is_bounded_and_drops_the_least_recently_used(private_cache):
    private_cache.mkdir(parents=True)
    for index in range(5):
        path = private_cache / f"{index}.npz"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (index, index))
    cache._trim(private_cache, limit=2500)
    assert sorted(p.name for p in private_cache.iterdir()) == ["3.npz", "4.npz"]


def _run_cli(*args, cache_home):
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "attnviz", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ATTNVIZ_CACHE_DIR": str(cache_home)})


def _imported(stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:")}


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

    from attnviz.cli import app

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
