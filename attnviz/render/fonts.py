"""Fonts for labels in any script: matplotlib's default font, then installed fonts that have
the characters it lacks.

matplotlib (3.6 and later) falls back glyph by glyph through the families listed in
``font.family``, in the Agg (PNG), SVG and PDF backends alike. This module picks that list:
once per process, only when a label holds a character the default font lacks, and only from
fonts installed on this machine. A Latin label costs a look at its characters, nothing more.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from attnviz.errors import AttnvizWarning

# Families tried first, in this order, when the default font lacks a character: broad
# coverage of the scripts that labels hold most often. Any other installed family is tried
# after these, by name, so a font the list does not know is still found.
PREFERRED = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR",
    "Source Han Sans", "Noto Sans", "Noto Sans Arabic", "Noto Sans Hebrew",
    "Noto Sans Devanagari", "Noto Sans Bengali", "Noto Sans Thai", "Noto Sans Symbols",
    "Noto Sans Symbols2", "Noto Sans Math", "Noto Emoji", "Symbola", "DejaVu Sans",
    "WenQuanYi Zen Hei", "Droid Sans Fallback", "Unifont",
)
# Never a fallback: matplotlib's Last Resort font has a placeholder box for every character
# (matplotlib appends it itself, and a box is what the warning is for), and the fonts it
# ships for mathtext map code points to glyphs of another encoding or to size variants.
NOT_FALLBACKS = ("Last Resort", "STIXNonUnicode", "STIXSize", "cmb10", "cmex10", "cmmi10",
                 "cmr10", "cmss10", "cmsy10", "cmti10", "cmtt10")
LISTED = 8  # characters named in the warning; the rest are counted
# Shown as the way out when no installed font has a character.
INSTALL_HINT = ("fonts-noto-cjk for Chinese, Japanese and Korean, fonts-symbola for emoji, "
                "fonts-noto-core for most other scripts")


@dataclass(frozen=True)
class Candidate:
    """An installed font that may hold characters the default font lacks."""

    family: str
    path: str
    index: int = 0  # the face, in a collection (.ttc) of several


@dataclass(frozen=True)
class FontChoice:
    """What to draw the labels with."""

    families: tuple[str, ...]  # to put after the default font in ``font.family``, in order
    missing: str  # the characters no installed font has (drawn as boxes), as first seen


def choose(text: Iterable[str]) -> FontChoice:
    """The fallback families that draw every character of ``text``, or as many as can be.

    Args:
        text: the strings to be drawn (labels); their characters are what counts.
    """
    in_order = "".join(dict.fromkeys("".join(text)))  # each character once, as first seen
    if in_order.isascii():  # the default font has every printable ASCII character
        return FontChoice((), "")
    from matplotlib import font_manager

    default = font_manager.findfont(font_manager.FontProperties())
    # matplotlib 3.11 returns a FontPath (file and face), earlier versions the file's name.
    path, index = getattr(default, "path", default), getattr(default, "face_index", 0)
    lacking = frozenset(ord(ch) for ch in in_order) - _charmap(str(path), index)
    if not lacking:
        return FontChoice((), "")
    families, missing = _fallbacks(lacking)
    return FontChoice(families, "".join(ch for ch in in_order if ord(ch) in missing))


@lru_cache(maxsize=64)
def _fallbacks(lacking: frozenset[int]) -> tuple[tuple[str, ...], frozenset[int]]:
    families, missing = pick(lacking, installed(), _charmap)
    return tuple(families), frozenset(missing)


def pick(lacking: set[int], candidates: Sequence[Candidate],
         charmap: Callable[[str, int], Collection[int]]) -> tuple[list[str], set[int]]:
    """Families, in the order of ``candidates``, that together cover ``lacking``.

    A family is taken only if it covers a character that the ones before it do not, and
    the search stops as soon as every character is covered.

    Args:
        lacking: code points the default font has no glyph for.
        candidates: the installed fonts, most wanted first.
        charmap: the code points a font file (path, face index) has glyphs for.

    Returns:
        The families to fall back on, and the code points none of them covers.
    """
    left = set(lacking)
    families: list[str] = []
    for candidate in candidates:
        if not left:
            break
        covered = left & set(charmap(candidate.path, candidate.index))
        if covered:
            families.append(candidate.family)
            left -= covered
    return families, left


@lru_cache(maxsize=1)
def installed() -> tuple[Candidate, ...]:
    """One font file per installed family (its regular face), :data:`PREFERRED` first.

    Read from matplotlib's font list, which matplotlib builds once and keeps on disk.
    """
    from matplotlib import font_manager

    best: dict[str, tuple[tuple, Candidate]] = {}
    for entry in font_manager.fontManager.ttflist:
        if entry.name.startswith(NOT_FALLBACKS):
            continue
        weight = entry.weight if isinstance(entry.weight, int) else \
            font_manager.weight_dict.get(entry.weight, 400)
        # Regular over bold, upright over italic, normal over condensed; then by file name,
        # so the choice is the same on every run.
        rank = (entry.style != "normal", abs(weight - 400), entry.stretch != "normal",
                entry.fname, getattr(entry, "index", 0))
        candidate = Candidate(entry.name, entry.fname, getattr(entry, "index", 0))
        if entry.name not in best or rank < best[entry.name][0]:
            best[entry.name] = (rank, candidate)
    order = {family: i for i, family in enumerate(PREFERRED)}
    names = sorted(best, key=lambda name: (order.get(name, len(order)), name))
    return tuple(best[name][1] for name in names)


@cache
def _charmap(path: str, index: int) -> frozenset[int]:
    """The code points a font has glyphs for; empty for a font matplotlib cannot scale
    (a colour-bitmap emoji font) or cannot open."""
    from matplotlib import ft2font

    try:
        font = ft2font.FT2Font(path, face_index=index)
    except (OSError, RuntimeError, ValueError):
        return frozenset()
    if not font.scalable:
        return frozenset()
    return frozenset(font.get_charmap())


def warn_missing(missing: str) -> None:
    """One warning naming the characters that will be boxes, and how to get a font for them."""
    if not missing:
        return
    from matplotlib import get_cachedir

    named = ", ".join(f"{ch} (U+{ord(ch):04X})" for ch in missing[:LISTED])
    more = f" and {len(missing) - LISTED} more" if len(missing) > LISTED else ""
    count = f"{len(missing)} character{'s' if len(missing) > 1 else ''}"
    warnings.warn(
        f"no installed font has {count} of the labels, drawn as boxes in the image: "
        f"{named}{more}; install a font that has them (on Debian or Ubuntu: {INSTALL_HINT}), "
        f"then delete matplotlib's font list {get_cachedir()}/fontlist-*.json so it finds it",
        AttnvizWarning, stacklevel=3)


@contextlib.contextmanager
def glyphs_said() -> Iterator[None]:
    """Silence matplotlib's warning of a glyph missing from the fonts while a figure is
    measured or drawn: :func:`warn_missing` has said so once, in attnviz's words, where
    matplotlib would add a line per character, naming its own source file."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font",
                                category=UserWarning)
        yield
