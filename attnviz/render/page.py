"""AttentionMaps as an HTML view to explore (every kind, layer and head), on a page of its own
or embedded in another: a notebook's output, a blog post.

The view is one element that needs no network: its style, its script (plain JavaScript,
``page.js`` beside this module) and its data are inline. It is isolated, so that any number
of views share a page: its element has an id of its own (:func:`element_id`), its style rules are
scoped to it, and its script reads only what is inside it and sets no global. A file
(:func:`to_bytes`) is that view in a document whose Content-Security-Policy tells the browser
to fetch nothing at all. The heatmap is drawn on a ``<canvas>``, one pixel per cell scaled up,
never one element per cell (bertviz's page of 512 tokens is 244 MB).

An :class:`Explanation` gets the same view of its one head (:func:`explanation_view`), whose
tooltip also reads each cell's score, Q Kᵀ / √d_k before the mask.

The weights are embedded compactly: each weight as 8 bits of its row's largest weight
(:func:`quantise`), the bytes compressed with zlib and base64-encoded; the browser inflates
them with its own ``DecompressionStream``. A weight read back is within half a step,
``row max / 510`` (at most 0.002), of the computed one, and exactly 0 stays 0.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import zlib
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.io.text import printable, shorten
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.maps.explanation import Explanation
from attnviz.maps.kinds import SHORT_NAMES, TITLES, WEIGHT_TITLES
from attnviz.maps.views import SCALES, check_scale, head_name, heatmap
from attnviz.render.colors import DEFAULT_CMAP, LABEL_COLORS, NO_LABEL, lookup_table
from attnviz.render.layout import LABEL_CHARS

if TYPE_CHECKING:
    from attnviz.maps.atlas import Atlas

STEPS = 255  # a weight is stored as round(weight / row max * STEPS), one byte
ROUNDING = ("Weights are stored in 8 bits, as a share of their row's largest weight: a weight "
            "shown here is within ±(row max)/510 of the computed one, so within ±0.002, and a "
            "weight of 0 is exactly 0.")
# The most weights a page holds: about 85 MB of page when they do not compress, already more
# than a browser opens quickly. Past this, the numbers belong in an npz file.
MAX_WEIGHTS = 2**26
COMPRESSION = 1  # zlib's fastest level: the bytes are within 2% of level 9, four times faster
CLI_KINDS = {kind: short for short, kind in SHORT_NAMES.items()}  # as the menu names them
SCALES_TEXT = ("Scales: <b>panel</b> this map's largest weight is brightest; <b>shared</b> one "
               "maximum for every layer and head of the kind shown, the means over heads "
               "included (in an image, one for every panel of its figure); <b>unit</b> 0 to 1; "
               "<b>row</b> each row to its own maximum; <b>log</b> the logarithm of the weight, "
               "over the 4 decades below this map's largest (kept in 8 bits of each row's "
               "largest, the page reaches about 2.4 decades below it). Hatched grey cells were "
               "masked (a future position): their weight is exactly 0.")
SCORE_TEXT = ("Hover a cell for its score, Q Kᵀ / √d_k of its query and key before the mask M "
              "is added, and its weight, the softmax of its row's scores plus M.")


def to_bytes(maps: AttentionMaps, cmap: str = DEFAULT_CMAP, *, kind: str | None = None,
             layer: int | None = None, head: int | None = None, scale: str | None = "panel",
             atlas: Atlas | None = None) -> bytes:
    """The page of ``maps`` as a UTF-8 HTML document, for a file: :func:`view` alone on its
    page, whose view id is made from its content (the same maps give the same bytes)."""
    fragment = view(maps, cmap, kind=kind, layer=layer, head=head, scale=scale, stable=True,
                    atlas=atlas)
    return _document(_title(maps), fragment)


def view(maps: AttentionMaps, cmap: str = DEFAULT_CMAP, *, kind: str | None = None,
         layer: int | None = None, head: int | None = None, scale: str | None = "panel",
         stable: bool = False, atlas: Atlas | None = None) -> str:
    """The view of ``maps`` as an HTML fragment to put in any page (a notebook's output, a
    blog post), opening on one map (the reader can pick others), or on the ``atlas`` of
    their heads, whose every head opens its map.

    Args:
        maps: every kind, layer and head of them goes into the view.
        cmap: the colour map of the heatmap, as in the images.
        kind: the kind shown first (default: the first the maps hold).
        layer: the layer shown first (default: that kind's default layer).
        head: the head shown first; None: the mean over heads.
        scale: ``panel``, ``shared``, ``unit`` or ``row`` (see :data:`SCALES`), shown first;
            None: ``panel``.
        stable: give the view's element an id made from its content (the same maps, the same
            bytes: for files); else a random one, so that views of the same maps can share a
            page.
        atlas: the figures of the maps' heads (:mod:`attnviz.maps.atlas`), shown first.

    Raises:
        AttnvizError: when the kind, layer, head or scale is not one of the maps', or the
            maps are too large for a page (more than :data:`MAX_WEIGHTS`).
    """
    check_scale(scale)
    scale = scale or "panel"
    kind = kind or maps.kinds[0]
    first = heatmap(maps, kind, layer, head)  # checks kind, layer and head like every view
    count = sum(maps.stack(k).size for k in maps.kinds)
    if count > MAX_WEIGHTS:
        raise AttnvizError(f"these maps hold {count:,} weights, too many for a page (at most "
                           f"{MAX_WEIGHTS:,}: a browser would open it slowly, if at all); save "
                           "them as .npz, or draw one layer as an image")
    data = {
        "kinds": [_kind(maps, k) for k in maps.kinds],
        "scales": list(SCALES),  # the scale menu, named as everywhere else
        "colors": lookup_table(cmap).tobytes().hex(),
        "steps": STEPS,
        # Positions in the kind's stack; the menus show the model's numbers (layerNumbers).
        "initial": {"kind": kind, "layer": maps.layer_position(kind, first.layer),
                    "head": "mean" if first.head is None else maps.head_position(
                        kind, first.head), "scale": scale},
    }
    if atlas is not None:  # the view opens on it
        data["atlas"] = _atlas(atlas)
        data["initial"]["view"] = "atlas"
    return _view("Attention maps", _facts(_provenance_facts(maps.provenance), cmap), data,
                 (ROUNDING,), stable)


def explanation_view(explanation: Explanation, cmap: str = DEFAULT_CMAP,
                     stable: bool = False) -> str:
    """The view of one explained head as an HTML fragment (see :func:`view`): its weights as
    the maps' view draws them, its layer and head as the model numbers them, the formula and
    where Q, K and V come from above it, and each cell's score in the tooltip."""
    e = explanation
    weights = e.weights.astype(np.float32)[None, None]  # (1, 1, Q, K)
    facts = e.provenance
    if e.kind == "encoder_self":
        one = AttentionMaps(e.query_tokens, [], encoder_self=weights, provenance=facts)
    elif e.kind == "decoder_self":
        one = AttentionMaps([], e.query_tokens, decoder_self=weights, provenance=facts)
    else:
        one = AttentionMaps(e.key_tokens, e.query_tokens, cross=weights, provenance=facts)
    kind = {**_kind(one, e.kind), "layerNames": [e.layer], "headNames": [e.head],
            "mean": False, "defaultLayer": 0,
            "scores": base64.b64encode(e.scores.astype("<f4").tobytes()).decode("ascii")}
    data = {"kinds": [kind], "scales": list(SCALES),
            "colors": lookup_table(cmap).tobytes().hex(), "steps": STEPS,
            "initial": {"kind": e.kind, "layer": 0, "head": 0, "scale": "panel"}}
    shapes = e.shapes
    steps = [("formula", "weights = softmax(Q Kᵀ / √d_k + M), then output = weights · V"),
             ("d_k", f"d_model / heads = {e.d_model} / {e.heads} = {e.d_k}"),
             *((name, f"{shapes[name]} {origin}") for name, origin in e.origins.items()),
             ("mask M", e.mask_meaning),
             ("weights", f"the model's own: {e.map_name} of its maps")]
    return _view(f"{e.title}, step by step",
                 _facts([*steps, *_provenance_facts(e.provenance)], cmap), data,
                 (SCORE_TEXT, ROUNDING), stable)


