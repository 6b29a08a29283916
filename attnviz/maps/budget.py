"""The memory attention maps take, checked before a model runs: a text whose maps would not fit
is refused with how far to cut it."""

from __future__ import annotations

from attnviz.errors import AttnvizError

# The maps one run may compute, in memory; their copies in files and drawings come on top.
# Sources refuse a text whose maps would be larger, before computing anything.
MAX_MAP_BYTES = 1024**3


def check_size(heads: int, encoder_layers: int, decoder_layers: int, source_length: int,
               target_length: int, *, text: str = "source") -> None:
    """Refuse, before a model runs, a text whose maps would take more than
    :data:`MAX_MAP_BYTES`, saying how far to cut it.

    Args:
        heads: H, the most heads a layer has.
        encoder_layers, decoder_layers: L_enc and L_dec (0 where the model has none).
        source_length, target_length: S and T, the encoder's and the decoder's inputs
            (0 where there is none; T the longest a model may write when it writes it).
        text: which side the person's text decides, and so which one to cut: "source", or
            "target" for a decoder-only model.

    The maps hold 4 H (L_enc S² + L_dec (T² + T S)) bytes of float32.
    """
    def weights(s: int, t: int) -> int:
        return encoder_layers * s * s + decoder_layers * (t * t + t * s)

    needed = 4 * heads * weights(source_length, target_length)
    if needed <= MAX_MAP_BYTES:
        return
    budget = MAX_MAP_BYTES / (4 * heads)

    def longest(side: str) -> int:
        """The most tokens ``side`` may have, the other side as it is: the positive root of
        a x² + b x + c = budget."""
        other = target_length if side == "source" else source_length
        a = encoder_layers if side == "source" else decoder_layers
        b = decoder_layers * other
        c = decoder_layers * other * other if side == "source" else \
            encoder_layers * other * other
        if a == 0:
            return int((budget - c) / b) if b else 0
        room = b * b + 4 * a * (budget - c)
        return max(0, int((-b + max(room, 0.0) ** 0.5) / (2 * a)))

    side = text
    if longest(side) < 1:  # the other side alone is too long: that is the one to cut
        side = "target" if text == "source" else "source"
    length = source_length if side == "source" else target_length
    subject = "the text" if side == text else "\u27e8target\u27e9" if side == "target" \
        else "the source text"
    raise AttnvizError(f"{subject} is too long: {length:,} tokens make attention maps of "
                       f"{needed / 1024**3:.1f} GB, and attnviz keeps them under "
                       f"{MAX_MAP_BYTES / 1024**3:.0f} GB; with this model, cut it to at most "
                       f"{max(longest(side), 1):,} tokens")


# --- What a model that records its maps layer by layer may keep -----------------------------

# Of the memory the machine has free, the share the kept maps and one layer's work may take:
# the rest is for the model's own activations and whatever else runs.
SHARE_OF_FREE = 0.9
MEMORY_SETTING = "memory"  # the setting that overrides what the machine says it has, in GB


def free_memory() -> int | None:
    """The bytes this machine can give now without swapping (Linux's ``MemAvailable``);
    None where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(override_gb: float | None) -> tuple[int | None, str]:
    """The bytes kept maps may take, and where that figure comes from, in words: the
    ``override_gb`` given, else :data:`SHARE_OF_FREE` of the machine's free memory (None
    when the machine does not say: nothing is refused then)."""
    if override_gb is not None:
        if not override_gb > 0:
            raise AttnvizError(f"memory {override_gb} is not an amount: give the gigabytes "
                               "the maps may take, such as 8", setting=MEMORY_SETTING)
        return int(override_gb * 1024**3), f"the \u27e8{MEMORY_SETTING}\u27e9 given"
    free = free_memory()
    if free is None:
        return None, "unknown"
    return int(free * SHARE_OF_FREE), "this machine's free memory (MemAvailable), less a tenth"


def check_kept(kept: int, working: int, override_gb: float | None, *, what: str,
               longest: int | None, ways_out: list[str]) -> None:
    """Refuse, before the forward pass, maps whose kept part and one layer's work would not
    fit in :func:`memory_limit`.

    Args:
        kept: the bytes of the maps kept (every kept layer, head and kind).
        working: the bytes one layer's computation holds besides them (its scores).
        override_gb: the limit the person set, or None for the machine's.
        what: the kept maps in words ("30 layers x 9 heads of 4,096 x 4,096 in float32").
        longest: the most tokens of the text that would fit as the rest is, or None.
        ways_out: the other ways out, in words (fewer layers, lower precision), each
            starting with a verb.
    """
    limit, whence = memory_limit(override_gb)
    if limit is None or kept + working <= limit:
        return
    ways = [*ways_out, *([f"cut the text to at most {longest:,} tokens"] if longest else []),
            f"set \u27e8{MEMORY_SETTING}\u27e9 to allow more"]
    raise AttnvizError(f"the attention maps to keep take {_gb(kept)} ({what}) and their layer "
                       f"by layer work {_gb(working)} more, above the {_gb(limit)} of {whence}; "
                       f"{', '.join(ways[:-1])}, or {ways[-1]}")


def _gb(size: int) -> str:
    if size >= 0.1 * 1024**3:
        return f"{size / 1024**3:.1f} GB"
    return f"{size / 1024**2:.0f} MB" if size >= 1024**2 else f"{size:,} B"
