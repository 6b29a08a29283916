"""attnviz explain: one head's queries, keys, values, scores, mask and weights, and that
they are the model's own."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import attnviz
from attnviz.cli.app import app
from attnviz.maps.explanation import ARRAYS
from attnviz.model import attention
from attnviz.model.tokenize import BOS_ID, PAD_ID
from attnviz.model.transformer import Transformer
from tests.conftest import SOURCE, TARGET, tiny_config, tiny_model

runner = CliRunner()

KINDS = ("encoder_self", "decoder_self", "cross")


def _batch(config, s=6, t=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    source = torch.randint(4, config.source_vocab_size, (2, s), generator=gen)
    target = torch.randint(4, config.target_vocab_size, (2, t), generator=gen)
    target[:, 0] = BOS_ID
    return source, target


@pytest.mark.parametrize("padded", [False, True])
def test_a_layers_recorded_inputs_give_its_weights_through_the_one_function(padded):
    """The intermediates are what the attention function took: given them again, it gives
    the very weights of the forward pass."""
    model = tiny_model()
    source, target = _batch(model.config)
    if padded:  # a batch where one sentence is shorter: padding is masked as a key
        source[1, -2:] = PAD_ID
        target[1, -1:] = PAD_ID
    with torch.inference_mode():
        recorded = model(source, target).attention
        for kind in KINDS:
            for layer in recorded.layers(kind):
                _, weights = attention.scaled_dot_product_attention(
                    layer.queries, layer.keys, layer.values, layer.mask)
                assert torch.equal(weights, layer.weights), kind


@pytest.mark.parametrize("kind", KINDS)
def test_the_scores_of_the_recorded_queries_and_keys_under_softmax_give_the_weights(kind):
    model = tiny_model(seed=3)
    source, target = _batch(model.config, s=7, t=4)
    with torch.inference_mode():
        layer = model(source, target).attention.layers(kind)[1]
        scores = attention.attention_scores(layer.queries, layer.keys)  # (B, H, Q, K)
    masked = scores.masked_fill(~layer.visible(), float("-inf"))
    torch.testing.assert_close(torch.softmax(masked, dim=-1), layer.weights, atol=1e-6, rtol=0)
    # And by hand, without torch's softmax.
    exp = np.exp(masked.double().numpy() - masked.double().numpy().max(-1, keepdims=True))
    np.testing.assert_allclose(exp / exp.sum(-1, keepdims=True), layer.weights.numpy(),
                               atol=1e-6)


def test_the_recorded_mask_is_the_causal_triangle_for_self_attention_only():
    model = tiny_model()
    source, target = _batch(model.config, s=6, t=5)
    with torch.inference_mode():
        recorded = model(source, target).attention
    masks = {kind: recorded.layers(kind)[0].visible() for kind in KINDS}
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    assert torch.equal(masks["decoder_self"], causal.expand(2, 2, 5, 5))
    assert bool(masks["encoder_self"].all()) and masks["encoder_self"].shape == (2, 2, 6, 6)
    assert bool(masks["cross"].all()) and masks["cross"].shape == (2, 2, 5, 6)


def test_the_recorded_shapes_follow_d_model_over_heads():
    model = Transformer(tiny_config(d_model=24, n_heads=3)).eval()
    source, target = _batch(model.config, s=6, t=5)
    with torch.inference_mode():
        cross = model(source, target).attention.cross[2]
    d_k = 24 // 3
    assert cross.queries.shape == (2, 3, 5, d_k)
    assert cross.keys.shape == cross.values.shape == (2, 3, 6, d_k)
    assert cross.weights.shape == cross.visible().shape == (2, 3, 5, 6)


def test_the_intermediates_refuse_a_kind_that_is_not_one():
    model = tiny_model()
    with torch.inference_mode():
        recorded = model(*_batch(model.config)).attention
    with pytest.raises(ValueError, match="kind"):
        recorded.layers("decoder")
    assert len(recorded.layers("encoder_self")) == model.config.n_encoder_layers


# The explain view, from the library and the command line.


TRANSLATION = "le chat noir voit la voiture rouge"  # what the translate model writes for SOURCE
API_KINDS = {"encoder": "encoder_self", "self": "decoder_self", "cross": "cross"}


@pytest.mark.parametrize("kind", API_KINDS)
@pytest.mark.parametrize("layer", [0, 1])
def test_explained_weights_are_the_maps_of_the_same_text(kind, layer):
    maps = attnviz.trace(SOURCE, cache=False)
    explained = attnviz.explain(SOURCE, kind=kind, layer=layer, head=2)
    assert maps.provenance.target_text == TRANSLATION
    if kind != "encoder":  # the decoder read what the model wrote, as decode does
        assert explained.provenance.target_text == TRANSLATION
        assert explained.provenance.target_generated
    # Computed by the same function on the same inputs: equal, not merely close.
    assert np.array_equal(explained.weights, maps.stack(API_KINDS[kind])[layer, 2])
    queries = maps.source_tokens if kind == "encoder" else maps.target_tokens
    keys = maps.target_tokens if kind == "self" else maps.source_tokens
    assert explained.query_tokens == queries and explained.key_tokens == keys


def test_explained_weights_follow_a_given_target_and_the_random_model():
    maps = attnviz.trace(SOURCE, TARGET, model="random", seed=4, cache=False)
    explained = attnviz.explain(SOURCE, TARGET, model="random", seed=4, kind="cross",
                                layer=1, head=0)
    assert not explained.provenance.target_generated
    assert np.array_equal(explained.weights, maps.cross[1, 0])


def test_the_weights_come_from_the_one_attention_function_in_one_forward_pass(monkeypatch):
    returned = []
    original = attention.scaled_dot_product_attention

    def watching(q, k, v, mask=None):
        output, weights = original(q, k, v, mask)
        returned.append(weights)
        return output, weights

    monkeypatch.setattr(attention, "scaled_dot_product_attention", watching)
    explained = attnviz.explain(SOURCE, TARGET, kind="self", layer=1, head=3)
    # One forward pass and no twin of it: a call for each attention layer (2 encoder layers,
    # then self and cross for each of 2 decoder layers), once.
    assert len(returned) == 2 + 2 * 2
    # The call of decoder layer 1's self-attention gave the weights explain shows.
    assert np.array_equal(explained.weights, returned[2 + 2 * 1][0, 3].numpy())


@pytest.mark.parametrize("kind", API_KINDS)
def test_the_mask_is_the_causal_triangle_for_masked_self_attention_only(kind):
    explained = attnviz.explain(SOURCE, kind=kind, layer=0, head=0)
    rows, cols = explained.mask.shape
    if kind == "self":
        assert np.array_equal(explained.mask, np.tri(rows, dtype=bool))
        assert (explained.weights[~explained.mask] == 0.0).all()
    else:
        assert explained.mask.all()
    assert explained.masked == (kind == "self")


@pytest.mark.parametrize("kind", API_KINDS)
def test_softmax_of_the_scores_gives_the_weights(kind):
    explained = attnviz.explain(SOURCE, kind=kind, layer=1, head=1)
    scores = np.where(explained.mask, explained.scores.astype(np.float64), -np.inf)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(exp / exp.sum(axis=-1, keepdims=True), explained.weights,
                               atol=1e-6, rtol=0)
    # And the scores are Q Kᵀ / √d_k of the queries and keys shown.
    np.testing.assert_allclose(explained.queries @ explained.keys.T / np.sqrt(explained.d_k),
                               explained.scores, atol=1e-5, rtol=1e-5)


def test_the_shapes_shown_follow_d_k_as_d_model_over_heads():
    explained = attnviz.explain(SOURCE, kind="cross", layer=1, head=0)
    t, s = len(explained.query_tokens), len(explained.key_tokens)
    assert (explained.d_model, explained.heads, explained.d_k) == (64, 4, 16)
    assert explained.queries.shape == (t, 16)
    assert explained.keys.shape == explained.values.shape == (s, 16)
    assert explained.shapes == {"queries": f"[T={t} × d_k=16]", "keys": f"[S={s} × d_k=16]",
                                "values": f"[S={s} × d_k=16]", "scores": f"[T={t} × S={s}]"}
    assert "encoder's final output" in explained.origins["keys"]
    assert "masked self-attention" in explained.origins["queries"]


def test_explain_in_the_terminal_shows_the_shapes_and_the_weights():
    result = runner.invoke(app, ["explain", SOURCE, "--kind", "self", "--layer", "1",
                                 "--head", "2"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.splitlines()[0] == TRANSLATION  # the text the model wrote, first
    assert "Masked decoder self-attention · layer 1 · head 2" in out
    assert "d_k = d_model / heads = 64 / 4 = 16" in out
    assert "Q = LN(x) W_Q  [T=8 × d_k=16]" in out
    explained = attnviz.explain(SOURCE, kind="self", layer=1, head=2)
    table = out.split("= the weights")[1].splitlines()[2:]  # below the title and the header
    for row, line in enumerate(table[:len(explained.query_tokens)]):
        numbers = [float(x) for x in re.findall(r"\d\.\d\d", line)]
        assert numbers == pytest.approx(explained.weights[row, :row + 1], abs=0.006)
        assert line.count("·") == len(explained.key_tokens) - row - 1  # the masked future
    assert "+ M, the mask" in out and "-∞" in out


def test_explain_without_a_mask_says_so_in_one_line():
    result = runner.invoke(app, ["explain", SOURCE, "--kind", "cross"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "+ M, the mask: 0 everywhere" in result.stdout and "-∞" not in result.stdout


def test_explain_writes_pictures_that_read_back(tmp_path):
    png, svg = tmp_path / "ex.png", tmp_path / "ex.svg"
    result = runner.invoke(app, ["explain", SOURCE, "--kind", "self", "-o", str(png),
                                 "-o", str(svg)])
    assert result.exit_code == 0, result.output
    with Image.open(png) as picture:
        assert picture.format == "PNG" and picture.size[0] > 1500
        pixels = np.asarray(picture.convert("RGB"))
    # The mask's grey -∞ cells and the weights' hatched future are both drawn.
    assert (np.abs(pixels.astype(int) - [0xbd, 0xbd, 0xbd]).sum(axis=-1) == 0).sum() > 1000
    text = svg.read_text(encoding="utf-8")
    for phrase in ("Q Kᵀ / √d_k", "+ M, the mask", "softmax, row by row",
                   "d_k = d_model / heads = 64 / 4 = 16", "decoder_self[1, 0]"):
        assert phrase in text, phrase


def test_explain_npz_holds_the_six_arrays_and_the_tokens(tmp_path):
    path = tmp_path / "ex.npz"
    result = runner.invoke(app, ["explain", SOURCE, "--kind", "cross", "--layer", "0",
                                 "--head", "1", "-o", str(path)])
    assert result.exit_code == 0, result.output
    explained = attnviz.explain(SOURCE, kind="cross", layer=0, head=1)
    with np.load(path) as saved:
        assert set(ARRAYS) <= set(saved.files)
        for name in ARRAYS:
            assert np.array_equal(saved[name], getattr(explained, name)), name
        assert saved["mask"].dtype == bool
        assert saved["query_tokens"].tolist() == explained.query_tokens
        assert saved["key_tokens"].tolist() == explained.key_tokens
        about = json.loads(str(saved["explained"]))
    assert (about["kind"], about["layer"], about["head"], about["d_k"]) == ("cross", 0, 1, 16)
    assert np.array_equal(explained.weights, attnviz.trace(SOURCE).cross[0, 1])


def test_explain_json_holds_the_same_keys(tmp_path):
    path = tmp_path / "ex.json"
    assert runner.invoke(app, ["explain", SOURCE, "-o", str(path)]).exit_code == 0
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(ARRAYS) | {"query_tokens", "key_tokens", "explained"} == set(data)
    assert data["mask"][0][:2] == [True, False]


@pytest.mark.parametrize("args, fragments", [
    (["-m", "saved.npz"], ["explain works with models", "saved maps"]),
    (["--head", "4"], ["--head 4 is out of range", "heads 0 to 3"]),
    (["--kind", "encoder", "--layer", "2"], ["--layer 2 is out of range", "layers 0 to 1"]),
    (["-o", "{tmp}/x.png", "-o", "{tmp}/x.gif"],
     ["cannot write", "x.gif", "explain draws one picture", "writes a page (.html)",
      "the .gif animation is of decoding"]),
    (["--layer", "99"], ["--layer 99 is out of range", "layers 0 to 1"]),
    (["--head", "-1"], ["--head -1 is out of range"]),
    (["-t", " "], ["--target is empty"]),
])
def test_explain_mistakes_give_one_line_and_write_nothing(tmp_path, args, fragments):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = runner.invoke(app, ["explain", SOURCE, *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["x", "x.bmp"])
def test_explain_names_only_the_formats_it_writes(tmp_path, name):
    """Its error listed .gif too, which explain refuses."""
    result = runner.invoke(app, ["explain", SOURCE, "-o", str(tmp_path / name)])
    assert result.exit_code == 1
    assert result.stderr.endswith("; use one of .png, .svg, .pdf, .npz, .json, .html\n"), \
        result.stderr
    assert result.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_explain_takes_one_head_not_the_mean():
    result = runner.invoke(app, ["explain", SOURCE, "--head", "mean"])
    assert result.exit_code == 2


def test_explain_works_with_a_model_file(model_file):
    explained = attnviz.explain(SOURCE, TARGET, model=str(model_file), kind="self", layer=2,
                                head=1)
    maps = attnviz.trace(SOURCE, TARGET, model=str(model_file), cache=False)
    assert explained.d_k == 8
    assert np.array_equal(explained.weights, maps.decoder_self[2, 1])


def test_explain_writes_a_page_of_its_head(tmp_path):
    from tests.test_page import page_data

    view, numbers = tmp_path / "ex.html", tmp_path / "ex.npz"
    result = runner.invoke(app, ["explain", SOURCE, "--kind", "cross", "--layer", "0",
                                 "--head", "1", "-o", str(view), "-o", str(numbers)])
    assert result.exit_code == 0, result.stderr
    assert f"wrote {view}" in result.stderr
    data = page_data(view.read_bytes())
    (kind,) = data["kinds"]
    assert (kind["name"], kind["layerNames"], kind["headNames"]) == ("cross", [0], [1])
    saved = np.load(numbers)
    scores = np.frombuffer(base64.b64decode(kind["scores"]), dtype="<f4")
    assert np.array_equal(scores.reshape(saved["scores"].shape), saved["scores"])


def test_scores_that_round_to_zero_are_written_0_0_not_minus_0_0():
    """The explain scores panel showed -0.0."""
    import io
    from dataclasses import replace

    from rich.console import Console

    from attnviz.io.text import rounded
    from attnviz.render import explain_image, explain_terminal

    assert [rounded(v, 1) for v in (-0.04, -0.0, 0.04, -0.06, -10.0)] == [
        "0.0", "0.0", "0.0", "-0.1", "-10.0"]
    explained = attnviz.explain(SOURCE, kind="cross", layer=1, head=0)
    near_zero = np.full(explained.scores.shape, -0.01, np.float32)
    near_zero[:, 0] = 1.0
    explained = replace(explained, scores=near_zero)
    console = Console(width=200, color_system=None, file=io.StringIO(), record=True)
    console.print(explain_terminal.render(explained, "viridis", 200, False))
    text = console.export_text()
    assert " 0.0 " in text and "-0.0" not in text
    svg = explain_image.to_bytes(explained, "svg", "viridis").decode()
    assert ">0.0<" in svg and "-0.0" not in svg and "−0.0" not in svg
