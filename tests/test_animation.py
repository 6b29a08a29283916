"""The decoding animation: one GIF frame per decoding step, drawn from the maps alone."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import attnviz
from attnviz.cli.app import app
from attnviz.errors import AttnvizError
from attnviz.maps import views
from attnviz.model.catalog import shipped_models
from attnviz.model.checkpoint import load_checkpoint
from attnviz.model.tokenize import BOS_ID, EOS_ID
from attnviz.model.transformer import rule_out_specials
from attnviz.render import animation
from tests.conftest import SOURCE, TARGET
from tests.test_maps import make_maps

runner = CliRunner()
TRANSLATION = "le chat noir voit la voiture rouge"


def _frames(data: bytes) -> list[np.ndarray]:
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "GIF"
        frames = []
        for index in range(picture.n_frames):
            picture.seek(index)
            frames.append(np.asarray(picture.convert("RGB")))
        return frames


def test_one_frame_per_generated_token_and_the_end(tmp_path):
    path = tmp_path / "decoding.gif"
    result = runner.invoke(app, ["decode", SOURCE, "-o", str(path)])
    assert result.exit_code == 0, result.output
    written = result.stdout.strip()
    assert written == TRANSLATION
    with Image.open(path) as picture:
        assert picture.n_frames == len(written.split()) + 1
        assert picture.info["loop"] == 0
    assert 10_000 < path.stat().st_size < 1_000_000


def test_with_a_target_one_frame_per_target_token_and_the_end(tmp_path):
    path = tmp_path / "given.gif"
    target = "le chat voit la voiture"
    result = runner.invoke(app, ["decode", SOURCE, "-t", target, "--kind", "cross",
                                 "-o", str(path)])
    assert result.exit_code == 0, result.output
    with Image.open(path) as picture:
        assert picture.n_frames == len(target.split()) + 1


def test_a_character_model_gets_a_frame_per_character_and_the_end():
    maps = attnviz.trace("tuesday, march 3, 2026", model="dates")
    data = animation.to_bytes(maps, views.heatmaps(maps), "viridis")
    assert maps.provenance.target_text == "2026-03-03"
    assert len(_frames(data)) == len("2026-03-03") + 1


def test_the_same_maps_give_the_same_bytes(tmp_path):
    maps = attnviz.trace(SOURCE, cache=False)
    first = animation.to_bytes(maps, views.heatmaps(maps), "viridis")
    again = animation.to_bytes(attnviz.trace(SOURCE, cache=False),
                               views.heatmaps(maps), "viridis")
    assert first == again
    paths = [tmp_path / "a.gif", tmp_path / "b.gif"]
    for path in paths:
        assert runner.invoke(app, ["decode", SOURCE, "--no-cache", "-o", str(path)]
                             ).exit_code == 0
    assert paths[0].read_bytes() == paths[1].read_bytes() == first


def test_each_frame_shows_its_step():
    maps = attnviz.trace(SOURCE)
    assert animation.step_texts(maps, 0) == (
        "Greedy decoding · step 1 of 8 · reads <bos>, writes: le",
        "written so far: (nothing yet)")
    assert animation.step_texts(maps, 3) == (
        "Greedy decoding · step 4 of 8 · reads noir, writes: voit",
        "written so far: le chat noir")
    assert animation.step_texts(maps, 7)[0].endswith("reads rouge, writes: <eos> (the end)")
    given = attnviz.trace(SOURCE, TARGET)
    assert animation.step_texts(given, 0)[0].startswith("Decoding the given target · step 1")
    frames = _frames(animation.to_bytes(maps, views.heatmaps(maps), "viridis"))
    # Every frame differs from the one before (a GIF writer merges equal frames).
    assert all((a != b).any() for a, b in zip(frames, frames[1:], strict=False))


def test_the_masked_cells_grow_one_fewer_a_step():
    """The self-attention row of step t hides the T - t - 1 later positions: hatched grey."""
    maps = attnviz.trace(SOURCE)
    only_self = views.heatmaps(maps, ["decoder_self"])
    frames = _frames(animation.to_bytes(maps, only_self, "viridis"))
    grey = [(np.abs(frame.astype(int) - [0xd0, 0xd0, 0xd0]).sum(-1) <= 6).sum()
            for frame in frames]
    assert grey[-1] < grey[0] and all(a > b for a, b in zip(grey, grey[1:], strict=False))


def test_a_gif_of_every_encoder_layer_names_the_kind_once(tmp_path):
    # --layer all drew a panel a layer, and the refusal named the kind once a panel: one
    # line of 72 kB for 3,000 layers.
    result = runner.invoke(app, ["encode", SOURCE, "--layer", "all", "--head", "all",
                                 "-o", str(tmp_path / "x.gif")])
    assert result.exit_code == 1
    assert result.stderr.count("encoder self-attention") == 1, result.stderr
    assert not (tmp_path / "x.gif").exists()

def test_encode_to_a_gif_says_the_animation_needs_a_decoder(tmp_path):
    result = runner.invoke(app, ["encode", SOURCE, "-o", str(tmp_path / "x.gif")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the decoding animation (.gif) needs a decoder" in lines[0]
    assert "draw it with attnviz decode and --kind self, cross or all" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_show_of_saved_maps_animates_them(tmp_path):
    saved = tmp_path / "m.npz"
    assert runner.invoke(app, ["decode", SOURCE, "-o", str(saved)]).exit_code == 0
    result = runner.invoke(app, ["show", str(saved), "--head", "1", "-o",
                                 str(tmp_path / "s.gif")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "s.gif") as picture:
        assert picture.n_frames == 8


def test_the_row_title_names_a_lone_head_as_the_maps_name_it():
    maps = attnviz.trace(SOURCE)
    one = replace(maps, decoder_self=maps.decoder_self[:, :1], cross=maps.cross[:, :1],
                  encoder_self=maps.encoder_self[:, :1])
    title = animation._row_title(views.heatmap(one, "cross"))
    assert "the only head" in title and "mean of" not in title
    assert "mean of 4 heads" in animation._row_title(views.heatmap(maps, "cross"))


def test_one_layer_and_head_per_kind():
    maps = attnviz.trace(SOURCE)
    two = [views.heatmap(maps, "cross", 0), views.heatmap(maps, "cross", 1)]
    with pytest.raises(AttnvizError, match="shows one layer and one head"):
        animation.decoder_heatmaps(two)


def test_teacher_forced_rows_are_the_attention_of_each_greedy_step():
    """The frames come from one teacher-forced pass over what the model wrote: row t is
    what step t of greedy decoding saw, because the causal mask hides the later tokens."""
    checkpoint = load_checkpoint(shipped_models()["translate"])
    model = checkpoint.model
    source = torch.tensor([checkpoint.source_ids(SOURCE.split())])  # (1, S)
    with torch.inference_mode():
        memory = model.encode(source).memory
        written, self_rows, cross_rows = [BOS_ID], [], []
        while True:  # greedy decoding, step by step, as model.generate does
            step = model.decode(torch.tensor([written]), memory, source)
            self_weights = step.attention.weights("decoder_self")  # (1, L, H, t + 1, t + 1)
            cross_weights = step.attention.weights("cross")  # (1, L, H, t + 1, S)
            self_rows.append(self_weights[0, :, :, -1])  # (L, H, t + 1): this step's row
            cross_rows.append(cross_weights[0, :, :, -1])  # (L, H, S)
            following = int(rule_out_specials(step.logits[0, -1]).argmax())
            if following == EOS_ID:
                break
            written.append(following)
        assert written == model.generate(source)[0].tolist()
        whole = model(source, torch.tensor([written])).attention
    decoder_self, cross = whole.weights("decoder_self"), whole.weights("cross")
    for step, (self_row, cross_row) in enumerate(zip(self_rows, cross_rows, strict=True)):
        torch.testing.assert_close(decoder_self[0, :, :, step, :step + 1], self_row,
                                   atol=1e-6, rtol=1e-5)
        assert (decoder_self[0, :, :, step, step + 1:] == 0).all()
        torch.testing.assert_close(cross[0, :, :, step], cross_row, atol=1e-6,
                                   rtol=1e-5)
    # And those are the maps the animation draws, one frame per step.
    maps = attnviz.trace(SOURCE)
    assert len(self_rows) == len(maps.target_tokens)
    np.testing.assert_allclose(maps.cross[:, :, -1], cross_rows[-1].numpy(), atol=1e-6)


# --- Windows, the last step's token, the scale ---------------------------------------------

OUTLINE = np.array([0xe8, 0x19, 0x3c])  # the red outline of the query's own position


def _outlined(frame: np.ndarray) -> int:
    return int((np.abs(frame.astype(int) - OUTLINE).sum(-1) <= 30).sum())


@pytest.mark.parametrize("window, frames", [(["--window", "0:3"], 3),
                                            (["--window-query", "2:4"], 2),
                                            (["--window-key", "0:3"], 8)])
def test_a_window_animates_the_steps_it_holds(tmp_path, window, frames):
    """Was: exit 70, IndexError (the frames counted every step, the rows were cut)."""
    path = tmp_path / "w.gif"
    result = runner.invoke(app, ["decode", SOURCE, *window, "-o", str(path)])
    assert result.exit_code == 0, result.output
    with Image.open(path) as picture:
        assert picture.n_frames == frames


def test_a_window_of_queries_starts_at_its_step():
    maps = attnviz.trace(SOURCE)
    rows = animation.decoder_heatmaps(views.plan(maps, window_query="2:4").panels)
    assert list(animation.frame_steps(rows)) == [2, 3]
    assert animation.step_texts(maps, 2)[0].startswith("Greedy decoding · step 3 of 8")


def test_the_outline_marks_the_query_among_the_windowed_keys():
    """Keys 3 to 5: the red outline is on steps 3, 4 and 5 (at columns 0, 1, 2), and on no
    other step, whose own position is outside the window."""
    maps = attnviz.trace(SOURCE)
    rows = views.plan(maps, ["decoder_self"], window_key="3:6").panels
    frames = _frames(animation.to_bytes(maps, rows, "viridis"))
    outlined = [_outlined(frame) > 20 for frame in frames]
    assert outlined == [step in (3, 4, 5) for step in range(8)]
    whole = _frames(animation.to_bytes(maps, views.heatmaps(maps, ["decoder_self"]),
                                       "viridis"))
    assert all(_outlined(frame) > 20 for frame in whole)


def test_rows_of_a_window_say_their_positions():
    maps = attnviz.trace(SOURCE)
    rows = views.plan(maps, window_key="3:6").panels
    assert all(", keys at positions 3 to 5" in animation._row_title(row) for row in rows)
    assert ", keys at" not in animation._row_title(views.heatmap(maps, "cross"))


def test_the_last_step_writes_the_token_the_maps_hold():
    """Was: always '<eos> (the end)', even when generation hit its length limit (the maps do
    not say what comes next) or the model's end token is </s>."""
    maps = attnviz.trace(SOURCE)
    last = len(maps.target_tokens) - 1
    cut = replace(maps, provenance=replace(maps.provenance, next_token=None))
    assert animation.step_texts(cut, last)[0].endswith(
        "reads rouge, writes: <?> (not in these maps)")
    other = replace(maps, provenance=replace(maps.provenance, next_token="</s>"))
    assert animation.step_texts(other, last)[0].endswith("reads rouge, writes: </s> (the end)")


