"""The way of every request: a model turns it into maps, a view chooses what to draw of them,
and one dispatcher turns them into each output's bytes.

    Request ──source, behind the cache──▶ AttentionMaps ──View──▶ Plan ──renderer──▶ files

The command line, the Python API and export all call :func:`trace` and :func:`write` (or
:func:`explain` and :func:`write_explanation`, or :func:`heads` and :func:`write` with the
atlas of the heads); nothing else wires a source to a renderer, and :func:`to_bytes` is the
one place that knows which renderer writes which file format (the Python API's ``plot``
hands the plan to the image renderer for a Figure, which is no file).

Warnings travel one way: as Python warnings (:class:`attnviz.errors.AttnvizWarning`). A
source warns while it computes, the cache keeps what was said with the maps and says it again
on a hit, and each caller shows them as it shows warnings (the command line as one line each,
the Python API as Python does, export per line).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.flow.formats import (
    ATLAS_FORMATS,
    DATA_FORMATS,
    EXPLANATION_FORMATS,
    FORMATS,
    IMAGE_FORMATS,
)
from attnviz.io.atomic import check_writable, write_all
from attnviz.maps.choice import check_kind
from attnviz.maps.data import AttentionMaps
from attnviz.maps.keep import Keep
from attnviz.maps.views import Head, Layer, Plan
from attnviz.maps.windows import Window
from attnviz.sources import Request, Source, open_source, source_module

if TYPE_CHECKING:
    from attnviz.maps.atlas import Atlas
    from attnviz.maps.explanation import Explanation
    from attnviz.sources.base import Repeated



@dataclass(frozen=True)
class View:
    """What a picture of maps shows, in the library's words (the command line's ``--kind``,
    ``--layer``, ``--head``, ``--scale``, ``--window...`` and ``--rollout``).

    The defaults are every kind at its default layer, the mean of the heads: what an export
    draws.
    """

    kinds: tuple[str, ...] | None = None  # the maps' names; None: every kind the maps hold
    layer: Layer = None  # an index, "all", or None for each kind's default layer
    head: Head = None  # an index, "all", or None (or "mean") for the mean over heads
    scale: str | None = None  # one of attnviz.maps.views.SCALES; None: chosen by the panels
    window: Window = None  # positions "A:B" of the queries and the keys
    window_query: Window = None
    window_key: Window = None
    rollout: bool = False  # the encoder's attention rollout instead of its maps
    sink: str = "shown"  # the first key: one of attnviz.maps.views.SINKS


def keep_of(view: View, precision: str = "float32") -> Keep:
    """What of the maps a source needs to keep to draw ``view``: its kinds, its one layer and
    one head (every one where it draws all, or the mean, or the rollout, which multiplies
    every layer), in ``precision``."""
    # A layer or head that is not an index the model could have is left to the view to
    # refuse, in its words ("layer -1 is out of range").
    layer = view.layer if _index(view.layer) and not view.rollout else None
    head = view.head if _index(view.head) else None
    return Keep(view.kinds, None if layer is None else (layer,),
                None if head is None else (head,), precision)


def _index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def trace(model: str | Source | None, request: Request, *, cache: bool = True
          ) -> AttentionMaps:
    """The maps of ``request`` by ``model`` (a name as ``--model`` takes it, None for the
    default model, or a source opened before, which keeps what it loaded for the next
    request): read from the render cache when they are there (``cache``), else computed by
    the model's source (and kept)."""
    source = open_source(model) if model is None or isinstance(model, str) else model
    if cache:
        from attnviz.sources.cache import Cached

        source = Cached(source)
    return source.maps(request)


def heads(model: str | Source | None, request: Request, *, induction: Repeated | None = None,
          cache: bool = True) -> tuple[AttentionMaps, Atlas]:
    """The maps of ``request`` by ``model`` (as :func:`trace`) and the atlas of their heads
    (:mod:`attnviz.maps.atlas`); with ``induction``, also the induction score of the model's
    self-attention heads, from its maps of that repeated random sequence (a second request,
    through the same source and cache)."""
    from attnviz.maps.atlas import atlas_of

    source = open_source(model) if model is None or isinstance(model, str) else model
    maps = trace(source, request, cache=cache)
    repeated = None if induction is None else trace(source, replace(request, repeated=induction),
                                                    cache=cache)
    return maps, atlas_of(maps, repeated)


def explain(model: str | None, request: Request, kind: str, layer: int | None, head: int
            ) -> Explanation:
    """One head of one attention layer of ``model``, step by step, from the forward pass
    that computes its maps (see :meth:`attnviz.sources.own.OwnModel.explain` and, for a
    Hugging Face model, :meth:`attnviz.sources.huggingface.source.HuggingFaceModel.explain`)."""
    kind = check_kind(kind)
    if source_module(model) == "saved":
        raise AttnvizError("explain works with models (attnviz's own, or a Hugging Face "
                           "model): a file of saved maps holds their weights, not the queries "
                           "and keys that made them")
    return open_source(model).explain(request, kind, layer, head)


