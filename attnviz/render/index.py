"""The index page of an export: each pair's texts and its files, pictures shown and the others
linked, all beside the page (relative links only; nothing is fetched from elsewhere)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from attnviz.io.text import printable, shorten

SHOWN = ("png", "svg")  # formats a browser shows as a picture
TEXT_CHARS = 400  # longer texts are cut, with an ellipsis


@dataclass(frozen=True)
class Entry:
    """One line of the pairs file, as the index lists it."""

    number: int  # the line, counting from 1
    source: str
    target: str | None  # None: the model has not written it yet
    target_generated: bool
    files: dict[str, str]  # format -> file name beside the index; empty: not done
    notes: tuple[str, ...] = ()  # warnings of the run that drew it
    error: str | None = None  # why it could not be drawn


def to_bytes(title: str, entries: Sequence[Entry]) -> bytes:
    """The index as UTF-8 HTML; every text from outside is escaped."""
    rows = "\n".join(_row(entry) for entry in entries)
    done = sum(bool(entry.files) for entry in entries)
    return _PAGE.format(title=_text(title), done=done, count=len(entries), rows=rows
                        ).encode("utf-8")


def _row(entry: Entry) -> str:
    if entry.target is None:
        target = "<i>(to be written)</i>"
    else:
        target = _text(entry.target) + (" <i>(written by the model)</i>"
                                        if entry.target_generated else "")
    links = []
    for fmt, name in entry.files.items():
        name = html.escape(name, quote=True)
        if fmt in SHOWN:
            links.append(f'<a href="{name}"><img src="{name}" alt="line {entry.number}" '
                         'loading="lazy"></a>')
        else:
            links.append(f'<a href="{name}">{html.escape(fmt)}</a>')
    notes = "".join(f'<div class="note">{_text(note)}</div>' for note in entry.notes)
    if entry.error:
        notes += f'<div class="error">{_text(entry.error)}</div>'
    return (f'<tr><td class="n">{entry.number}</td><td>{_text(entry.source)}</td>'
            f"<td>{target}</td><td>{' '.join(links) or '<i>not done</i>'}{notes}</td></tr>")


def _text(text: str) -> str:
    return html.escape(printable(shorten(text, TEXT_CHARS)), quote=True)


# img-src 'self' file:: the pictures beside the page, and nothing else.
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' file:; \
style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.2em 2em; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border-top: 1px solid #ddd; padding: .4em .6em; vertical-align: top; text-align: left; }}
td.n {{ color: #666; text-align: right; }}
img {{ max-width: 480px; max-height: 240px; display: block; margin-bottom: .3em; }}
.note {{ color: #8a6d00; font-size: 12px; }}
.error {{ color: #b00020; font-size: 12px; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{done} of {count} pairs done. Each line's files are named by its line number.</p>
<table>
<tr><th>line</th><th>source</th><th>target</th><th>files</th></tr>
{rows}
</table>
</body>
</html>
"""
