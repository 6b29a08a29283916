"""attnviz from Python: the maps of a sentence, and a picture of them.

    import attnviz
    maps = attnviz.trace("the black cat sees the red car")   # the translate model
    figure = attnviz.plot(maps, kind="cross")                # a matplotlib Figure
    html = attnviz.page(maps)                                # a page to explore every map
    maps.save("maps.npz")

The same way as the command line's (:mod:`attnviz.flow.pipeline`): the same sources, cache,
views and files. Errors are AttnvizError; what the command line prints as a warning is an
AttnvizWarning, warned with :func:`warnings.warn`.

In a notebook, maps and an explanation show themselves as ``page(..., embed=True)`` with
``png(...)`` beside it (``attnviz/__init__.py`` tells IPython so), and a figure from
:func:`plot` as its picture.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import valid_utf8
from attnviz.maps.choice import index, is_integer, kind_named, shown
from attnviz.maps.data import AttentionMaps
from attnviz.maps.data import expect_maps as _maps
from attnviz.maps.explanation import Explanation
from attnviz.maps.kinds import KIND_NAMES
from attnviz.model.config import MAX_SEED

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attnviz.maps.atlas import Atlas
    from attnviz.sources.base import Request

__all__ = ["KIND_NAMES", "explain", "heads", "page", "plot", "png", "trace"]
DEVICES = ("cpu", "cuda", "auto")


def trace(source: str, target: str | None = None, model: str | os.PathLike | None = "translate",
          *,
          part: Literal["encoder", "decoder"] | None = None, seed: int = 0, device: str = "cpu",
          cache: bool = True, layer: int | Sequence[int] | None = None,
          head: int | Sequence[int] | None = None, precision: str = "float32",
          memory: float | None = None, weights: Literal["attention", "norm"] = "attention"
          ) -> AttentionMaps:
    """The attention maps of ``source`` (and ``target``) by ``model``.

    Args:
        source: the source text (a decoder-only model reads it as the decoder's input).
        target: the decoder's input text; None lets the model write one greedily.
        model: a shipped model's name, ``"random"``, a model file, a saved ``.npz``/``.json``
            file of maps (a name or a ``pathlib.Path``), or ``"hf:NAME_OR_PATH"`` for a
            Hugging Face model.
        part: ``"encoder"`` for the encoder alone, ``"decoder"`` for the decoder and what it
            needs, None for everything the model has.
        seed: the random model's weights, 0 to 2**32 - 1 (as ``--seed``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        cache: read and keep maps in the render cache, as the command line does.
        layer, head: for a Hugging Face model, the layer(s) and head(s) to keep, by the
            model's numbers (None: every one); the others are computed, not stored.
            attnviz's own models, whose maps are small, keep every one.
        precision: ``"float32"`` or ``"float16"``, how a Hugging Face model's maps are kept.
        memory: the GB its kept maps may take (None: nine tenths of what the machine has
            free).
        weights: ``"attention"``, the softmax weights, or ``"norm"``, the norm-based weights
            of Kobayashi et al. (2020), each key's share of its row's ‖α f(x)‖ (attnviz's
            own models, and Hugging Face models whose attention runs through attnviz's
            function).

    Raises:
        AttnvizError: for a problem a person can fix (an empty text, an unknown model, an
            argument of the wrong type...).
    """
    from dataclasses import replace

    from attnviz.flow import pipeline
    from attnviz.maps.keep import Keep

    keep = Keep(None, _indices(layer, "layer"), _indices(head, "head"), precision)
    if memory is not None and (not isinstance(memory, (int, float)) or isinstance(memory, bool)):
        raise AttnvizError(f"⟨memory⟩ must be a number of GB, not {type(memory).__name__}")
    request = replace(_request(source, target, part, seed, device, weights), keep=keep,
                      memory=memory)
    return _warned_here(lambda: pipeline.trace(_model(model), request, cache=cache))


def _indices(value: Any, setting: str) -> tuple[int, ...] | None:
    """A layer or head to keep (an index or several), or None for every one."""
    if value is None:
        return None
    values = [value] if not isinstance(value, (list, tuple, range)) else list(value)
    return tuple(index(v, setting, "(0, 1, ...)", none=False) for v in values)


def heads(source: str | AttentionMaps, target: str | None = None,
          model: str | os.PathLike | None = "translate", *, induction: int | None = None,
          weights: Literal["attention", "norm"] = "attention", seed: int = 0,
          device: str = "cpu", cache: bool = True) -> Atlas:
    """What every head of every kind and layer does: the atlas ``attnviz heads`` writes.

    Args:
        source: the source text, as :func:`trace` takes it; or maps (what :func:`trace`
            or :meth:`AttentionMaps.load` gave), measured as they are.
        target, model, weights, seed, device, cache: as :func:`trace` takes them.
        induction: also measure the induction score, on a random sequence of this many
            tokens read twice (``attnviz heads --induction``: 50); None: not.

    Returns an :class:`attnviz.maps.atlas.Atlas`: ``atlas.figures[kind][figure]`` is a
    ``[layer, head]`` array, ``atlas.records()`` the json's records, ``atlas.label(kind,
    layer, head)`` a head's label.
    """
    from attnviz.flow import pipeline
    from attnviz.maps.atlas import atlas_of
    from attnviz.sources.base import Repeated

    if isinstance(source, AttentionMaps):
        if induction is not None:
            raise AttnvizError("⟨induction⟩ needs a model run on a repeated random sequence: "
                               "give the text and the model, not maps")
        return atlas_of(source)
    repeated = None if induction is None else Repeated(
        index(induction, "induction", "(a length: 2, 3, ...)", none=False), seed)
    request = _request(source, target, None, seed, device, weights)
    return _warned_here(lambda: pipeline.heads(_model(model), request, induction=repeated,
                                               cache=cache)[1])


def plot(maps: AttentionMaps | Explanation, kind: str = "all",
         layer: int | Literal["all"] | None = None,
         head: int | Literal["mean", "all"] | None = "mean", cmap: str = "viridis", *,
         scale: Literal["panel", "shared", "unit", "row"] | None = None,
         window: str | tuple[int | None, int | None] | None = None,
         window_query: str | tuple[int | None, int | None] | None = None,
         window_key: str | tuple[int | None, int | None] | None = None) -> Figure:
    """A matplotlib Figure of ``maps``: one panel per kind, side by side, or per kind a grid
    of layers (rows) by heads (columns); of an explanation, its steps (what ``attnviz
    explain -o x.png`` draws).

    The figure is drawn without pyplot: a script never opens a window, and pyplot's list of
    figures never holds it. In a notebook it shows itself as a cell's result, with no
    ``%matplotlib`` line.

    Args:
        maps: what :func:`trace` or :meth:`AttentionMaps.load` gave, or an explanation from
            :func:`explain` (which takes ``cmap`` alone: it is one head of one layer).
        kind: ``"encoder"``, ``"self"``, ``"cross"`` (or the maps' own names, such as
            ``"encoder_self"``), or ``"all"`` for every kind the maps hold.
        layer: the layer, counting from 0, or ``"all"``; None: the model's recommended or
            last layer.
        head: a head's index, ``"mean"`` (or None) for the mean over heads, or ``"all"`` for
            every head and their mean.
        cmap: any matplotlib colour map.
        scale: ``"panel"`` (each panel to its largest weight), ``"shared"`` (one maximum for
            every panel of the figure), ``"unit"`` (0 to 1) or ``"row"`` (each row to its
            largest weight); None: shared when there are several panels.
        window: positions ``"A:B"`` or ``(A, B)``, A to B-1, of the queries and the keys.
        window_query: positions of the queries alone.
        window_key: positions of the keys alone.

    Each panel is one of ``figure.axes`` that has a title; colour bars are the others.
    """
    from attnviz.flow import pipeline
    from attnviz.render import image

    if isinstance(maps, Explanation):
        _one_head({"kind": kind == "all", "layer": layer is None, "head": head in ("mean", None),
                   "scale": scale is None, "window": window is None,
                   "window_query": window_query is None, "window_key": window_key is None},
                  "plot(explanation) draws its steps")
        _check_cmap(cmap)
        from attnviz.render import explain_image

        return explain_image.figure(maps, cmap)
    maps = _weights(maps)
    kinds = None if kind == "all" else (_kind(kind, ", or all"),)
    # The layer, head, scale and windows are checked by the plan, in the same words.
    _check_cmap(cmap)
    view = pipeline.View(kinds, layer, head, scale, window, window_query, window_key)
    return image.figure(pipeline.plan(maps, view), cmap)


def page(maps: AttentionMaps | Explanation, kind: str | None = None, layer: int | None = None,
         head: int | Literal["mean"] | None = "mean", scale: str = "panel",
         cmap: str = "viridis", *, embed: bool = False) -> str:
    """A self-contained HTML page holding every kind, layer and head of ``maps``, to explore
    in a browser (offline, from a file): what ``-o view.html`` writes; of an explanation, the
    page of its head (``attnviz explain -o x.html``).

    Args:
        maps: what :func:`trace` or :meth:`AttentionMaps.load` gave, or an explanation from
            :func:`explain` (which takes ``cmap`` and ``embed`` alone: it opens on its head).
        kind: the kind the page opens on (``"encoder"``, ``"self"``, ``"cross"`` or the maps'
            own names); None: the first the maps hold.
        layer: the layer it opens on; None: the kind's recommended or last layer.
        head: the head it opens on, or ``"mean"`` (or None) for the mean over heads.
        scale: ``"panel"``, ``"shared"`` (on a page: one maximum for every layer and head
            of the kind shown, the means over heads included), ``"unit"`` or ``"row"``.
        cmap: any matplotlib colour map.
        embed: the page's view alone, an HTML fragment to put in another page (a blog post,
            a course page): what a notebook shows. Its element has an id of its own, its
            styles apply inside it only and its script reads nothing outside it, so any
            number of views share a page. False: a whole document, for a file.

    Write it with ``pathlib.Path("view.html").write_text(html, encoding="utf-8")``.
    """
    from attnviz.flow import pipeline
    from attnviz.maps.views import SCALES

    if not isinstance(embed, bool):
        raise AttnvizError(f"embed must be True or False, not {type(embed).__name__}")
    if isinstance(maps, Explanation):
        _one_head({"kind": kind is None, "layer": layer is None, "head": head in ("mean", None),
                   "scale": scale == "panel"},
                  "page(explanation) opens on its head, on the panel scale")
        _check_cmap(cmap)
        return pipeline.explanation_bytes(maps, "html", cmap, embed=embed).decode("utf-8")
    maps = _weights(maps)
    kind = maps.kinds[0] if kind is None else _kind(kind, ", or None")
    layer = index(layer, "layer", "(0, 1, ...)", "a page opens on one layer (the reader picks "
                  "others)")
    head = index(head, "head", "(0, 1, ...), 'mean'", "a page opens on one head (the reader "
                 "picks others)", also=("mean",))
    if not isinstance(scale, str) or scale not in SCALES:
        raise AttnvizError(f"scale {shown(str(scale))} is not a scale: use one of "
                           f"{', '.join(SCALES)}", setting="scale")
    _check_cmap(cmap)
    opening = pipeline.plan(maps, pipeline.View((kind,), layer, head, scale))
    return pipeline.to_bytes(maps, opening, "html", cmap, embed=embed).decode("utf-8")


def png(maps: AttentionMaps | Explanation) -> bytes:
    """The picture :func:`plot` draws of ``maps`` (or of an explanation), as PNG bytes at a
    notebook's 100 dots per inch: what a notebook shows beside the page, for the front ends
    that run no script (GitHub's viewer, nbconvert to PDF)."""
    from attnviz.flow import pipeline
    from attnviz.render.layout import NOTEBOOK_DPI

    if isinstance(maps, Explanation):
        return pipeline.explanation_bytes(maps, "png", "viridis", dpi=NOTEBOOK_DPI)
    maps = _weights(maps)
    return pipeline.to_bytes(maps, pipeline.plan(maps, pipeline.View()), "png", "viridis",
                             dpi=NOTEBOOK_DPI)


def explain(source: str, target: str | None = None,
            model: str | os.PathLike | None = "translate", *,
            kind: str = "self", layer: int | None = None, head: int = 0, seed: int = 0,
            device: str = "cpu") -> Explanation:
    """One head of one attention layer of an attnviz model, step by step: its queries, keys
    and values, the scaled scores Q Kᵀ / √d_k, the mask and the weights.

    The weights are the model's own: the same numbers as ``trace(...).decoder_self[layer,
    head]`` (or ``encoder_self``, ``cross``), computed by the same function.

    Args:
        source: the source text.
        target: the decoder's input text; None lets the model write one greedily first.
        model: a shipped model's name, ``"random"`` or a model file (attnviz's own models:
            a Hugging Face model or a file of saved maps holds no queries and keys to show).
        kind: ``"encoder"``, ``"self"`` or ``"cross"`` (or the maps' own names).
        layer: counting from 0; None: the model's recommended or last layer.
        head: counting from 0.
        seed: the random model's weights.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Raises:
        AttnvizError: for a problem a person can fix (another kind of model, a layer or head
            out of range, an empty text...).
    """
    from attnviz.flow import pipeline

    kind = _kind(kind, "")
    layer = index(layer, "layer", "(0, 1, ...)", "explain shows one layer")
    head = index(head, "head", "(0, 1, ...)", "explain shows one head", none=False)
    request = _request(source, target, None, seed, device)
    return _warned_here(lambda: pipeline.explain(_model(model), request, kind, layer, head))


# The arguments a person passes, checked at the edge: a wrong type is one AttnvizError line
# naming the argument, never an AttributeError from deep inside.

def _warned_here(compute: Callable[[], Any]) -> Any:
    """``compute()``, and once it has succeeded, the AttnvizWarnings it gave, warned again at
    the line of the caller's code that called the API (not inside attnviz, where Python's
    default filter would say each only once per process, whoever asked). A call that fails
    raises its error alone."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute()
    for warning in caught:
        if issubclass(warning.category, AttnvizWarning):
            warnings.warn(warning.message, warning.category, stacklevel=3)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno, source=warning.source)
    return result


def _request(source: Any, target: Any, part: Any, seed: Any, device: Any,
             weights: Any = "attention") -> Request:
    from attnviz.sources.base import Request

    return Request(_text(source, "the source text"), _text(target, "⟨target⟩"), part,
                   _seed(seed), _device(device), weights=weights)


def _text(value: Any, what: str) -> str | None:
    """A text argument as a source takes it; None stays None (no target, or the text a saved
    file holds)."""
    if value is None or isinstance(value, str):
        return None if value is None else valid_utf8(value)
    hint = "; decode bytes first: text.decode('utf-8')" if isinstance(value, bytes) else ""
    optional = " or None" if what.startswith("⟨") else ""
    raise AttnvizError(f"{what} must be a str{optional}, not {type(value).__name__}{hint}")


def _model(value: Any) -> str | None:
    """A model's name; a ``pathlib.Path`` (any ``os.PathLike`` of str) is its path."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if value is None or isinstance(value, str):
        return value
    raise AttnvizError(f"⟨model⟩ must be a name or a path, not {type(value).__name__}: a "
                       "shipped model's name, 'random', a file, or 'hf:NAME'")


def _weights(value: Any) -> AttentionMaps:
    """``value`` when it is AttentionMaps of attention weights (finite, at least 0, rows
    summing to 1 or 0), as saved files are checked: NaN maps gave a ValueError, or a picture
    of nothing."""
    maps = _maps(value)
    try:
        maps.check_weights()
    except ValueError as exc:
        raise AttnvizError(f"these maps are not attention weights: {exc}") from None
    return maps


def _seed(value: Any) -> int:
    """A seed the command line takes too (``--seed``), so that any picture can be made again."""
    if not is_integer(value):
        raise AttnvizError(f"⟨seed⟩ must be an int, not {type(value).__name__}")
    value = int(value)
    if not 0 <= value <= MAX_SEED:
        raise AttnvizError(f"⟨seed⟩ {value} is out of range: give 0 to {MAX_SEED}")
    return value


def _device(value: Any) -> str:
    if not isinstance(value, str) or value not in DEVICES:
        raise AttnvizError(f"device {shown(value)} is unknown; use cpu, cuda or auto",
                           setting="device")
    return value


def _kind(value: Any, more: str) -> str:
    """The maps' name of a kind given as the command line or the maps name it."""
    return kind_named(value, more)


def _one_head(defaults: dict[str, bool], what: str) -> None:
    """An explanation is one head of one layer: every argument that chooses among kinds,
    layers, heads, scales or windows is left as it is (``defaults[name]`` True)."""
    given = [name for name, untouched in defaults.items() if not untouched]
    if given:
        raise AttnvizError(f"{what}, so it takes no {given[0]}: an explanation is one head of "
                           "one layer (explain another with attnviz.explain(..., kind=..., "
                           "layer=..., head=...))")


def _check_cmap(name: Any) -> None:
    from attnviz.render.colors import check

    if not isinstance(name, str):
        raise AttnvizError(f"a colour map is named by a str, not {type(name).__name__}; try "
                           "viridis, magma or cividis")
    check(name)
