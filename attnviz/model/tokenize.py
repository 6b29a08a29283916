"""Text to tokens to ids, at word or character level, with a vocabulary saved beside the model."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3 in every vocabulary
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)

# A word, possibly with an inner apostrophe, or a single punctuation mark.
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
TOKENIZER_KINDS = ("word", "char")


@dataclass(frozen=True)
class Tokenizer:
    """Splits text into tokens: ``word`` splits punctuation off, ``char`` keeps every character."""

    kind: str = "word"  # "word" or "char"
    lowercase: bool = True  # lower-case the text before splitting

    def __post_init__(self) -> None:
        if self.kind not in TOKENIZER_KINDS:
            raise ValueError(f"tokenizer kind must be one of {', '.join(TOKENIZER_KINDS)}, "
                             f"got {self.kind!r}")
        if not isinstance(self.lowercase, bool):
            raise ValueError(f"tokenizer lowercase must be true or false, got {self.lowercase!r}")

    def split(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.kind == "char":
            return list(text.strip())
        return _WORD.findall(text)

    def join(self, tokens: Iterable[str]) -> str:
        """The text of tokens: characters are concatenated, words joined by spaces."""
        return ("" if self.kind == "char" else " ").join(tokens)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, data: Any) -> Tokenizer:
        if not isinstance(data, dict) or set(data) != {"kind", "lowercase"}:
            raise ValueError("the tokenizer must be an object with 'kind' and 'lowercase'")
        return cls(kind=data["kind"], lowercase=data["lowercase"])


class Vocabulary:
    """A fixed list of tokens; the index of a token is its id. Specials come first."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens: list[str] = list(tokens)
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {', '.join(SPECIALS)}")
        if not all(isinstance(t, str) and t for t in self.tokens):
            raise ValueError("vocabulary tokens must be non-empty strings")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]]) -> Vocabulary:
        """Every token seen in ``sequences``, most frequent first (ties in first-seen order)."""
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        return cls([*SPECIALS, *(t for t, _ in counts.most_common() if t not in SPECIALS)])

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; a token outside the vocabulary becomes the unknown id."""
        return [self._ids.get(token, UNK_ID) for token in tokens]

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The tokens that are not in the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(t for t in tokens if t not in self._ids))

    def tokens_of(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]
