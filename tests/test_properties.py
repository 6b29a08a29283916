"""Arbitrary text and option values: a drawing or a clean error, never anything else."""

from __future__ import annotations

import warnings

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

import attnviz
from attnviz.cli.app import app
from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import printable, valid_utf8

runner = CliRunner()
# Any Unicode, surrogates (what argv makes of bytes that are not UTF-8) and controls included;
# short, so that a hundred examples stay fast.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=24)
OPTIONS = dict(deadline=None, max_examples=60,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _clean(result) -> None:
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    if result.exit_code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


@settings(**OPTIONS)
@given(text=TEXT, target=st.none() | TEXT, layer=st.none() | st.integers(-3, 4),
       head=st.sampled_from(["mean", "0", "3", "4", "-1", "x"]),
       kind=st.sampled_from(["encoder", "self", "cross", "all", "both"]))
def test_decode_draws_or_refuses_cleanly(text, target, layer, head, kind):
    args = ["decode", text, "-m", "random", "--no-cache", "--kind", kind, "--head", head]
    if target is not None:
        args += ["--target", target]
    if layer is not None:
        args += ["--layer", str(layer)]
    _clean(runner.invoke(app, args))


@settings(**OPTIONS)
@given(text=TEXT, model=st.sampled_from(["translate", "dates", "reverse"]),
       suffix=st.sampled_from(["png", "svg", "json", "npz"]))
def test_encode_to_files_draws_or_refuses_cleanly(tmp_path, text, model, suffix):
    path = tmp_path / f"out.{suffix}"
    path.unlink(missing_ok=True)
    result = runner.invoke(app, ["encode", text, "-m", model, "--no-cache", "-o", str(path)])
    _clean(result)
    assert path.exists() == (result.exit_code == 0)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


@settings(**OPTIONS)
@given(text=TEXT, target=st.none() | TEXT)
def test_the_library_gives_maps_or_an_attnviz_error(text, target):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AttnvizWarning)
            maps = attnviz.trace(text, target, model="random", cache=False)
    except AttnvizError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    for kind in maps.kinds:
        weights = maps.stack(kind)
        assert np.isfinite(weights).all()
        assert np.allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert maps.provenance.source_text == valid_utf8(text)


@given(TEXT)
def test_printable_text_has_no_control_character_and_keeps_the_rest(text):
    shown = printable(text)
    assert all(ch.isprintable() or ch in "\u200c\u200d" for ch in shown)
    if text.isprintable():
        assert shown == text
    valid_utf8(text).encode("utf-8")  # never raises


@given(heads=st.integers(1, 64), encoder=st.integers(0, 48), decoder=st.integers(0, 48),
       source=st.integers(0, 100_000), target=st.integers(0, 5_000),
       text=st.sampled_from(["source", "target"]))
def test_the_length_a_refusal_suggests_fits_and_one_more_does_not(heads, encoder, decoder,
                                                                   source, target, text):
    import re

    from attnviz.maps import budget as maps

    if (encoder if text == "source" else decoder) == 0:
        return  # that side has no attention of its own to cut

    def fits(s: int, t: int) -> bool:
        return 4 * heads * (encoder * s * s + decoder * (t * t + t * s)) <= maps.MAX_MAP_BYTES

    try:
        maps.check_size(heads, encoder, decoder, source, target, text=text)
    except AttnvizError as exc:
        assert not fits(source, target)
        longest = int(re.search(r"at most ([\d,]+) tokens", str(exc))[1].replace(",", ""))
        side = text if str(exc).startswith("the text") else \
            ("target" if text == "source" else "source")

        def cut(n: int) -> bool:
            return fits(n, target) if side == "source" else fits(source, n)

        assert not cut(longest + 1)
        assert cut(longest) or longest == 1  # 1: even the shortest does not fit
    else:
        assert fits(source, target)
