"""The HTML page, read back without a browser: its data, its escaping, its independence from the
network. tests/test_page_browser.py opens it in Chromium."""

from __future__ import annotations

import base64
import json
import re
import zlib
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

import attnviz
from attnviz.cli.app import app
from attnviz.errors import AttnvizError
from attnviz.io.text import display_label, printable
from attnviz.maps import views
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.render import layout, page
from attnviz.render.colors import lookup_table
from tests.conftest import SOURCE
from tests.test_maps import make_maps, small_explanation

runner = CliRunner()
HOSTILE = ["</script><script>alert(1)</script>", '" onmouseover="alert(2)', "<!--", "&amp;",
           "\x1b[31mred", "a\u2028b", "\x00", "<img src=x onerror=alert(3)>", "]]>", "\ud800"]


class Parts(HTMLParser):
    """The elements of a page that matter here: scripts (with their text) and attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict, str]] = []
        self.attributes: list[tuple[str, str, str | None]] = []
        self._script: dict | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.attributes += [(tag, name, value) for name, value in attrs]
        if tag == "script":
            self._script = dict(attrs)

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self.scripts.append((self._script, data))
        else:
            self.text.append(data)


def parse(html: bytes) -> Parts:
    parts = Parts()
    parts.feed(html.decode("utf-8"))
    return parts


def page_data(html: bytes) -> dict:
    """The JSON the page's script reads."""
    scripts = [text for attrs, text in parse(html).scripts if attrs.get("class") == "av-data"]
    assert len(scripts) == 1
    return json.loads(scripts[0])


def weights_of(kind: dict) -> np.ndarray:
    """A kind's weights as the page decodes them. Shape: ``[L, H, Q, K]``."""
    shape = (kind["layers"], kind["heads"], kind["queries"], kind["keys"])
    levels = np.frombuffer(zlib.decompress(base64.b64decode(kind["levels"])), dtype=np.uint8)
    row_max = np.frombuffer(base64.b64decode(kind["rowMax"]), dtype="<f4")
    return levels.reshape(shape) * (row_max.reshape(shape[:3])[..., None] / page.STEPS)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=4, max_dims=4, max_side=6),
                  elements=st.floats(0, 1, width=32)))
@example(np.array([[[[1.0, 0.9]]]], dtype=np.float32))  # 0.9 * 255 is 229.5 in float32
def test_quantised_weights_come_back_within_the_stated_rounding(weights):
    levels, row_max = page.quantise(weights)
    assert levels.dtype == np.uint8 and row_max.shape == weights.shape[:3]
    back = levels * (row_max[..., None].astype(np.float64) / page.STEPS)
    bound = row_max[..., None] / (2 * page.STEPS) * (1 + 1e-5) + 1e-12
    assert (np.abs(back - weights) <= bound).all()
    assert (back[weights == 0] == 0).all()  # a zero (a masked key) stays exactly zero
    assert (bound <= 1 / 510 + 1e-6).all()  # the ±0.002 the page states


def test_the_page_holds_every_kind_layer_and_head_within_the_rounding():
    maps = make_maps(s=5, t=6, layers=2, heads=3)
    data = page_data(page.to_bytes(maps))
    assert [kind["name"] for kind in data["kinds"]] == list(maps.kinds)
    assert [kind["cli"] for kind in data["kinds"]] == ["encoder", "self", "cross"]
    for kind in data["kinds"]:
        exact = maps.stack(kind["name"])
        assert np.abs(weights_of(kind) - exact).max() <= 1 / 510 + 1e-6
    labels = {kind["name"]: (kind["queryLabels"], kind["keyLabels"]) for kind in data["kinds"]}
    assert labels["encoder_self"] == (maps.source_tokens, maps.source_tokens)
    assert labels["cross"][1] == maps.source_tokens
    assert labels["cross"][0] == labels["decoder_self"][0] == [
        "<bos> → t0", "t0 → t1", "t1 → t2", "t2 → t3", "t3 → t4", "t4 → <?>"]  # <?>: not said
    masked = {kind["name"]: kind["masked"] for kind in data["kinds"]}
    assert masked == {"encoder_self": [False, False], "decoder_self": [True, True],
                      "cross": [False, False]}
    assert data["colors"] == lookup_table("viridis").tobytes().hex()
    assert data["scales"] == list(views.SCALES)  # the scale menu, as the images name them
    assert data["initial"] == {"kind": "encoder_self", "layer": 1, "head": "mean",
                               "scale": "panel"}