def test_written_so_far_spells_the_text_as_its_tokens_make_it():
    """Characters were joined with spaces (`2 0 2 6 - 0 3`); a word the vocabulary lacks is
    marked, as written."""
    dates = attnviz.trace("tuesday, march 3, 2026", model="dates")
    assert dates.provenance.target_text == "2026-03-03"
    assert animation.step_texts(dates, 7)[1] == "written so far: 2026-03"
    with pytest.warns(attnviz.AttnvizWarning, match="zèbre"):
        zebra = attnviz.trace(SOURCE, "le Zèbre noir voit")
    assert zebra.provenance.target_written == {2: "Zèbre"}
    assert [animation.step_texts(zebra, step)[1] for step in (0, 2, 4)] == [
        "written so far: (nothing yet)", "written so far: le Zèbre?",
        "written so far: le Zèbre? noir voit"]


def test_steps_show_unknown_words_as_written():
    maps = attnviz.trace(SOURCE, TARGET)
    unknown = replace(maps, provenance=replace(maps.provenance, target_written={2: "Chien"}))
    assert animation.step_texts(unknown, 1) == (
        "Decoding the given target · step 2 of 8 · reads le, should write (the target's next "
        "token): Chien?", "written so far: le")
    assert animation.step_texts(unknown, 2) == (
        "Decoding the given target · step 3 of 8 · reads Chien?, should write (the target's "
        "next token): noir", "written so far: le Chien?")


