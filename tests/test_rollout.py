"""Attention rollout of the encoder: against a plain computation, in files and pictures."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from typer.testing import CliRunner

import attnviz
from attnviz.cli.app import app
from attnviz.maps import views
from attnviz.maps.data import AttentionMaps
from attnviz.maps.rollout import KEY, encoder_rollout, rollout_heatmaps
from attnviz.render import image
from tests.conftest import SOURCE

runner = CliRunner()


def reference_rollout(encoder_self: np.ndarray) -> np.ndarray:
    """Abnar and Zuidema's rollout, written out with loops: A_l = 0.5 W̄_l + 0.5 I, rows
    renormalised; R_0 = A_0, R_l = A_l R_(l-1)."""
    layers, heads, size, _ = encoder_self.shape
    result = np.zeros((layers, size, size))
    previous = None
    for layer in range(layers):
        mixed = np.zeros((size, size))
        for i in range(size):
            for j in range(size):
                mean = sum(float(encoder_self[layer, h, i, j]) for h in range(heads)) / heads
                mixed[i, j] = 0.5 * mean + (0.5 if i == j else 0.0)
            total = sum(mixed[i])
            for j in range(size):
                mixed[i, j] /= total
        if previous is None:
            current = mixed
        else:
            current = np.zeros((size, size))
            for i in range(size):
                for j in range(size):
                    current[i, j] = sum(mixed[i, k] * previous[k, j] for k in range(size))
        result[layer] = current
        previous = current
    return result


@st.composite
def attention_stacks(draw):
    layers, heads, size = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    logits = np.random.default_rng(seed).normal(size=(layers, heads, size, size)) * draw(
        st.sampled_from([0.1, 1.0, 10.0]))
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(attention_stacks())
def test_rollout_equals_the_plain_computation(stack):
    rolled = encoder_rollout(stack)
    assert rolled.shape == (stack.shape[0], stack.shape[2], stack.shape[2])
    np.testing.assert_allclose(rolled, reference_rollout(stack), atol=1e-6)
    np.testing.assert_allclose(rolled.sum(-1), 1.0, atol=1e-5)


def test_rollout_of_the_translate_model_equals_the_plain_computation():
    maps = attnviz.trace(SOURCE, part="encoder", cache=False)
    rolled = attnviz.rollout(maps)
    np.testing.assert_allclose(rolled, reference_rollout(maps.encoder_self), atol=1e-6)
    # Layer 0 is that layer's own mix; the last is the product of all.
    assert rolled.shape == (2, 8, 8)


def test_a_query_that_saw_no_key_keeps_its_own_identity():
    stack = np.zeros((1, 1, 2, 2), dtype=np.float32)
    stack[0, 0, 0] = [0.5, 0.5]  # row 1 is all zero: a padding query
    assert encoder_rollout(stack)[0].tolist() == [[0.75, 0.25], [0.0, 1.0]]


def test_rollout_needs_the_encoder():
    decoder_only = AttentionMaps([], ["a", "b"], decoder_self=np.ones((1, 1, 2, 2)) / 2)
    with pytest.raises(attnviz.AttnvizError, match="^Encoder self-attention is not in these maps"):
        attnviz.rollout(decoder_only)


def test_rollout_draws_every_layer_or_one():
    maps = attnviz.trace(SOURCE, part="encoder")
    every = rollout_heatmaps(maps)
    assert [heatmap.title for heatmap in every] == [
        "Encoder attention rollout · layer 0 · mean of 4 heads",
        "Encoder attention rollout · layers 0 to 1 · mean of 4 heads"]
    figure = image.figure(every, "viridis")
    assert len([ax for ax in figure.axes if ax.get_title()]) == 2
    one = rollout_heatmaps(maps, layer=1)
    assert len(one) == 1 and np.array_equal(one[0].weights, attnviz.rollout(maps)[1])


def test_a_model_of_one_head_is_named_as_the_maps_name_it():
    maps = attnviz.trace(SOURCE, part="encoder")
    one = AttentionMaps(maps.source_tokens, [], maps.encoder_self[:, :1])  # (L, 1, S, S)
    assert [heatmap.title for heatmap in rollout_heatmaps(one)][0] == \
        "Encoder attention rollout · layer 0 · the only head"


def test_encode_rollout_npz_holds_the_rollout_beside_the_maps(tmp_path):
    path = tmp_path / "r.npz"
    result = runner.invoke(app, ["encode", SOURCE, "--rollout", "-o", str(path)])
    assert result.exit_code == 0, result.output
    with np.load(path) as saved:
        rolled = saved[KEY]
        encoder_self = saved["encoder_self"]
    assert rolled.shape == (2, 8, 8)
    np.testing.assert_allclose(rolled, reference_rollout(encoder_self), atol=1e-6)
    back = AttentionMaps.load(path)  # a file with the rollout is still a maps file
    assert np.array_equal(back.encoder_self, encoder_self)
    plain = tmp_path / "plain.npz"
    assert runner.invoke(app, ["encode", SOURCE, "-o", str(plain)]).exit_code == 0
    with np.load(plain) as saved:
        assert KEY not in saved.files


def test_rollout_in_the_terminal_and_from_show(tmp_path):
    result = runner.invoke(app, ["encode", SOURCE, "--rollout"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Encoder attention rollout · layer 0 · mean of 4 heads" in result.stdout
    assert "Encoder attention rollout · layers 0 to 1 · mean of 4 heads" in result.stdout
    saved = tmp_path / "m.json"
    assert runner.invoke(app, ["decode", SOURCE, "-o", str(saved)]).exit_code == 0
    shown = runner.invoke(app, ["show", str(saved), "--rollout", "--layer", "1", "-o",
                                str(tmp_path / "r.png"), "-o", str(tmp_path / "r.json")])
    assert shown.exit_code == 0, shown.output
    import json

    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    np.testing.assert_allclose(data[KEY], reference_rollout(np.array(data["encoder_self"])),
                               atol=1e-6)
    decoded = runner.invoke(app, ["decode", SOURCE, "--kind", "encoder", "--rollout"],
                            env={"COLUMNS": "100"})
    assert decoded.exit_code == 0 and "rollout · layers 0 to 1" in decoded.stdout


@pytest.mark.parametrize("args, fragment", [
    (["decode", SOURCE, "--kind", "cross", "--rollout"],
     "attention rollout follows the encoder self-attention, not the cross-attention"),
    (["encode", SOURCE, "--rollout", "--head", "1"], "--head 1 cannot be rolled out alone"),
    (["encode", SOURCE, "--rollout", "--layer", "2"], "--layer 2 is out of range"),
])
def test_rollout_mistakes_give_one_line(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_rollout_help_says_what_it_means_and_what_it_does_not():
    shown = runner.invoke(app, ["encode", "--help"], env={"COLUMNS": "200"}).stdout
    help_text = " ".join(shown.translate(str.maketrans("│╭╮╰╯─", "      ")).split())
    for phrase in ("Abnar and Zuidema", "residual connection carries half",
                   "not an explanation of the prediction", "encoder_rollout"):
        assert phrase in help_text, phrase


def test_a_hand_computed_rollout_multiplies_the_later_layer_on_the_left():
    """Two layers, two heads, two tokens; A_l = 0.5 · mean over heads + 0.5 · I, each row
    renormalised, and R_1 = A_1 · A_0, which differs from A_0 · A_1."""
    stack = np.array([
        [[[1, 0], [1, 0]], [[1, 0], [0, 1]]],  # layer 0: mean [[1, 0], [.5, .5]]
        [[[0, 1], [0, 0]], [[1, 0], [0, 0]]],  # layer 1: mean [[.5, .5], [0, 0]] (row 1: no key)
    ], dtype=np.float32)  # (L=2, H=2, S=2, S=2)
    # A_0 = [[1, 0], [.25, .75]]; A_1 = [[.75, .25], [0, .5]] -> row 1 renormalised [0, 1].
    rolled = encoder_rollout(stack)
    np.testing.assert_allclose(rolled[0], [[1.0, 0.0], [0.25, 0.75]])
    # A_1 · A_0 = [[.75 + .25 · .25, .25 · .75], [.25, .75]]
    np.testing.assert_allclose(rolled[1], [[0.8125, 0.1875], [0.25, 0.75]])
    # The other order, A_0 · A_1, would be [[.75, .25], [.1875, .8125]]; without the
    # renormalisation row 1 would be [.125, .375].
    assert not np.allclose(rolled[1], [[0.75, 0.25], [0.1875, 0.8125]])


def test_a_windowed_rollout_says_its_positions():
    """Was: the rollout's axis titles dropped the positions other windowed panels give."""
    maps = attnviz.trace(SOURCE, part="encoder")
    plan = views.arrange(rollout_heatmaps(maps), window="2:5")
    for panel in plan.panels:
        assert panel.query_axis == "position (after the layer), positions 2 to 4"
        assert panel.key_axis == "input token whose identity reaches it, positions 2 to 4"
    keys = views.arrange(rollout_heatmaps(maps), window_key="3:").panels[0]
    assert keys.query_axis == "position (after the layer), positions 0 to 7"
    assert keys.key_axis == "input token whose identity reaches it, positions 3 to 7"
    whole = rollout_heatmaps(maps)[0]
    assert (whole.query_axis, whole.key_axis) == ("position (after the layer)",
                                                  "input token whose identity reaches it")