@pytest.mark.parametrize("generated", [False, True])
def test_the_page_labels_rows_columns_and_axes_as_the_images_do(generated):
    maps = make_maps(s=3, t=3)
    long = "a" * 30
    facts = Provenance(next_token="<eos>", target_generated=generated,
                       source_written={1: "Zebra"}, target_written={2: "zèbre"})
    maps = AttentionMaps(["the", "<unk>", long], ["<bos>", "le", "<unk>"], maps.encoder_self,
                         maps.decoder_self, maps.cross, facts)
    kinds = {kind["name"]: kind for kind in page_data(page.to_bytes(maps))["kinds"]}
    cross = kinds["cross"]
    # The written forms, not <unk>; the last row's next token from the provenance.
    assert cross["queryLabels"] == ["<bos> → le", "le → zèbre?", "zèbre? → <eos>"]
    assert cross["keyLabels"] == ["the", "Zebra?", long]
    assert cross["queryAxis"] == ("query: decoder input token → " + (
        "the token it predicts" if generated else "the next target token"))
    assert cross["keyAxis"] == "key: source token (encoder output)"
    assert cross["keyDrawn"] == ["the", "Zebra?", "a" * 23 + "…"]  # cut as the images cut
    for name, kind in kinds.items():
        shown = views.heatmap(maps, name)
        assert kind["queryLabels"] == shown.query_labels
        assert kind["keyLabels"] == shown.key_labels
        assert kind["queryAxis"] == shown.query_axis
    # Drawn as the images draw them: each side of a long row keeps its share.
    wide = AttentionMaps(["s"], ["<bos>", long], cross=np.full((1, 1, 2, 1), 1.0, np.float32))
    (kind,) = page_data(page.to_bytes(wide))["kinds"]
    expected = views.heatmap(wide, "cross").query_label(1, layout.LABEL_CHARS)
    assert kind["queryDrawn"][1] == expected and expected.endswith("→ <?>")


def test_the_shared_scale_is_one_maximum_for_every_layer_and_head_of_a_kind_means_included():
    maps = make_maps(s=5, t=6, layers=2, heads=3)
    html = page.to_bytes(maps)
    for kind in page_data(html)["kinds"]:
        name = kind["name"]
        panels = [views.heatmap(maps, name, layer, head) for layer in range(2)
                  for head in (0, 1, 2, None)]  # None: the mean over heads
        assert kind["sharedMax"] == pytest.approx(max(p.weights[p.visible].max()
                                                      for p in panels))
        means = [p for p in panels if p.head is None]
        assert all(kind["sharedMax"] >= p.weights.max() for p in means)
    # The page says exactly what it is, and what an image's is.
    footer = " ".join(" ".join(parse(html).text).split())
    assert ("shared one maximum for every layer and head of the kind shown, the means over "
            "heads included (in an image, one for every panel of its figure)") in footer


@pytest.mark.parametrize("heads, name", [(1, "the only head"), (3, "mean of 3 heads")])
def test_the_mean_over_heads_is_named_as_the_images_name_it(heads, name):
    maps = make_maps(heads=heads)
    for kind in page_data(page.to_bytes(maps))["kinds"]:
        assert kind["meanName"] == name
        assert views.heatmap(maps, kind["name"], 0).title.endswith(f" · {name}")


