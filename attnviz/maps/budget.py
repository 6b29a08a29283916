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