def explanation_bytes(explanation: Explanation, cmap: str = DEFAULT_CMAP) -> bytes:
    """The view of one explained head on a page of its own (see :func:`to_bytes`)."""
    e = explanation
    return _document(f"attnviz · {e.title}", explanation_view(e, cmap, stable=True))


def element_id(content: str | None = None) -> str:
    """An id for a view's element: made from ``content`` (the same view, the same id), or,
    without it, random (60 bits: views on one page never share one)."""
    if content is None:
        return f"attnviz-{secrets.token_hex(8)}"
    return f"attnviz-{hashlib.sha256(content.encode('utf-8')).hexdigest()[:16]}"


def _kind(maps: AttentionMaps, kind: str) -> dict:
    """What the page knows of one kind: sizes, labels of its rows, columns and axes, where
    the mask hid keys, and its weights."""
    stack = maps.stack(kind)  # (L, H, Q, K)
    layers, heads, queries, keys = stack.shape
    levels, row_max = quantise(stack)
    # The images' labels, the same at every layer and head: words the vocabulary lacked as
    # written (zebra?), decoder rows as "input → next" down to the token after the last row.
    # Whole in the tooltip; drawn cut to the images' width, each side of a row keeping its share.
    numbers = maps.layers_of(kind)  # the model's numbers of the layers held
    shown = heatmap(maps, kind, numbers[0])
    return {
        "name": kind, "cli": CLI_KINDS[kind],
        "title": TITLES[kind] + WEIGHT_TITLES[maps.measure],  # norm-based maps say so
        "layers": layers, "heads": heads, "queries": queries, "keys": keys,
        "meanName": head_name(None, heads),  # as the images title it: "the only head"...
        "queryLabels": shown.query_labels, "keyLabels": shown.key_labels,
        "queryDrawn": [shown.query_label(row, LABEL_CHARS) for row in range(queries)],
        "keyDrawn": [shorten(label, LABEL_CHARS) for label in shown.key_labels],
        "queryAxis": shown.query_axis, "keyAxis": shown.key_axis,
        "defaultLayer": maps.layer_position(kind, maps.default_layer(kind)),
        "layerNumbers": numbers, "headNumbers": maps.heads_of(kind),
        # The shared scale's one maximum: the largest weight of every layer and head of this
        # kind, the means over heads included (a mean never exceeds its largest head).
        "sharedMax": float(stack.max(initial=0.0)),
        # The same rule as the images: a layer whose future keys all have weight 0 was masked.
        "masked": [not heatmap(maps, kind, layer).visible.all() for layer in numbers],
        "rowMax": base64.b64encode(row_max.astype("<f4").tobytes()).decode("ascii"),
        "levels": base64.b64encode(zlib.compress(levels.tobytes(), COMPRESSION)
                                   ).decode("ascii"),
    }