def test_a_saved_map_with_weight_on_the_future_is_not_drawn_masked():
    maps = make_maps(t=4)
    full = np.full_like(maps.decoder_self, 0.25)  # every key seen: not masked attention
    unmasked = AttentionMaps(maps.source_tokens, maps.target_tokens, decoder_self=full)
    assert page_data(page.to_bytes(unmasked))["kinds"][0]["masked"] == [False, False]


def test_the_page_opens_on_the_view_asked_for_and_uses_the_colour_map():
    maps = make_maps()
    data = page_data(page.to_bytes(maps, "magma", kind="cross", layer=0, head=2, scale="row"))
    assert data["initial"] == {"kind": "cross", "layer": 0, "head": 2, "scale": "row"}
    assert data["colors"] == lookup_table("magma").tobytes().hex()
    with pytest.raises(AttnvizError, match="^head 3 is out of range"):
        page.to_bytes(maps, head=3)
    with pytest.raises(AttnvizError, match="^scale 'global' is not a scale: use one of panel, "
                                           "shared, unit, row, log$") as raised:
        page.to_bytes(maps, scale="global")
    assert raised.value.setting == "scale"


def test_texts_model_and_version_are_written_on_the_page():
    maps = make_maps()
    facts = Provenance(attnviz_version="9.8.7", model="translate", model_sha256="ab" * 32,
                       source_text="the cat", target_text="le chat", target_generated=True)
    html = page.to_bytes(AttentionMaps(maps.source_tokens, maps.target_tokens,
                                       provenance=facts, cross=maps.cross))
    text = " ".join(" ".join(parse(html).text).split())
    for fact in ("source the cat", "target le chat (written by the model)",
                 "model translate (sha256 abababababab…)", "attnviz 9.8.7", "colours viridis",
                 "±0.002"):
        assert fact in text


def hostile_maps(tokens: list[str]) -> AttentionMaps:
    n = len(tokens)
    weights = np.full((1, 2, n, n), 1 / n, dtype=np.float32)
    text = " ".join(tokens)
    return AttentionMaps(tokens, [], encoder_self=weights,
                         provenance=Provenance(model=text, source_text=text,
                                               attnviz_version=text))


def check_stays_text(tokens: list[str]) -> None:
    html = page.to_bytes(hostile_maps(tokens))
    text = html.decode("utf-8")  # valid UTF-8, even from lone surrogates
    # The template's two scripts, and no other element a token could have opened.
    assert text.count("<script") == 2 and text.lower().count("</script") == 2
    assert "<!--" not in text and "<img" not in text
    parts = parse(html)
    assert [attrs.get("class") for attrs, _ in parts.scripts] == ["av-data", None]
    (kind,) = page_data(html)["kinds"]
    assert kind["queryLabels"] == kind["keyLabels"] == [display_label(t) for t in tokens]
    shown = " ".join(tokens)
    assert printable(shown) in "".join(parts.text)  # the facts, as text, control chars escaped
    assert not any(ch in text for ch in "\x00\x1b\u2028")


def test_tokens_with_markup_quotes_and_control_characters_stay_text():
    check_stays_text(HOSTILE)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5))
def test_any_token_stays_text(tokens):
    check_stays_text(tokens)


def test_the_page_names_no_address_to_fetch():
    html = page.to_bytes(make_maps()).decode("utf-8")
    assert not re.search(r"(?i)\b(https?|ftp|wss?):", html)
    assert not re.search(r"(?i)<(link|img|iframe|object|embed|base)\b", html)
    assert not re.search(r"(?i)\b(src|href|srcset|action)\s*=", html)
    assert "url(" not in html and "@import" not in html
    # And the browser is told to fetch nothing at all, whatever a script might try.
    assert "content=\"default-src 'none';" in html


def test_maps_too_large_for_a_page_are_refused(monkeypatch):
    monkeypatch.setattr(page, "MAX_WEIGHTS", 100)
    with pytest.raises(AttnvizError, match=r"hold 222 weights, too many for a page.*\.npz"):
        page.to_bytes(make_maps(s=3, t=4, layers=2, heads=3))


