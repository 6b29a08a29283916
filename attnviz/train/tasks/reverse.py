"""The words of an English sentence in reverse order: an anti-diagonal cross-attention."""

from __future__ import annotations

import random

from attnviz.model.tokenize import Tokenizer
from attnviz.train.tasks import Example, Task
from attnviz.train.tasks.translate import TASK as TRANSLATE

WORDS = TRANSLATE.source_tokens
MIN_WORDS, MAX_WORDS = 3, 12


def sample(rng: random.Random) -> Example:
    words = [rng.choice(WORDS) for _ in range(rng.randint(MIN_WORDS, MAX_WORDS))]
    n = len(words)
    return Example(" ".join(words), " ".join(reversed(words)),
                   tuple(n - 1 - i for i in range(n)))


TASK = Task(
    name="reverse",
    description="words in reverse order",
    tokenizer=Tokenizer("word"),
    sample=sample,
    source_tokens=WORDS,
    target_tokens=WORDS,
    max_target_length=MAX_WORDS,
)
