"""attnviz: see the attention inside transformers.

``attnviz.trace`` turns a sentence into :class:`AttentionMaps` (from attnviz's own models,
saved maps, or Hugging Face models); ``attnviz.plot`` draws them as a matplotlib Figure, and
``attnviz.page`` writes them as an HTML page to explore.
Importing attnviz is cheap: torch and matplotlib are imported when they are used.
"""

from __future__ import annotations

import sys

from attnviz.version import __version__

# Type checkers read this name as True. Not `from typing import TYPE_CHECKING`: the attnviz
# command imports this package before it can set its Ctrl-C handler (attnviz.cli.entry), and
# typing would be more than half of that import (3 of 5 ms here).
TYPE_CHECKING = False

__all__ = ["AttentionMaps", "Atlas", "AttnvizError", "AttnvizWarning", "Explanation",
           "Provenance", "__version__", "explain", "heads", "page", "plot", "rollout", "trace"]

if TYPE_CHECKING:
    from typing import Any

    from attnviz.api import explain, heads, page, plot, trace
    from attnviz.errors import AttnvizError, AttnvizWarning
    from attnviz.maps.atlas import Atlas
    from attnviz.maps.data import AttentionMaps, Provenance
    from attnviz.maps.explanation import Explanation
    from attnviz.maps.rollout import rollout

_LAZY = {"trace": "attnviz.api", "plot": "attnviz.api", "explain": "attnviz.api",
         "page": "attnviz.api", "heads": "attnviz.api", "rollout": "attnviz.maps.rollout",
         "Atlas": "attnviz.maps.atlas",
         "AttentionMaps": "attnviz.maps.data", "Provenance": "attnviz.maps.data",
         "Explanation": "attnviz.maps.explanation",
         "AttnvizError": "attnviz.errors", "AttnvizWarning": "attnviz.errors"}


def __getattr__(name: str) -> Any:
    """The public names, imported when first used (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, and the package's own (``__version__``...), not its helpers."""
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})


def _show_in_notebooks() -> None:
    """In IPython (Jupyter), AttentionMaps and an Explanation display as their interactive view
    (``text/html``: ``attnviz.page(..., embed=True)``), with their picture beside it
    (``image/png``) for the front ends that run no script, and their short repr as text.

    Registered by name with IPython's formatters, IPython's way to give a type its display
    without importing it: nothing is imported until one is shown, and the terminal's IPython,
    which shows text only, never draws them. Outside IPython this does nothing. (Not
    ``_repr_html_`` methods: the classes live in ``attnviz.maps``, below the renderers, which
    no module there may import; see ``attnviz/layers.py``.)
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") \
        else None
    if shell is None:
        return
    formatters = shell.display_formatter.formatters
    for module, name in (("attnviz.maps.data", "AttentionMaps"),
                         ("attnviz.maps.explanation", "Explanation")):
        formatters["text/html"].for_type_by_name(module, name, _html)
        formatters["image/png"].for_type_by_name(module, name, _png)


def _html(shown: Any) -> str | None:
    return _shown(shown, "page", embed=True)


def _png(shown: Any) -> bytes | None:
    return _shown(shown, "png")


def _shown(shown: Any, how: str, **options: Any) -> Any:
    """``attnviz.api``'s ``how`` of ``shown``, or None (with a warning saying why) where attnviz
    refuses it, such as maps too large for a page: the notebook shows what it can instead."""
    import warnings

    from attnviz import api
    from attnviz.errors import AttnvizError, AttnvizWarning

    try:
        return getattr(api, how)(shown, **options)
    except AttnvizError as error:
        what = "interactive view" if how == "page" else "picture"
        warnings.warn(f"attnviz shows no {what} of this: {error}", AttnvizWarning, stacklevel=2)
        return None


_show_in_notebooks()