def test_encode_decode_and_show_write_a_page(tmp_path):
    decoded, numbers = tmp_path / "view.html", tmp_path / "maps.npz"
    result = runner.invoke(app, ["decode", SOURCE, "-m", "random", "-o", str(decoded),
                                 "-o", str(numbers)])
    assert result.exit_code == 0, result.stderr
    assert f"wrote {decoded}" in result.stderr
    maps = AttentionMaps.load(numbers)
    data = page_data(decoded.read_bytes())
    assert [kind["name"] for kind in data["kinds"]] == list(maps.kinds)
    assert np.abs(weights_of(data["kinds"][2]) - maps.cross).max() <= 1 / 510 + 1e-6

    encoded = tmp_path / "enc.html"
    result = runner.invoke(app, ["encode", SOURCE, "-m", "random", "-o", str(encoded)])
    assert result.exit_code == 0, result.stderr
    assert [kind["name"] for kind in page_data(encoded.read_bytes())["kinds"]] == \
        ["encoder_self"]

    shown = tmp_path / "shown.html"
    result = runner.invoke(app, ["show", str(numbers), "--kind", "cross", "--layer", "0",
                                 "--head", "1", "-o", str(shown)])
    assert result.exit_code == 0, result.stderr
    data = page_data(shown.read_bytes())
    assert data["initial"] == {"kind": "cross", "layer": 0, "head": 1, "scale": "panel"}
    assert len(data["kinds"]) == 3  # the page holds every kind, whichever it opens on


def test_the_api_gives_the_page_as_text():
    maps = make_maps()
    html = attnviz.page(maps, kind="self", layer=0, head=1)
    assert html.startswith("<!DOCTYPE html>")
    assert page_data(html.encode())["initial"]["kind"] == "decoder_self"
    with pytest.raises(AttnvizError, match="kind 'both' is not a kind of attention"):
        attnviz.page(maps, kind="both")
    with pytest.raises(AttnvizError, match="unknown colour map"):
        attnviz.page(maps, cmap="nope")


# --- The view alone, to embed in another page (a notebook's output, a blog post) ----------


def _ids(html: str) -> list[str]:
    return [value for _, name, value in parse(html.encode()).attributes if name == "id"]


def test_an_embedded_view_is_one_element_with_an_id_of_its_own():
    maps = make_maps()
    fragment = attnviz.page(maps, embed=True)
    (own,) = _ids(fragment)  # no other element has an id another view could share
    assert re.fullmatch(r"attnviz-[0-9a-f]{16}", own)
    assert fragment.startswith(f'<div class="attnviz-view" id="{own}">\n')
    assert fragment.endswith("</div>\n")
    for tag in ("!doctype", "html", "head", "body", "meta", "title", "link", "main"):
        assert not re.search(rf"<{tag}[\s>]", fragment, flags=re.I), tag
    assert f'document.getElementById("{own}")' in fragment  # its script finds its own element
    again = attnviz.page(maps, embed=True)
    (other,) = _ids(again)
    assert other != own and again.replace(other, own) == fragment
    # A file is the same view in a document, under an id made from its content: the same
    # maps give the same bytes.
    document = page.to_bytes(maps)
    assert document == page.to_bytes(maps)
    (stable,) = _ids(document.decode())
    inside = document.decode().split("<body>\n", 1)[1].rsplit("\n</body>", 1)[0]
    assert inside.replace(stable, own) == fragment
    assert page_data(document) == page_data(fragment.encode())
    assert page.to_bytes(make_maps(seed=1)) != document and _ids(
        page.to_bytes(make_maps(seed=1)).decode()) != [stable]


