"""Text that comes from outside (sentences, vocabularies, paths) made safe to show a person.

Every string that reaches a terminal or a picture from a file, an argument or a model passes
through :func:`printable`: a control character (an escape sequence, a bell, a bidi override)
is shown escaped, as ``repr`` shows it, never sent raw to the terminal.
"""

from __future__ import annotations

import unicodedata

from rich.cells import cell_len

_KEPT = frozenset("\u200c\u200d")  # zero-width (non-)joiners: parts of emoji and scripts
# The longest label, in characters: a token longer than that is shown cut, ending with …
# (its whole text stays in the maps, their files and the provenance). Pictures show 24
# columns of a label, the terminal 12 and a page's tooltip a line; one token of 20 million
# characters took 22 s to the terminal, 55 s to PNG, and was stored twice in a page.
MAX_LABEL_CHARS = 256
_VISIBLE_WHITESPACE = str.maketrans({" ": "␣", "\t": "⇥", "\n": "⏎"})


def printable(text: str) -> str:
    """``text`` with every character that is not printable written as an escape (``\\x1b``).

    Letters, marks, symbols, punctuation and the plain space of any script stay as they are.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in _KEPT else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def display_label(token: str) -> str:
    """A token as a label: whitespace made visible (a space is shown as ␣), the rest printable.

    An empty token is shown as ``''`` (as ``repr`` shows it), and a token that starts with a
    combining mark gets a dotted circle to sit on (◌́), the way Unicode charts show a lone mark:
    otherwise the mark would join whatever is drawn before it, or take no room at all.
    """
    if not token:
        return "''"
    cut = len(token) > MAX_LABEL_CHARS
    label = printable(token[:MAX_LABEL_CHARS].translate(_VISIBLE_WHITESPACE))
    if unicodedata.combining(label[0]) or unicodedata.category(label[0]) in ("Mn", "Mc", "Me"):
        label = "\u25cc" + label
    return label + "…" if cut else label


def columns(text: str) -> int:
    """The terminal columns ``text`` takes: two for a Chinese character or an emoji, none for
    a combining mark (as rich, which draws attnviz's terminal, measures it)."""
    return cell_len(text)


def clusters(text: str) -> list[str]:
    """``text`` as the pieces a terminal draws in one place: each character with the
    zero-width characters after it (combining marks, joiners, variation selectors)."""
    pieces: list[str] = []
    for ch in text:
        if pieces and cell_len(ch) == 0:
            pieces[-1] += ch
        else:
            pieces.append(ch)
    return pieces


def shorten(label: str, width: int) -> str:
    """``label`` cut to at most ``width`` terminal columns, the last one an ellipsis when it
    was cut.

    Columns, not characters: a Chinese character or an emoji takes two (measured as rich
    measures it, :func:`rich.cells.cell_len`), a combining mark none, and a mark is never
    cut from its letter.
    """
    # A character takes at most two columns, and a long text needs no more than its start:
    # measured whole, a text of millions of characters took seconds (zero-width characters
    # past the start, a mark on its letter aside, are cut with the rest).
    room = 4 * max(width, 0) + 16
    cut = len(label) > room
    label = label[:room] if cut else label
    if not cut and cell_len(label) <= width:
        return label
    if width <= 0:
        return ""
    kept: list[str] = []
    used = 0
    for piece in clusters(label):
        size = cell_len(piece)
        if used + size > width - 1:  # leave one column for the ellipsis
            break
        kept.append(piece)
        used += size
    while kept and cell_len("".join(kept)) > width - 1:  # a join can be wider than its parts
        kept.pop()
    return "".join(kept) + "…"


def valid_utf8(text: str) -> str:
    """``text`` with every lone surrogate (what Python makes of bytes that were not UTF-8 in
    a command-line argument) replaced by U+FFFD, so that it can be written as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


def rounded(value: float, decimals: int) -> str:
    """``value`` to ``decimals`` places, as a person writes it: a value that rounds to zero
    is ``0.0``, never ``-0.0`` (a score of -0.01 shown to one place)."""
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text
