"""Token labels of a Hugging Face tokenizer, as a person reads them: one label per token."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

SPACE_MARK = "\u2581"  # SentencePiece's word-start mark, "▁"


def source_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The labels of the encoder's input ids.

    A tokenizer with separate source and target vocabularies (Marian's ``separate_vocabs``)
    turns every id into a token through its target vocabulary; the encoder's ids are read
    through its source vocabulary instead.
    """
    vocabulary = getattr(tokenizer, "encoder", None)
    if not getattr(tokenizer, "separate_vocabs", False) or not isinstance(vocabulary, dict):
        return token_labels(tokenizer, ids)
    tokens_of = {index: token for token, index in vocabulary.items()}
    tokens = [tokens_of[i] if i in tokens_of else tokenizer.convert_ids_to_tokens(i)
              for i in ids]
    return readable(tokens, _is_byte_level(tokenizer), set(tokenizer.all_special_tokens))


def token_labels(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The tokenizer's own tokens of ``ids``, readable: see :func:`readable`."""
    special = set(tokenizer.all_special_tokens)
    return readable(tokenizer.convert_ids_to_tokens(list(ids)), _is_byte_level(tokenizer),
                    special)


def readable(tokens: Sequence[str], byte_level: bool, special: set[str] = frozenset()
             ) -> list[str]:
    """Sub-word tokens as a person reads them, one label per token (the axes follow the
    tokens exactly).

    A byte-level BPE token (GPT-2, RoBERTa, BART) spells bytes as characters: ``Ġ`` is a
    space, ``Ċ`` a newline; they are decoded, and a token that holds part of a character's
    UTF-8 bytes shows them as ``\\xNN``. SentencePiece's ``▁`` (Marian, T5, XLM-R) marks a
    space, and becomes one. Special tokens (``[CLS]``, ``</s>``, ``<pad>``) stay as they are;
    WordPiece's ``##`` (BERT) too, being readable already. The renderers show a space as ␣.
    """
    if not byte_level:
        return [token if token in special else token.replace(SPACE_MARK, " ")
                for token in tokens]
    return [token if token in special else _decode_bytes(token) for token in tokens]


@functools.cache
def _byte_of_char() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's ``bytes_to_unicode``, inverted): printable Latin-1
    bytes stand for themselves, the other bytes for the characters from U+0100 on."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in kept]
    chars = {chr(b): b for b in kept}
    chars.update({chr(256 + n): b for n, b in enumerate(moved)})
    return chars


def _decode_bytes(token: str) -> str:
    table = _byte_of_char()
    if not all(ch in table for ch in token):
        return token  # an added token, spelt as it is read
    return bytes(table[ch] for ch in token).decode("utf-8", errors="backslashreplace")


def _is_byte_level(tokenizer: Any) -> bool:
    """Whether a (fast) tokenizer spells bytes as characters: its decoder or pre-tokenizer
    is ByteLevel. Python tokenizers (SentencePiece ones, such as Marian's) are not."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [getattr(backend, name, None) for name in ("decoder", "pre_tokenizer")]
    return any(part is not None and b'"ByteLevel"' in part.__getstate__() for part in parts)
