"""The inputs of a repeated random sequence (:class:`attnviz.sources.base.Repeated`, what the
induction score reads) for a Hugging Face model: the sequence twice, inside the special tokens
the tokenizer puts around a text (BERT's ``[CLS] ... [SEP]``), drawn from the tokens that are
not special; an encoder-decoder's decoder reads its start token, then the same sequence twice.

These ids then go through the same pass as a text's (:mod:`.passes`): attnviz's attention
function, what is kept and the memory budget are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnviz.errors import AttnvizError
from attnviz.sources.base import Repeated
from attnviz.sources.huggingface.config import position_limit
from attnviz.sources.huggingface.prepared import DECODER_SELF, ENCODER_SELF


@dataclass(frozen=True)
class RepeatedIds:
    """What a model reads of a repeated sequence, and where its first copy starts."""

    ids: list[int]  # the encoder's or a decoder-only model's input: specials, r r, specials
    decoder_ids: list[int] | None  # an encoder-decoder's decoder: its start token, r r
    starts: dict[str, int]  # where the first copy starts in each kind's queries


def repeated_ids(config: Any, tokenizer: Any, text: str, ids: list[int], repeated: Repeated,
                 stack: str, decoder_start: int | None) -> RepeatedIds:
    """The ids of ``repeated`` for the model that reads ``text`` as ``ids`` (special tokens
    included), ``stack`` being the kind of its one stack (``encoder_self``,
    ``decoder_self``) or, for an encoder-decoder's both, anything else with the decoder's
    ``decoder_start`` token.

    Raises:
        AttnvizError: the sequence twice is longer than the model's positions, or the
            tokenizer has no ordinary token to draw from.
    """
    before, after = _around(ids, list(tokenizer(text, add_special_tokens=False)["input_ids"]))
    special = set(tokenizer.all_special_ids)
    vocabulary = min(len(tokenizer), getattr(config, "vocab_size", None) or len(tokenizer))
    twice = repeated.ids([i for i in range(vocabulary) if i not in special])  # (2n,)
    full = [*before, *twice, *after]
    if stack in (ENCODER_SELF, DECODER_SELF):
        found = RepeatedIds(full, None, {stack: len(before)})
    else:
        found = RepeatedIds(full, [decoder_start, *twice],
                            {ENCODER_SELF: len(before), DECODER_SELF: 1})
    around = max(len(before) + len(after), 1 if found.decoder_ids else 0)  # besides r r
    limit = position_limit(config)
    if limit is not None and 2 * repeated.length + around > limit:
        raise AttnvizError(f"induction_length {repeated.length} is too long for this model: "
                           f"the sequence twice takes {2 * repeated.length + around:,} "
                           f"positions, and its positions cover at most {limit:,}; give at "
                           f"most {(limit - around) // 2:,}", setting="induction_length")
    return found


def _around(ids: list[int], plain: list[int]) -> tuple[list[int], list[int]]:
    """The special tokens before and after a text's own ``plain`` ids in ``ids`` (the text
    with the tokenizer's specials); none when the plain ids are not found in them."""
    for start in range(len(ids) - len(plain) + 1):
        if plain and ids[start:start + len(plain)] == plain:
            return ids[:start], ids[start + len(plain):]
    return [], []