def plan(maps: AttentionMaps, view: View) -> Plan:
    """The panels of a picture of ``maps`` as ``view`` chooses them (the rollout's, where it
    asks for the rollout). Raises AttnvizError for a kind, layer, head, scale or window that
    the maps cannot show."""
    from attnviz.maps import views

    if view.rollout:
        from attnviz.maps.rollout import rollout_heatmaps

        rolled = rollout_heatmaps(maps, None if view.layer == "all" else view.layer,
                                  None if view.head == "mean" else view.head, view.kinds)
        return views.arrange(rolled, view.scale, view.window, view.window_query,
                             view.window_key, view.sink)
    return views.plan(maps, view.kinds, view.layer, view.head, view.scale, view.window,
                      view.window_query, view.window_key, view.sink)


def output_format(path: Path, formats: Sequence[str] = FORMATS) -> str:
    """The format of an output file from its suffix, one of ``formats``."""
    suffix = path.suffix.lower()
    allowed = ", ".join(f".{fmt}" for fmt in formats)
    if not suffix:
        raise AttnvizError(f"cannot write {path}: it has no suffix to tell the format; "
                           f"use one of {allowed}")
    if suffix[1:] not in formats:
        raise AttnvizError(f"cannot write {path}: '{path.suffix}' is not a supported output; "
                           f"use one of {allowed}")
    return suffix[1:]


def check_outputs(paths: Sequence[Path], cmap: str, formats: Sequence[str] = FORMATS) -> None:
    """Fail before any work when an output cannot be written or the colour map is unknown.
    No paths means the terminal, which uses the colour map too."""
    for path in paths:
        output_format(path, formats)
        check_writable(path)
    check_colors([output_format(path, formats) for path in paths], cmap)


def check_colors(formats: Sequence[str], cmap: str) -> None:
    """Refuse an unknown colour map where something is drawn with it: any format but the
    numbers, or the terminal (no format)."""
    if not formats or any(fmt not in DATA_FORMATS for fmt in formats):
        from attnviz.render.colors import check

        check(cmap)


def to_bytes(maps: AttentionMaps | None, plan: Plan | None, fmt: str, cmap: str, *,
             embed: bool = False, dpi: int | None = None, atlas: Atlas | None = None) -> bytes:
    """One output file of ``maps``: a picture of ``plan``'s panels (png, svg, pdf), its decoder
    maps step by step (gif), the numbers of every map (npz, json, with the rollout beside them
    when the plan draws it), or a page that holds every map and opens on the plan's first
    panel (html). ``embed``: the page's view alone, an HTML fragment to put in another page
    (a notebook's output, a blog post), instead of a document. ``dpi``: a PNG's resolution
    (None: the image renderer's own).

    With an ``atlas`` of the heads, the file is the atlas's (see :func:`atlas_bytes`); then
    ``plan`` is unused, and ``maps`` needed for the page alone."""
    if atlas is not None:
        return atlas_bytes(atlas, maps, fmt, cmap, embed=embed, dpi=dpi)
    first = plan.panels[0]
    if fmt in DATA_FORMATS:
        if not first.rolled_out:
            return maps.to_bytes(fmt)
        from attnviz.io import arrays
        from attnviz.maps.rollout import KEY, rollout

        extra = {KEY: rollout(maps)}
        if fmt == "npz":
            return arrays.npz_bytes({**maps.to_arrays(), **extra})
        return arrays.json_bytes({**maps.to_json(), **extra})
    if fmt == "gif":
        from attnviz.render import animation

        return animation.to_bytes(maps, plan.panels, cmap, plan.asked)
    if fmt == "html":
        from attnviz.render import page

        if first.rolled_out:
            warnings.warn("the .html page holds the attention maps, not their rollout: draw "
                          "the rollout to .png .svg .pdf, or save it in .npz .json",
                          AttnvizWarning, stacklevel=2)
        elif any(panel.windowed for panel in plan.panels):
            warnings.warn("the .html page holds the whole maps, not a window of them: draw the "
                          "window to .png .svg .pdf .gif or to the terminal", AttnvizWarning,
                          stacklevel=2)
        opening = {"kind": first.kind, "layer": first.layer, "head": first.head,
                   "scale": plan.asked or "panel"}
        if embed:
            return page.view(maps, cmap, **opening).encode("utf-8")
        return page.to_bytes(maps, cmap, **opening)
    from attnviz.render import image

    return image.to_bytes(plan, fmt, cmap) if dpi is None else image.to_bytes(plan, fmt, cmap,
                                                                              dpi)


