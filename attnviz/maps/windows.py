"""Windows: positions A to B-1 of the queries and of the keys of a long map, as a view onto
the whole map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.io.text import printable
from attnviz.maps.kinds import TITLES

Window = Union[str, tuple, slice, None]  # "A:B", (A, B) or slice(A, B): positions A to B-1


def parse_window(value: Window, setting: str = "window") -> tuple[int, int | None] | None:
    """``"A:B"``, ``(A, B)`` or ``slice(A, B)`` as ``(start, stop)``: positions A to B-1,
    counting from 0, as a Python slice (either end may be left out: ``":64"``, ``"100:"``).
    None: no window. ``setting`` names the option in errors."""
    if value is None:
        return None
    way = ("give A:B, positions A to B-1 counting from 0 (for example 0:64, or 100: for "
           "position 100 to the end)")
    if isinstance(value, slice):
        if value.step not in (None, 1):
            raise AttnvizError(f"{setting} {value!r} has a step; {way}", setting=setting)
        value = (value.start, value.stop)
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 2 or not all((p.strip().isdigit() and p.isascii()) or not p.strip()
                                      for p in parts):
            raise AttnvizError(f"{setting} {printable(value)!r} is not a range: {way}",
                               setting=setting)
        value = tuple(int(p) if p.strip() else None for p in parts)
    if not isinstance(value, tuple) or len(value) != 2 or not all(
            v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
            for v in value):
        raise AttnvizError(f"{setting} {printable(repr(value))} is not a range: {way}",
                           setting=setting)
    start, stop = (None if v is None else int(v) for v in value)
    start = start or 0
    if start < 0 or (stop is not None and stop <= start):
        shown = f"{start}:{'' if stop is None else stop}"
        raise AttnvizError(f"{setting} {shown} selects no position: {way}", setting=setting)
    return start, stop


@dataclass(frozen=True)
class Span:
    """Positions start to stop-1 (stop None: to the end), and the setting that asked for it."""

    start: int
    stop: int | None
    setting: str

    @classmethod
    def of(cls, value: Window, setting: str) -> Span | None:
        parsed = parse_window(value, setting)
        return None if parsed is None else cls(*parsed, setting)

    def clip(self, count: int, kind: str, side: str) -> tuple[int, int]:
        """The window's start and stop within ``count`` positions of a map of ``kind`` (a
        stop beyond the end is the end); AttnvizError when it starts beyond the end."""
        if self.start >= count:
            raise AttnvizError(
                f"{self.setting} starts at position {self.start}, but the "
                f"{TITLES[kind].lower()} has {count} {side} (positions 0 to "
                f"{count - 1}); choose a window within them, or another kind",
                setting=self.setting)
        return self.start, count if self.stop is None else min(self.stop, count)


def spans(window: Window, window_query: Window, window_key: Window
             ) -> tuple[Span | None, Span | None]:
    """The windows of the rows and of the columns: each side's own, else ``window``; each
    remembers the setting it came from, for its errors."""
    rows = Span.of(window if window_query is None else window_query,
                      "window" if window_query is None else "window_query")
    columns = Span.of(window if window_key is None else window_key,
                         "window" if window_key is None else "window_key")
    return rows, columns
