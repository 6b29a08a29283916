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

__all__ = ["AttentionMaps", "AttnvizError", "AttnvizWarning", "Explanation", "Provenance",
           "__version__", "explain", "page", "plot", "rollout", "trace"]

if TYPE_CHECKING:
    from typing import Any

    from attnviz.api import explain, page, plot, trace
    from attnviz.errors import AttnvizError, AttnvizWarning
    from attnviz.maps.data import AttentionMaps, Provenance
    from attnviz.maps.explanation import Explanation
    from attnviz.maps.rollout import rollout

_LAZY = {"trace": "attnviz.api", "plot": "attnviz.api", "explain": "attnviz.api",
         "page": "attnviz.api", "rollout": "attnviz.maps.rollout",
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
    """In IPython (Jupyter), AttentionMaps display as the picture ``plot`` draws of them.

    Registered by name, so that nothing is imported until maps are shown; outside IPython
    this does nothing.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") \
        else None
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type_by_name("attnviz.maps.data", "AttentionMaps", _png)


def _png(maps: Any) -> bytes:
    from attnviz.api import png

    return png(maps)


_show_in_notebooks()