def atlas_bytes(atlas: Atlas, maps: AttentionMaps | None, fmt: str, cmap: str, *,
                embed: bool = False, dpi: int | None = None) -> bytes:
    """One output file of the atlas of the heads: its records (json), its grids, a layers x
    heads grid per figure and kind (png, svg, pdf; ``dpi`` as :func:`to_bytes` takes it), or
    the page of ``maps`` that opens on the atlas, each head leading to its map (html;
    ``embed``: its view alone)."""
    if fmt == "json":
        return atlas.to_bytes()
    if fmt == "html":
        if maps is None:
            raise AttnvizError("the .html page holds the maps of one text, with the atlas of "
                               "their heads: write it for one text; a corpus's atlas is "
                               "written to .json .png .svg .pdf")
        from attnviz.render import page

        if embed:
            return page.view(maps, cmap, atlas=atlas).encode("utf-8")
        return page.to_bytes(maps, cmap, atlas=atlas)
    if fmt not in IMAGE_FORMATS:
        raise AttnvizError(f"the atlas of the heads is written to .json .png .svg .pdf or "
                           f".html, not .{fmt}")
    from attnviz.render import atlas_image

    return atlas_image.to_bytes(atlas, fmt, cmap) if dpi is None else \
        atlas_image.to_bytes(atlas, fmt, cmap, dpi)


def write(paths: Sequence[Path], maps: AttentionMaps | None, plan: Plan | None, cmap: str, *,
          atlas: Atlas | None = None) -> None:
    """Write every output file of ``maps`` (see :func:`to_bytes`), or of the ``atlas`` of
    their heads, or none: all are drawn before the first is written."""
    formats = FORMATS if atlas is None else ATLAS_FORMATS
    write_all({path: _writer(maps, plan, output_format(path, formats), cmap, atlas)
               for path in paths})


def _writer(maps: AttentionMaps | None, plan: Plan | None, fmt: str, cmap: str,
            atlas: Atlas | None):
    """What :func:`write_all` writes: the bytes of :func:`to_bytes`, or, for the npz of the
    maps, a function that writes it straight to the file (never a second copy in memory)."""
    if atlas is None and fmt == "npz" and not plan.panels[0].rolled_out:
        import numpy as np

        arrays = maps.to_arrays()
        return lambda file: np.savez(file, **arrays)
    return to_bytes(maps, plan, fmt, cmap, atlas=atlas)


def check_atlas_outputs(paths: Sequence[Path], cmap: str, corpus: bool = False) -> None:
    """As :func:`check_outputs`, for the atlas of the heads: json, pictures, or (of one
    text, not of a ``corpus``) the page."""
    for path in paths:
        if corpus and output_format(path, ATLAS_FORMATS) == "html":
            raise AttnvizError(f"cannot write {path}: the .html page holds the maps of one "
                               "text, with the atlas of their heads; write a corpus's atlas "
                               "to .json .png .svg .pdf")
    check_outputs(paths, cmap, ATLAS_FORMATS)


def check_explanation_outputs(paths: Sequence[Path], cmap: str) -> None:
    """As :func:`check_outputs`, for the explain view, which draws one picture, saves its
    numbers or writes a page of its head: no GIF."""
    for path in paths:
        if path.suffix.lower() == ".gif":
            raise AttnvizError(f"cannot write {path}: explain draws one picture (.png .svg "
                               ".pdf), saves its numbers (.npz .json) or writes a page (.html); "
                               "the .gif animation is of decoding")
    check_outputs(paths, cmap, EXPLANATION_FORMATS)


def explanation_bytes(explanation: Explanation, fmt: str, cmap: str, *, embed: bool = False,
                      dpi: int | None = None) -> bytes:
    """One output file of the explain view: its picture (``dpi``: a PNG's resolution), its
    arrays, or a page of its head (html; ``embed``: the view alone, as :func:`to_bytes`
    embeds it)."""
    if fmt in DATA_FORMATS:
        return explanation.to_bytes(fmt)
    if fmt == "html":
        from attnviz.render import page

        if embed:
            return page.explanation_view(explanation, cmap).encode("utf-8")
        return page.explanation_bytes(explanation, cmap)
    from attnviz.render import explain_image

    if dpi is None:
        return explain_image.to_bytes(explanation, fmt, cmap)
    return explain_image.to_bytes(explanation, fmt, cmap, dpi=dpi)


def write_explanation(paths: Sequence[Path], explanation: Explanation, cmap: str) -> None:
    """Write every output file of the explain view, or none."""
    write_all({path: explanation_bytes(explanation, output_format(path, EXPLANATION_FORMATS),
                                       cmap) for path in paths})