@pytest.mark.parametrize("scale, warned", [(None, False), ("unit", False), ("row", True),
                                           ("shared", True), ("panel", True)])
def test_a_scale_other_than_unit_is_said_to_be_left_out_of_the_animation(tmp_path, scale,
                                                                          warned):
    """Was: --scale was ignored without a word (every frame is coloured from 0 to 1)."""
    path = tmp_path / "s.gif"
    result = runner.invoke(app, ["decode", SOURCE, *(["--scale", scale] if scale else []),
                                 "-o", str(path)])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    if warned:
        assert said == [f"warning: the decoding animation (.gif) colours every frame on one "
                        f"scale from 0 to 1; the {scale} scale applies to pictures and pages"]
    else:
        assert said == []


def test_a_gif_of_glyphs_no_font_has_gives_one_warning_of_attnvizs_own(monkeypatch):
    """CJK and emoji tokens: PNG, SVG and PDF said attnviz's one line; the GIF printed eight
    raw 'UserWarning: Glyph ... missing from font(s)' lines of matplotlib's before it."""
    import warnings

    from attnviz.errors import AttnvizWarning
    from attnviz.render import fonts

    monkeypatch.setattr(fonts, "installed", lambda: ())  # no font has them
    fonts._fallbacks.cache_clear()
    maps = make_maps(s=3, t=4)
    maps = replace(maps, source_tokens=["我", "爱", "🙂"],
                   target_tokens=["<bos>", "こん", "にち", "は"])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = animation.to_bytes(maps, views.heatmaps(maps, ["decoder_self", "cross"]),
                                      "viridis")
    finally:
        fonts._fallbacks.cache_clear()
    assert len(_frames(data)) == 4
    assert [w.category for w in caught] == [AttnvizWarning], [str(w.message) for w in caught]
    assert "我 (U+6211)" in str(caught[0].message)
