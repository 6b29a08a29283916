"""The decoding animation: one GIF frame per decoding step, drawn from the maps alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import attnviz
from attnviz import views
from attnviz.catalog import shipped_models
from attnviz.checkpoint import load_checkpoint
from attnviz.cli import app
from attnviz.errors import AttnvizError
from attnviz.model import rule_out_specials
from attnviz.render import animation
from attnviz.tokenize import BOS_ID, EOS_ID
from tests.conftest import SOURCE, TARGET

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
            logits, self_weights, cross_weights = model.decode(torch.tensor([written]),
                                                               memory, source)
            self_rows.append(self_weights[0, :, :, -1])  # (L, H, t + 1): this step's row
            cross_rows.append(cross_weights[0, :, :, -1])  # (L, H, S)
            following = int(rule_out_specials(logits[0, -1]).argmax())
            if following == EOS_ID:
                break
            written.append(following)
        assert written == model.generate(source)[0].tolist()
        whole = model(source, torch.tensor([written]))
    for step, (self_row, cross_row) in enumerate(zip(self_rows, cross_rows, strict=True)):
        torch.testing.assert_close(whole.decoder_self[0, :, :, step, :step + 1], self_row,
                                   atol=1e-6, rtol=1e-5)
        assert (whole.decoder_self[0, :, :, step, step + 1:] == 0).all()
        torch.testing.assert_close(whole.cross[0, :, :, step], cross_row, atol=1e-6,
                                   rtol=1e-5)
    # And those are the maps the animation draws, one frame per step.
    maps = attnviz.trace(SOURCE)
    assert len(self_rows) == len(maps.target_tokens)
    np.testing.assert_allclose(maps.cross[:, :, -1], cross_rows[-1].numpy(), atol=1e-6)
