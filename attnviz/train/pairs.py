"""Training pairs from a pairs file (:func:`attnviz.io.pairs.read_pairs`), checked against the
limits of training: the tokens of each side."""

from __future__ import annotations

from pathlib import Path

from attnviz.errors import AttnvizError
from attnviz.io.pairs import read_pairs
from attnviz.io.text import printable
from attnviz.model.tokenize import Tokenizer
from attnviz.train.options import MAX_SOURCE_LENGTH
from attnviz.train.tasks import Example


def check_one_source(task: str | None, data: Path | None) -> None:
    """Training and evaluation take a built-in task or a pairs file: exactly one of them."""
    if (task is None) == (data is None):
        raise AttnvizError("give either ⟨task⟩ NAME or ⟨data⟩ PAIRS.TSV (one of them)")


def read_examples(path: Path, tokenizer: Tokenizer, max_target_length: int,
                  way_out: str = "shorten it", max_token_chars: int | None = None
                  ) -> list[Example]:
    """The pairs of a pairs file whose every line holds a source and a target, as examples.

    Raises AttnvizError naming the file and line for what :func:`read_pairs` refuses, a
    source of more than ``MAX_SOURCE_LENGTH`` tokens, a target of more than
    ``max_target_length`` tokens (``way_out`` says what to do), or, when ``max_token_chars``
    is given, a token longer than that.
    """
    name = printable(str(path))
    examples = []
    for pair in read_pairs(path, targets=True):
        where = f"{name}:{pair.number}"
        source_tokens, target_tokens = tokenizer.split(pair.source), tokenizer.split(pair.target)
        if len(source_tokens) > MAX_SOURCE_LENGTH:
            raise AttnvizError(f"{where}: the source has {len(source_tokens):,} tokens, more "
                               f"than the limit of {MAX_SOURCE_LENGTH}; split it into shorter "
                               "sentences")
        if len(target_tokens) > max_target_length:
            raise AttnvizError(f"{where}: the target has {len(target_tokens)} tokens, more than "
                               f"the model's maximum of {max_target_length}; {way_out}")
        if max_token_chars is not None:
            longest = max(source_tokens + target_tokens, key=len)
            if len(longest) > max_token_chars:
                raise AttnvizError(
                    f"{where}: a word of {len(longest):,} characters, more than the limit of "
                    f"{max_token_chars} of a vocabulary token; text without spaces (Chinese, "
                    "Japanese) needs ⟨tokenizer⟩ char, other long runs are best left out")
        examples.append(Example(pair.source, pair.target))
    return examples
