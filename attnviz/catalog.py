"""Which model a ``--model`` value means: a shipped model's name, ``random``, or a file path.

Needs no torch, so the render cache can tell which file a run would use without loading it.
"""

from __future__ import annotations

from pathlib import Path

from attnviz.errors import AttnvizError

RANDOM = "random"  # a randomly initialised model, vocabulary built from the given text
DEFAULT_MODEL = "translate"  # shipped in samples/models, trained by `attnviz train`
SHIPPED_DIRS = (
    Path(__file__).parent / "samples" / "models",  # inside an installed wheel
    Path(__file__).parent.parent / "samples" / "models",  # in a source checkout
)


def shipped_models() -> dict[str, Path]:
    """The models shipped with attnviz, by name."""
    found: dict[str, Path] = {}
    for folder in SHIPPED_DIRS:
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                found.setdefault(path.stem, path)
    return found


def resolve(spec: str | None) -> Path | None:
    """The model file ``spec`` names, or None for the random model.

    A bare word that is neither a shipped name nor an existing file is an unknown name;
    anything else is a path, checked when it is loaded.
    """
    spec = spec or DEFAULT_MODEL
    if spec == RANDOM:
        return None
    shipped = shipped_models()
    if spec in shipped:
        return shipped[spec]
    path = Path(spec)
    if not path.exists() and path.suffix == "" and "/" not in spec:
        names = ", ".join([RANDOM, *shipped])
        raise AttnvizError(f"unknown model {spec!r}; use one of {names}, or the path of a "
                           "model file")
    return path
