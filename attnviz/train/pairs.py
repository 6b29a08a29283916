"""Reading ``source<TAB>target`` pair files, with errors that name the file and the line."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from attnviz.config import MAX_PAIR_LINE_CHARS, MAX_PAIRS_FILE_BYTES, MAX_SOURCE_LENGTH
from attnviz.errors import AttnvizError
from attnviz.files import read_regular_file
from attnviz.tokenize import Tokenizer
from attnviz.train.tasks import Example

# Characters refused anywhere in a pairs file: control characters (C0, DEL, C1; the tab is
# the separator, a \r is kept only as part of a \r\n line end), the line and paragraph
# separators that some programs take for line ends and others do not, and a byte-order mark
# past the start of the file (files joined with cat). Kept, they would become tokens that
# show as nothing or move the cursor, and a stray one (a NUL from a binary or UTF-16 file)
# is a mistake the person wants to hear about, at its line. Other invisible characters
# (joiners, direction marks, soft hyphens) are kept: they belong to real text in many
# scripts, and attnviz.text.printable shows them escaped.
_REFUSED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]|\r(?!\n|\Z)")
_WHY = {"\x00": "NUL: a binary or UTF-16 file? save it as UTF-8 text",
        "\r": "a carriage return inside a line: save the file with \\n or \\r\\n line ends",
        "\u2028": "a line separator: end lines with \\n",
        "\u2029": "a paragraph separator: end lines with \\n",
        "\ufeff": "a byte-order mark inside the file: were files joined? remove it"}


def check_one_source(task: str | None, data: Path | None) -> None:
    """Training and evaluation take a built-in task or a pairs file: exactly one of them."""
    if (task is None) == (data is None):
        raise AttnvizError("give either ⟨task⟩ NAME or ⟨data⟩ PAIRS.TSV (one of them)")


def read_pairs(path: Path, tokenizer: Tokenizer, max_target_length: int,
               way_out: str = "shorten it", max_token_chars: int | None = None
               ) -> list[Example]:
    """The pairs of a UTF-8 file, one ``source<TAB>target`` a line; blank lines are skipped.

    The file is read only if it is a regular file of at most ``MAX_PAIRS_FILE_BYTES``; a
    UTF-8 byte-order mark at its start is skipped.

    Raises AttnvizError naming the file and line for a line without a tab, an empty side,
    a refused character (see ``_REFUSED``), a source of more than ``MAX_SOURCE_LENGTH``
    tokens, a target of more than ``max_target_length`` tokens (``way_out`` says what to
    do), or, when ``max_token_chars`` is given, a token longer than that.
    """
    data = read_regular_file(path, MAX_PAIRS_FILE_BYTES, "pairs file",
                             way_out="give a file of source<TAB>target lines",
                             too_large="train on a part of it")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = text_line_of(exc)
        raise AttnvizError(f"{path}:{line}: the file is not UTF-8 text; save it as UTF-8"
                           ) from None
    check_characters(text, str(path))
    pairs = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() and "\t" not in line:
            continue
        if "\t" not in line:
            raise AttnvizError(f"{path}:{number}: no tab between source and target; write "
                               "each pair as source<TAB>target")
        if line.count("\t") > 1:
            raise AttnvizError(f"{path}:{number}: more than one tab; write each pair as "
                               "source<TAB>target, with no tab inside either")
        if len(line) > MAX_PAIR_LINE_CHARS:  # checked before splitting it into words
            raise AttnvizError(f"{path}:{number}: the line has {len(line):,} characters, more "
                               f"than the limit of {MAX_PAIR_LINE_CHARS:,}; write one sentence "
                               "pair a line")
        source, target = line.split("\t")
        source_tokens, target_tokens = tokenizer.split(source), tokenizer.split(target)
        if not source_tokens or not target_tokens:
            raise AttnvizError(f"{path}:{number}: the source or the target is empty")
        if len(source_tokens) > MAX_SOURCE_LENGTH:
            raise AttnvizError(f"{path}:{number}: the source has {len(source_tokens):,} tokens, "
                               f"more than the limit of {MAX_SOURCE_LENGTH}; split it into "
                               "shorter sentences")
        if len(target_tokens) > max_target_length:
            raise AttnvizError(f"{path}:{number}: the target has {len(target_tokens)} tokens, "
                               f"more than the model's maximum of {max_target_length}; "
                               f"{way_out}")
        if max_token_chars is not None:
            longest = max(source_tokens + target_tokens, key=len)
            if len(longest) > max_token_chars:
                raise AttnvizError(
                    f"{path}:{number}: a word of {len(longest):,} characters, more than the "
                    f"limit of {max_token_chars} of a vocabulary token; text without spaces "
                    "(Chinese, Japanese) needs ⟨tokenizer⟩ char, other long runs are best "
                    "left out")
        pairs.append(Example(source, target))
    if not pairs:
        raise AttnvizError(f"{path} holds no pairs; write one source<TAB>target pair a line")
    return pairs


def check_characters(text: str, name: str) -> None:
    """Raise AttnvizError naming ``name:line`` of the first character of ``text`` that a
    pairs file may not hold (see ``_REFUSED``)."""
    refused = _REFUSED.search(text)
    if refused:
        character = refused.group()
        line = text.count("\n", 0, refused.start()) + 1
        why = _WHY.get(character, "a control character: remove it, a pairs file is plain text")
        raise AttnvizError(f"{name}:{line}: refused character U+{ord(character):04X} ({why})")


def text_line_of(error: UnicodeDecodeError) -> int:
    """The 1-based line of the first byte that is not UTF-8."""
    return error.object[: error.start].count(b"\n") + 1
