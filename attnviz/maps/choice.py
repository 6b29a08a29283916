"""Which kind, layer and head a person asked for, checked once, in the same words wherever
they are asked for (a picture, a page, a rollout, an explanation, the Python API).

A setting is named ``⟨kind⟩``, ``⟨layer⟩``, ``⟨head⟩`` in messages, so that the command line
calls it by its flag and the library by its keyword (see :class:`attnviz.errors.AttnvizError`).
"""

from __future__ import annotations

from typing import Any

from attnviz.errors import AttnvizError
from attnviz.io.text import printable, shorten
from attnviz.maps.kinds import KIND_NAMES, KINDS, TITLES


def shown(value: Any) -> str:
    """``value`` as a message quotes it: its repr, printable and at most 40 columns."""
    return printable(shorten(repr(value), 40))


def kind_named(value: Any, more: str = "") -> str:
    """The maps' name of a kind given by any of its names (``self`` or ``decoder_self``);
    ``more`` names what else the caller takes (``", or all"``)."""
    if not isinstance(value, str) or value not in KIND_NAMES:
        raise AttnvizError(f"kind {shown(value)} is not a kind of attention; use one of "
                           f"{', '.join(KIND_NAMES)}{more}", setting="kind")
    return KIND_NAMES[value]


def check_present(kinds: tuple[str, ...], kind: str) -> None:
    """Refuse a kind that maps holding ``kinds`` lack. Named by its title, not its key: the
    command line calls encoder_self "--kind encoder"."""
    if kind not in kinds:
        held = ", ".join(TITLES[k].lower() for k in kinds)
        raise AttnvizError(f"{TITLES[kind]} is not in these maps: they hold {held}; choose "
                           "another \u27e8kind\u27e9", setting="kind")


def index(value: Any, setting: str, words: str, one: str = "", *, none: bool = True,
          also: tuple[str, ...] = ()) -> Any:
    """``value`` if it is an index (an int, a numpy integer), None (where ``none``) or one of
    ``also`` (``"all"``, ``"mean"``); else AttnvizError naming what ``setting`` takes
    (``words``: ``"(0, 1, ...) or 'all'"``) and, after it, ``one``."""
    if (value is None and none) or (isinstance(value, str) and value in also):
        return value
    if is_integer(value):
        return int(value)
    raise AttnvizError(f"{setting} {shown(str(value))} is not a {setting}: give an index "
                       f"{words}" + (f"; {one}" if one else ""), setting=setting)


def is_integer(value: Any) -> bool:
    """An int or a numpy integer, not a bool."""
    return (isinstance(value, int) or type(value).__module__ == "numpy"
            and hasattr(value, "dtype") and value.dtype.kind in "iu" and value.ndim == 0) \
        and not isinstance(value, bool)


def check_layer(layer: int, layers: int, kind: str) -> int:
    """``layer`` if the kind's ``layers`` layers hold it, counting from 0."""
    if not 0 <= layer < layers:
        raise AttnvizError(f"layer {layer} is out of range: the {TITLES[kind].lower()} has "
                           f"layers 0 to {layers - 1}", setting="layer")
    return layer


def check_head(head: int, heads: int, whose: str = "these maps have",
               tail: str = ", or the mean of all") -> int:
    """``head`` if there are ``heads`` heads to hold it, counting from 0."""
    if not 0 <= head < heads:
        raise AttnvizError(f"head {head} is out of range: {whose} heads 0 to {heads - 1}{tail}",
                           setting="head")
    return head


def check_kind(kind: Any) -> str:
    """The maps' own name of ``kind``, given by any of its names (see :func:`kind_named`)."""
    return kind if isinstance(kind, str) and kind in KINDS else kind_named(kind)
