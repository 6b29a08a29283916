"""Text that comes from outside (sentences, vocabularies, paths) made safe to show a person.

Every string that reaches a terminal or a picture from a file, an argument or a model passes
through :func:`printable`: a control character (an escape sequence, a bell, a bidi override)
is shown escaped, as ``repr`` shows it, never sent raw to the terminal.
"""

from __future__ import annotations

_KEPT = frozenset("\u200c\u200d")  # zero-width (non-)joiners: parts of emoji and scripts
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
    """A token as a label: whitespace made visible (a space is shown as ␣), the rest printable."""
    return printable(token.translate(_VISIBLE_WHITESPACE))


def shorten(label: str, width: int) -> str:
    """``label`` cut to ``width`` characters, the last one an ellipsis when it was cut."""
    return label if len(label) <= width else label[: width - 1] + "…"


def valid_utf8(text: str) -> str:
    """``text`` with every lone surrogate (what Python makes of bytes that were not UTF-8 in
    a command-line argument) replaced by U+FFFD, so that it can be written as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
