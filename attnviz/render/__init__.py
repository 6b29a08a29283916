"""Renderers: each module draws Heatmaps (chosen from AttentionMaps) to one kind of output.

``image`` writes PNG, SVG and PDF with matplotlib; ``animation`` writes the decoding steps
as a GIF; ``terminal`` draws with rich; ``page`` writes one HTML page that holds every map
(and ``index`` the page listing an export's files); the raw numbers (npz, json) are the maps'
own format (:meth:`AttentionMaps.to_bytes`). None of them loads a model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from attnviz.errors import AttnvizError, AttnvizWarning

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
ANIMATION_SUFFIXES = (".gif",)  # one frame per decoding step
DATA_SUFFIXES = (".npz", ".json")
DATA_FORMATS = ("npz", "json")
PAGE_SUFFIXES = (".html",)  # a page to explore every kind, layer and head
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + ANIMATION_SUFFIXES + DATA_SUFFIXES + PAGE_SUFFIXES
EXPLANATION_SUFFIXES = IMAGE_SUFFIXES + DATA_SUFFIXES  # explain draws one picture: no GIF, page


def output_format(path: Path, suffixes: tuple[str, ...] = SUPPORTED_SUFFIXES) -> str:
    """The format of an output file from its suffix: png, svg, pdf, gif, npz, json or html.

    Args:
        path: the output file.
        suffixes: the suffixes the caller can write, named in the error otherwise.
    """
    suffix = path.suffix.lower()
    if not suffix:
        raise AttnvizError(f"cannot write {path}: it has no suffix to tell the format; "
                           f"use one of {', '.join(suffixes)}")
    if suffix not in suffixes:
        raise AttnvizError(f"cannot write {path}: '{path.suffix}' is not a supported output; "
                           f"use one of {', '.join(suffixes)}")
    return suffix[1:]


def check_outputs(paths: list[Path], cmap: str) -> None:
    """Fail before any work when an output cannot be written or the colour map is unknown.

    No paths means the terminal, which uses the colour map too.
    """
    from attnviz.files import check_writable

    for path in paths:
        output_format(path)
        check_writable(path)
    if not paths or any(output_format(path) not in DATA_FORMATS for path in paths):
        from attnviz.render.colors import check

        check(cmap)


def write_outputs(paths: list[Path], maps, heatmaps, cmap: str, extra=None,
                  page_scale: str | None = None) -> None:
    """Write every output file, or none: images draw ``heatmaps`` (a list, or a plan of
    :mod:`attnviz.views`), a GIF animates their decoder maps step by step, data files hold
    all of ``maps`` (and the ``extra`` arrays by name, such as ``encoder_rollout``), a page
    holds all of ``maps`` and opens on the first heatmap, coloured by ``page_scale`` (the
    scale the person chose; None: ``panel``; a GIF colours from 0 to 1 and warns about
    another). All are drawn before the first is written."""
    from attnviz.files import write_all

    contents = {}
    for path in paths:
        fmt = output_format(path)
        if fmt in DATA_FORMATS:
            contents[path] = _data_bytes(maps, fmt, extra or {})
        elif fmt == "gif":
            from attnviz.render import animation

            contents[path] = animation.to_bytes(maps, _panels(heatmaps), cmap, page_scale)
        elif fmt == "html":
            from attnviz.attention_rollout import RolloutHeatmap
            from attnviz.render import page

            first = _panels(heatmaps)[0]
            if isinstance(first, RolloutHeatmap):
                warnings.warn("the .html page holds the attention maps, not their rollout: "
                              "draw the rollout to .png .svg .pdf, or save it in .npz .json",
                              AttnvizWarning, stacklevel=2)
            elif any(panel.windowed for panel in _panels(heatmaps)):
                warnings.warn("the .html page holds the whole maps, not a window of them: "
                              "draw the window to .png .svg .pdf .gif or to the terminal",
                              AttnvizWarning, stacklevel=2)
            contents[path] = page.to_bytes(maps, cmap, kind=first.kind, layer=first.layer,
                                           head=first.head, scale=page_scale or "panel")
        else:
            from attnviz.render import image

            contents[path] = image.to_bytes(heatmaps, fmt, cmap)
    write_all(contents)


def _panels(heatmaps) -> list:
    """The heatmaps of a plan (:class:`attnviz.views.Plan`), or the heatmaps themselves."""
    from attnviz.views import Plan

    return heatmaps.panels if isinstance(heatmaps, Plan) else list(heatmaps)


def _data_bytes(maps, fmt: str, extra: dict) -> bytes:
    """The maps' own file, with the ``extra`` arrays beside them."""
    if not extra:
        return maps.to_bytes(fmt)
    from attnviz import mapfile

    if fmt == "npz":
        return mapfile.npz_bytes({**maps.to_arrays(), **extra})
    return mapfile.json_bytes({**maps.to_json(), **extra})


def check_explanation_outputs(paths: list[Path], cmap: str) -> None:
    """As :func:`check_outputs`, for the explain view, which draws one picture: no GIF, no
    page."""
    for path in paths:
        fmt = path.suffix.lower()[1:]
        if fmt in ("gif", "html"):
            of = {"gif": "the .gif animation is of decoding",
                  "html": "the .html page is of encode, decode and show"}[fmt]
            raise AttnvizError(f"cannot write {path}: explain draws one picture (.png .svg "
                               f".pdf) or saves its numbers (.npz .json); {of}")
        output_format(path, EXPLANATION_SUFFIXES)
    check_outputs(paths, cmap)


def write_explanation(paths: list[Path], explanation, cmap: str) -> None:
    """Write every output file of the explain view, or none: pictures of it, or its arrays."""
    from attnviz.files import write_all
    from attnviz.render import explain_image

    contents = {}
    for path in paths:
        fmt = output_format(path)
        contents[path] = (explanation.to_bytes(fmt) if fmt in DATA_FORMATS
                          else explain_image.to_bytes(explanation, fmt, cmap))
    write_all(contents)
