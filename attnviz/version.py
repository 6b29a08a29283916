"""The version of attnviz: one place, read by the package and by its build; and the versions
of the libraries that compute maps, which the render cache keys on."""

from __future__ import annotations

__version__ = "0.1.0"


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (say "torch"), read from its metadata
    without importing it; None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