def _rules(css: str) -> list[str]:
    """The selectors of a stylesheet's top-level rules and at-rules."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    selectors, depth, start = [], 0, 0
    for at, char in enumerate(css):
        if char == "{":
            if depth == 0:
                selectors.append(css[start:at].strip())
            depth += 1
        elif char == "}":
            depth -= 1
            start = at + 1 if depth == 0 else start
    return selectors


def test_every_style_rule_of_a_view_applies_inside_it_only():
    css = page._asset("page.css")
    rules = _rules(css)
    assert len(rules) > 20
    for selector in rules:
        if selector.startswith("@"):
            assert selector.startswith("@keyframes attnviz-"), selector
            continue
        for part in selector.split(","):
            assert part.strip().startswith(".attnviz-view"), selector
    # Its own classes are prefixed, so that a page's .tooltip or .hint does not restyle it.
    assert set(re.findall(r"\.([a-z][\w-]*)", re.sub(r"/\*.*?\*/", "", css, flags=re.S))) - {
        "attnviz-view"} <= {name for name in re.findall(r"\.([a-z][\w-]*)", css)
                            if name.startswith("av-")}
    # And its script sets no global and reads no element by a page-wide id.
    script = page._asset("page.js")
    assert not re.search(r"\bwindow\.\w+\s*=(?!=)", script)
    assert "getElementById" not in script and "document.querySelector" not in script


def test_an_explanation_page_holds_its_head_its_scores_and_its_steps():
    explained = small_explanation()
    html = page.explanation_bytes(explained)
    assert html.startswith(b"<!DOCTYPE html>") and html == page.explanation_bytes(explained)
    data = page_data(html)
    (kind,) = data["kinds"]
    assert (kind["name"], kind["layers"], kind["heads"]) == ("cross", 1, 1)
    assert kind["layerNames"] == [1] and kind["headNames"] == [0] and kind["mean"] is False
    assert np.abs(weights_of(kind)[0, 0] - explained.weights).max() <= 1 / 510 + 1e-6
    scores = np.frombuffer(base64.b64decode(kind["scores"]), dtype="<f4").reshape(3, 3)
    assert np.array_equal(scores, explained.scores)
    assert kind["queryLabels"] == ["<bos> → le", "le → chat", "chat → <?>"]
    assert data["initial"] == {"kind": "cross", "layer": 0, "head": 0, "scale": "panel"}
    text = " ".join(" ".join(parse(html).text).split())
    for fact in ("Cross-attention · layer 1 · head 0, step by step",
                 "formula weights = softmax(Q Kᵀ / √d_k + M)", "d_k d_model / heads = 8 / 2 = 4",
                 "queries [T=3 × d_k=4] the decoder", "weights the model's own: cross[1, 0]",
                 "model by hand", "Hover a cell for its score"):
        assert fact in text, fact
    fragment = attnviz.page(explained, embed=True)
    assert fragment.startswith('<div class="attnviz-view" id="attnviz-')
    assert page_data(fragment.encode()) == data


def test_an_explanation_takes_no_choice_of_kind_layer_head_or_scale():
    explained = small_explanation()
    with pytest.raises(AttnvizError, match=r"^page\(explanation\) opens on its head, on the "
                       r"panel scale, so it takes no kind: an explanation is one head of one "
                       r"layer \(explain another with attnviz.explain\(\.\.\., kind=\.\.\., "):
        attnviz.page(explained, kind="cross")
    with pytest.raises(AttnvizError, match=r"^plot\(explanation\) draws its steps, so it takes "
                                           r"no layer: "):
        attnviz.plot(explained, layer=1)
    with pytest.raises(AttnvizError, match="so it takes no scale: "):
        attnviz.page(explained, scale="row")
    with pytest.raises(AttnvizError, match="^embed must be True or False, not str$"):
        attnviz.page(make_maps(), embed="yes")
    with pytest.raises(AttnvizError, match="unknown colour map"):
        attnviz.page(explained, cmap="nope")


def test_an_explanations_tokens_stay_text():
    explained = small_explanation(HOSTILE[:4], HOSTILE[:4], kind="encoder_self")
    text = page.explanation_bytes(explained).decode("utf-8")
    assert text.count("<script") == 2 and "<img" not in text and "<!--" not in text
    (kind,) = page_data(text.encode())["kinds"]
    assert kind["queryLabels"] == [display_label(t) for t in HOSTILE[:4]]
