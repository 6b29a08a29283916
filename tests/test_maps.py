"""The AttentionMaps container and the 2-D views selected from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnviz.errors import AttnvizError
from attnviz.io.text import display_label
from attnviz.maps import views
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.maps.explanation import Explanation


def make_maps(s=3, t=4, layers=2, heads=3, seed=0) -> AttentionMaps:
    rng = np.random.default_rng(seed)

    def rows(*shape, causal=False):
        weights = rng.random(shape).astype(np.float32)
        if causal:
            weights = weights * np.tril(np.ones(shape[-2:], dtype=np.float32))
        return weights / weights.sum(-1, keepdims=True)

    return AttentionMaps(
        source_tokens=[f"s{i}" for i in range(s)],
        target_tokens=["<bos>", *[f"t{i}" for i in range(t - 1)]],
        encoder_self=rows(layers, heads, s, s),
        decoder_self=rows(layers, heads, t, t, causal=True),
        cross=rows(layers, heads, t, s),
    )


def small_explanation(query_tokens=("<bos>", "le", "chat"), key_tokens=("the", "cat", "<eos>"),
                      kind="cross") -> Explanation:
    """One head of attention made by hand (no model), layer 1, head 0 of 2: d_k = 8 / 2 = 4."""
    rng = np.random.default_rng(0)
    q, k = len(query_tokens), len(key_tokens)
    queries = rng.normal(size=(q, 4)).astype(np.float32)
    keys, values = (rng.normal(size=(k, 4)).astype(np.float32) for _ in range(2))
    scores = queries @ keys.T / 2.0  # (Q, K): Q Kᵀ / √d_k
    weights = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    return Explanation(kind, 1, 0, 2, 8, queries, keys, values, scores,
                       np.ones((q, k), dtype=bool), weights.astype(np.float32),
                       list(query_tokens), list(key_tokens),
                       Provenance(model="by hand", source_text=" ".join(key_tokens)))


def test_select_one_head_and_the_mean_over_heads():
    maps = make_maps()
    one = views.heatmap(maps, "cross", 1, 2)
    assert np.array_equal(one.weights, maps.cross[1, 2])
    assert one.query_tokens == maps.target_tokens and one.key_tokens == maps.source_tokens
    mean = views.heatmap(maps, "encoder_self", 0, None)
    np.testing.assert_allclose(mean.weights, maps.encoder_self[0].mean(0))
    assert mean.title == "Encoder self-attention · layer 0 · mean of 3 heads"
    assert one.title == "Cross-attention · layer 1 · head 2"


def test_decoder_self_marks_the_future_as_not_visible():
    heatmap = views.heatmap(make_maps(t=4), "decoder_self", 0, None)
    assert heatmap.visible.tolist() == np.tril(np.ones((4, 4), dtype=bool)).tolist()
    assert views.heatmap(make_maps(), "cross", 0, 0).visible.all()


@pytest.mark.parametrize("layer, head, message", [
    (2, 0, "^layer 2 is out of range: .* layers 0 to 1"),
    (-1, 0, "^layer -1 is out of range"),
    (0, 3, "^head 3 is out of range: these maps have heads 0 to 2, or the mean of all"),
])
def test_out_of_range_layer_or_head_names_the_valid_range(layer, head, message):
    with pytest.raises(AttnvizError, match=message):
        views.heatmap(make_maps(), "cross", layer, head)


def test_shapes_are_checked():
    maps = make_maps()
    with pytest.raises(ValueError, match="cross must have shape"):
        AttentionMaps(maps.source_tokens, maps.target_tokens, maps.encoder_self,
                      maps.decoder_self, maps.cross[..., :2])


def test_round_trip_through_a_dict_keeps_empty_decoder_maps():
    maps = make_maps()
    empty = AttentionMaps(maps.source_tokens, [], maps.encoder_self,
                          np.zeros((2, 3, 0, 0), np.float32), np.zeros((2, 3, 0, 3), np.float32))
    back = AttentionMaps.from_fields(json.loads(json.dumps(empty.to_json())))
    assert back.decoder_self.shape == (2, 3, 0, 0) and back.cross.shape == (2, 3, 0, 3)


def test_labels_show_whitespace():
    assert display_label(" ") == "␣"
    assert views.heatmap(make_maps(), "cross", 0, 0).key_labels == ["s0", "s1", "s2"]