def test_the_kinds_asked_for_every_kind_or_the_encoder_once_or_twice():
    """Was: StopIteration for [] and for the encoder named twice, KeyError for a name that is
    not a kind."""
    maps = attnviz.trace(SOURCE, part="encoder")
    every = [panel.weights for panel in rollout_heatmaps(maps)]
    for kinds in ([], ["encoder_self", "encoder_self"], ("encoder_self",), "encoder_self"):
        got = [panel.weights for panel in rollout_heatmaps(maps, kinds=kinds)]
        assert len(got) == len(every) and all(map(np.array_equal, got, every)), kinds
    with pytest.raises(attnviz.AttnvizError) as raised:
        rollout_heatmaps(maps, kinds=["encoder_self", "decoder"])
    assert str(raised.value) == ("kind 'decoder' is not a kind of attention; use one of "
                                 "encoder, self, cross, encoder_self, decoder_self")
    assert raised.value.setting == "kind"
    with pytest.raises(attnviz.AttnvizError, match="not the cross-attention"):
        rollout_heatmaps(maps, kinds=["encoder_self", "cross"])


def test_a_page_with_the_rollout_says_it_holds_the_maps(tmp_path):
    """Was: -o x.html --rollout wrote the page of the maps without a word."""
    page = tmp_path / "x.html"
    result = runner.invoke(app, ["encode", SOURCE, "--rollout", "-o", str(page)])
    assert result.exit_code == 0, result.output
    assert page.exists()
    said = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert said == ["warning: the .html page holds the attention maps, not their rollout: "
                    "draw the rollout to .png .svg .pdf, or save it in .npz .json"]
    plain = runner.invoke(app, ["encode", SOURCE, "-o", str(tmp_path / "y.html")])
    assert plain.exit_code == 0 and "warning" not in plain.stderr