def _atlas(atlas: Atlas) -> dict:
    """What the view knows of the atlas: each kind's figures and labels, head by head
    (layer-major, as ``values[layer * heads + head]``), and each figure's colour scale."""
    from attnviz.maps.atlas import DIGITS, LABELS, threshold_text

    def listed(values: np.ndarray) -> list[float | None]:
        return [None if not np.isfinite(v) else round(float(v), DIGITS) for v in values.ravel()]

    kinds = []
    for kind in atlas.kinds:
        layers, heads = atlas.shape(kind)
        kinds.append({
            "name": kind, "cli": CLI_KINDS[kind], "layers": layers, "heads": heads,
            "title": TITLES[kind] + WEIGHT_TITLES[atlas.measure],
            "values": {name: listed(atlas.figures[kind][name]) for name in atlas.names},
            "labels": [atlas.label(kind, layer, head) for layer in range(layers)
                       for head in range(heads)]})
    return {"kinds": kinds, "names": list(atlas.names),
            "limits": {name: atlas.limit(name) for name in atlas.names},
            "labels": [{"name": name, "rule": threshold_text(name),
                        "color": LABEL_COLORS[name]} for name, _, _ in LABELS],
            "noLabel": NO_LABEL, "caption": atlas.caption}


def quantise(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each weight as a byte: its share of its row's largest weight, rounded to 1/255.

    ``levels * row_max / 255`` gives the weights back within ``row_max / 510``. A row of
    zeros (a query that saw no key) has a maximum of 0 and levels of 0.

    Shape: ``[L, H, Q, K]`` -> levels ``[L, H, Q, K]`` uint8, row_max ``[L, H, Q]`` float32.
    """
    row_max = stack.max(axis=-1, initial=0.0).astype(np.float32)  # (L, H, Q)
    safe = np.where(row_max > 0, row_max, 1.0).astype(np.float64)[..., None]  # (L, H, Q, 1)
    # In float64: float32's share * 255 can land on a half (229.5 for 0.9) that the weight
    # itself is just below, and round away, past the stated row_max / 510.
    levels = np.rint(np.clip(stack / safe, 0.0, 1.0) * STEPS).astype(np.uint8)
    return levels, row_max


def script_json(data: object) -> str:
    """``data`` as JSON that can sit inside a ``<script>`` element whatever its strings hold.

    Every non-ASCII character (U+2028 among them) and every ``<``, ``>`` and ``&`` is written
    as a ``\\u`` escape, so no text can close the element (``</script>``) or open a comment.
    """
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _text(value: str) -> str:
    """Text from outside as HTML text: control characters escaped, then markup escaped."""
    return html.escape(printable(value), quote=True)


def _title(maps: AttentionMaps) -> str:
    text = maps.provenance.source_text or " ".join(maps.source_tokens or maps.target_tokens)
    return f"attnviz · {text[:80]}{'…' if len(text) > 80 else ''}"


def _provenance_facts(facts: Provenance) -> list[tuple[str, str]]:
    """The texts, the model and the attnviz version, as (name, value) lines."""
    rows = []
    if facts.source_text is not None:
        rows.append(("source", facts.source_text))
    if facts.target_text is not None:
        rows.append(("target", facts.target_text + (" (written by the model)"
                                                    if facts.target_generated else "")))
    if facts.model:
        rows.append(("model", facts.model + (f" (sha256 {facts.model_sha256[:12]}…)"
                                             if facts.model_sha256 else "")))
    if facts.options:
        rows.append(("options", ", ".join(f"{k} {v}" for k, v in facts.options.items())))
    rows.append(("attnviz", facts.attnviz_version or "unknown (maps from another tool)"))
    return rows


def _facts(rows: list[tuple[str, str]], cmap: str) -> str:
    """The lines of a definition list, the colour map last; every text escaped."""
    return "\n".join(f"<dt>{_text(name)}</dt><dd>{_text(value)}</dd>"
                     for name, value in (*rows, ("colours", cmap)))


def _view(heading: str, facts: str, data: dict, notes: tuple[str, ...], stable: bool) -> str:
    """The view's element: its style, heading and facts, controls, canvases, notes, data and
    script; its id made from its content when ``stable``, else random."""
    payload = script_json(data)
    root_id = element_id(heading + facts + payload if stable else None)
    notes_html = "".join(f"<p>{_text(note)}</p>\n" for note in notes)
    return _VIEW.format(id=root_id, style=_asset("page.css"), heading=_text(heading),
                        facts=facts, notes=notes_html, scales=SCALES_TEXT, data=payload,
                        script=_asset("page.js"))


def _document(title: str, fragment: str) -> bytes:
    return _DOCUMENT.format(title=_text(title), view=fragment).encode("utf-8")


@cache
def _asset(name: str) -> str:
    """The page's stylesheet or script, shipped beside this module."""
    return resources.files("attnviz.render").joinpath(name).read_text(encoding="utf-8")


# default-src 'none': the browser fetches nothing, not even a favicon or a font.
_DOCUMENT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 17px 28px; background: #fff; }}  /* 1.2em 2em of the view's 14px */
</style>
</head>
<body>
{view}
</body>
</html>
"""

# One view: every class prefixed (av-), no id but the view's own; the script is the body of
# a function of the view's element (see page.js), called with the element that holds it, or,
# where the front end runs it from elsewhere (jQuery's eval in the classic notebook), with
# the element of its id.
_VIEW = """<div class="attnviz-view" id="{id}">
<style>
{style}
</style>
<header class="av-header">
<div class="av-heading" role="heading" aria-level="2">{heading}</div>
<dl class="av-facts">
{facts}
</dl>
</header>
<div class="av-controls" role="group" aria-label="what to show">
<label>kind <select class="av-kind"></select></label>
<label>layer <select class="av-layer"></select></label>
<label>head <select class="av-head"></select></label>
<label>scale <select class="av-scale" title="panel: this map's largest weight is brightest; \
shared: one maximum for every layer and head of this kind, the means over heads included; \
unit: 0 to 1; row: each row to its own maximum; log: the logarithm, 4 decades"></select></label>
<span class="av-views" role="group" aria-label="view">\
<button type="button" class="av-show" data-view="atlas" aria-pressed="false" hidden>atlas\
</button>\
<button type="button" class="av-show" data-view="heatmap" aria-pressed="true">heatmap</button>\
<button type="button" class="av-show" data-view="heads" aria-pressed="false">head view</button>\
</span>
</div>
<div class="av-main">
<p class="av-status">Drawing… <span class="av-stuck">If this stays, the view's script did not \
run here: in Jupyter, trust the notebook or run its cell again; a viewer that runs no script \
shows the picture beside it, or draw one with attnviz.plot.</span></p>
<noscript><p>This view draws the maps with JavaScript; allow scripts for this page.</p></noscript>
<section class="av-view av-atlas-view" hidden>
<p class="av-hint">What every head does: per kind, a layers x heads grid of the labels and of \
each figure (each on its own scale, 0 to its largest value). Click a head to open its map.</p>
<div class="av-layers"><canvas class="av-atlas"></canvas><canvas class="av-atlas-hover">\
</canvas></div>
<p class="av-hint av-atlas-head"></p>
</section>
<section class="av-view av-heatmap-view" hidden>
<div class="av-layers"><canvas class="av-heatmap"></canvas><canvas class="av-heatmap-hover">\
</canvas></div>
</section>
<section class="av-view av-heads-view" hidden>
<p class="av-hint">Hover a token to follow its attention: queries on the left, keys on the \
right; a line's opacity is its weight on the chosen scale. <span class="av-heads-limit"></span></p>
<div class="av-layers"><canvas class="av-heads"></canvas><canvas class="av-heads-hover"></canvas>\
</div>
</section>
<div class="av-tooltip" role="status" hidden>
<div><span class="av-name">query</span> <span class="av-tip-query"></span></div>
<div><span class="av-name">key</span> <span class="av-tip-key"></span></div>
<div><span class="av-name">weight</span> <span class="av-tip-weight"></span></div>
<div class="av-tip-score-row" hidden><span class="av-name">score</span> \
<span class="av-tip-score"></span></div>
</div>
</div>
<footer class="av-footer">
{notes}<p>{scales}</p>
</footer>
<script type="application/json" class="av-data">{data}</script>
<script>
(function (root) {{
{script}
}})(document.currentScript && document.currentScript.closest(".attnviz-view")
   || document.getElementById("{id}"));
</script>
</div>
"""
