"""AttentionMaps as one self-contained HTML page to explore: every kind, layer and head.

The page is a single file that needs no network: its style, its script (plain JavaScript,
``page.js`` beside this module) and its data are inline, and a Content-Security-Policy tells
the browser to fetch nothing at all. The heatmap is drawn on a ``<canvas>``, one pixel per
cell scaled up, never one element per cell (bertviz's page of 512 tokens is 244 MB).

The weights are embedded compactly: each weight as 8 bits of its row's largest weight
(:func:`quantise`), the bytes compressed with zlib and base64-encoded; the browser inflates
them with its own ``DecompressionStream``. A weight read back is within half a step,
``row max / 510`` (at most 0.002), of the computed one, and exactly 0 stays 0.
"""

from __future__ import annotations

import base64
import html
import json
import zlib
from functools import cache
from importlib import resources

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.io.text import printable, shorten
from attnviz.maps.data import AttentionMaps
from attnviz.maps.kinds import SHORT_NAMES, TITLES
from attnviz.maps.views import SCALES, check_scale, head_name, heatmap
from attnviz.render.colors import DEFAULT_CMAP, lookup_table
from attnviz.render.layout import LABEL_CHARS

STEPS = 255  # a weight is stored as round(weight / row max * STEPS), one byte
ROUNDING = ("Weights are stored in 8 bits, as a share of their row's largest weight: a weight "
            "shown here is within ±(row max)/510 of the computed one, so within ±0.002, and a "
            "weight of 0 is exactly 0.")
# The most weights a page holds: about 85 MB of page when they do not compress, already more
# than a browser opens quickly. Past this, the numbers belong in an npz file.
MAX_WEIGHTS = 2**26
COMPRESSION = 1  # zlib's fastest level: the bytes are within 2% of level 9, four times faster
CLI_KINDS = {kind: short for short, kind in SHORT_NAMES.items()}  # as the menu names them


def to_bytes(maps: AttentionMaps, cmap: str = DEFAULT_CMAP, *, kind: str | None = None,
             layer: int | None = None, head: int | None = None, scale: str | None = "panel"
             ) -> bytes:
    """The page of ``maps`` as UTF-8 HTML, opening on one view (the reader can pick others).

    Args:
        maps: every kind, layer and head of them goes into the page.
        cmap: the colour map of the heatmap, as in the images.
        kind: the kind shown first (default: the first the maps hold).
        layer: the layer shown first (default: that kind's default layer).
        head: the head shown first; None: the mean over heads.
        scale: ``panel``, ``shared``, ``unit`` or ``row`` (see :data:`SCALES`), shown first;
            None: ``panel``.

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
    page = _TEMPLATE.format(title=_text(_title(maps)), facts=_facts(maps, cmap),
                            rounding=_text(ROUNDING), style=_asset("page.css"),
                            data=script_json(data), script=_asset("page.js"))
    return page.encode("utf-8")


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
        "name": kind, "cli": CLI_KINDS[kind], "title": TITLES[kind],
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


def _facts(maps: AttentionMaps, cmap: str) -> str:
    """The texts, the model and the attnviz version, as the lines of a definition list."""
    facts = maps.provenance
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
    rows.append(("colours", cmap))
    return "\n".join(f'<dt>{_text(name)}</dt><dd class="fact-{_text(name)}">{_text(value)}</dd>'
                     for name, value in rows)


@cache
def _asset(name: str) -> str:
    """The page's stylesheet or script, shipped beside this module."""
    return resources.files("attnviz.render").joinpath(name).read_text(encoding="utf-8")


# default-src 'none': the browser fetches nothing, not even a favicon or a font.
_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{style}
</style>
</head>
<body>
<header>
<h1>Attention maps</h1>
<dl class="facts">
{facts}
</dl>
</header>
<nav id="controls" aria-label="what to show">
<label>kind <select id="kind"></select></label>
<label>layer <select id="layer"></select></label>
<label>head <select id="head"></select></label>
<label>scale <select id="scale" title="panel: this map's largest weight is brightest; \
shared: one maximum for every layer and head of this kind, the means over heads included; \
unit: 0 to 1; row: each row to its own maximum; log: the logarithm, 4 decades"></select></label>
<span class="views" role="group" aria-label="view">\
<button type="button" id="show-heatmap" aria-pressed="true">heatmap</button>\
<button type="button" id="show-heads" aria-pressed="false">head view</button></span>
</nav>
<main>
<p id="status">Drawing…</p>
<noscript><p>This page draws the maps with JavaScript; allow scripts for this file.</p></noscript>
<section id="heatmap-view" hidden>
<div class="layers"><canvas id="heatmap"></canvas><canvas id="heatmap-hover"></canvas></div>
</section>
<section id="heads-view" hidden>
<p class="hint">Hover a token to follow its attention: queries on the left, keys on the \
right; a line's opacity is its weight on the chosen scale. <span id="heads-limit"></span></p>
<div class="layers"><canvas id="heads"></canvas><canvas id="heads-hover"></canvas></div>
</section>
<div id="tooltip" role="status" hidden>
<div><span class="name">query</span> <span id="tip-query"></span></div>
<div><span class="name">key</span> <span id="tip-key"></span></div>
<div><span class="name">weight</span> <span id="tip-weight"></span></div>
</div>
</main>
<footer>
<p>{rounding}</p>
<p>Scales: <b>panel</b> this map's largest weight is brightest; <b>shared</b> one maximum for \
every layer and head of the kind shown, the means over heads included (in an image, one for \
every panel of its figure); <b>unit</b> 0 to 1; <b>row</b> each row to its own maximum; \
<b>log</b> the logarithm of the weight, over the 4 decades below this map's largest (kept in 8 \
bits of each row's largest, the page reaches about 2.4 decades below it). \
Hatched grey cells were masked (a future position): their weight is exactly 0.</p>
</footer>
<script type="application/json" id="attnviz-data">{data}</script>
<script>
{script}
</script>
</body>
</html>
"""
