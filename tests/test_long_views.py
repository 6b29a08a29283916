"""Long maps that can be read: the log scale, and the first key (an attention sink) left out
of the colour scale or out of each row."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.flow import pipeline
from attnviz.maps.data import AttentionMaps
from attnviz.maps.views import LOG_DECADES, heatmap, log_shares, plan, sunk

runner = CliRunner()


def sink_maps(rng: np.random.Generator, size: int = 6) -> AttentionMaps:
    """Causal maps whose every row gives most of its weight to the first key."""
    weights = rng.random((1, 2, size, size)) * np.tril(np.ones((size, size)))
    weights[..., 0] += 20.0
    weights /= weights.sum(-1, keepdims=True)
    return AttentionMaps([], [f"t{i}" for i in range(size)],
                         decoder_self=weights.astype(np.float32))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 12))
def test_rows_renormalised_without_the_first_key_sum_to_one(seed, size):
    maps = sink_maps(np.random.default_rng(seed), size)
    whole = heatmap(maps, "decoder_self")
    drawn = sunk(whole, "renormalised")
    assert not drawn.visible[:, 0].any() and (drawn.weights[:, 0] == 0).all()
    sums = drawn.weights[:, 1:].sum(-1)
    assert np.allclose(sums[1:], 1.0, atol=1e-5) and sums[0] == 0.0  # row 0 saw only the sink
    np.testing.assert_allclose(drawn.weights[-1, 1:] * (1 - whole.weights[-1, 0]),
                               whole.weights[-1, 1:], atol=1e-6)


def test_the_unscaled_sink_is_left_out_of_the_colour_scale():
    maps = sink_maps(np.random.default_rng(0))
    shown = plan(maps, layer=0, head=0)
    unscaled = plan(maps, layer=0, head=0, sink="unscaled")
    panel = unscaled.panels[0]
    assert shown.panels[0].scale_max == panel.weights.max()
    assert panel.scale_max == panel.weights[:, 1:][panel.visible[:, 1:]].max()
    assert panel.scale_max < 0.2 and unscaled.sink_note.startswith("the first key")


@given(st.floats(1e-6, 1.0))
def test_the_log_scale_runs_four_decades_below_the_largest(top):
    weights = np.array([[0.0, top * 10 ** -LOG_DECADES / 10, top * 1e-2, top, top * 2]])
    shares = log_shares(weights, top)
    assert shares[0, 0] == 0.0 and shares[0, 1] == 0.0
    assert abs(shares[0, 2] - 0.5) < 1e-5 and shares[0, 3] == 1.0 and shares[0, 4] == 1.0
    assert (np.diff(shares[0]) >= 0).all()


def test_images_and_the_terminal_say_the_scale_and_the_sink(tmp_path):
    from attnviz.render import image

    maps = sink_maps(np.random.default_rng(1))
    drawn = pipeline.plan(maps, pipeline.View(scale="log", sink="renormalised"))
    figure = image.figure(drawn, "viridis")
    labels = " ".join(ax.get_ylabel() for ax in figure.axes)
    assert "log scale" in labels and "renormalised" in labels
    ticks = [t.get_text() for ax in figure.axes for t in ax.get_yticklabels()]
    assert any("e-" in tick for tick in ticks)  # the decades, written as weights
    maps.save(tmp_path / "m.npz")
    result = runner.invoke(app, ["show", str(tmp_path / "m.npz"), "--scale", "log", "--sink",
                                 "unscaled"])
    assert result.exit_code == 0, result.stderr
    assert "log scale" in result.stdout and "left out of the scale" in result.stdout
    page = runner.invoke(app, ["show", str(tmp_path / "m.npz"), "--scale", "log", "-o",
                               str(tmp_path / "m.html")])
    assert page.exit_code == 0, page.stderr
    assert '"log"' in (tmp_path / "m.html").read_text()


def test_an_unknown_sink_is_refused_in_the_librarys_words():
    import pytest

    from attnviz.errors import AttnvizError

    with pytest.raises(AttnvizError, match="^sink 'x' is not a way"):
        plan(sink_maps(np.random.default_rng(2)), sink="x")
