"""Reading ``source<TAB>target`` pair files, with errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path

from attnviz.errors import AttnvizError
from attnviz.tokenize import Tokenizer
from attnviz.train.tasks import Example


def check_one_source(task: str | None, data: Path | None) -> None:
    """Training and evaluation take a built-in task or a pairs file: exactly one of them."""
    if (task is None) == (data is None):
        raise AttnvizError("give either --task NAME or --data PAIRS.TSV (one of them)")


def read_pairs(path: Path, tokenizer: Tokenizer, max_target_length: int,
               way_out: str = "shorten it") -> list[Example]:
    """The pairs of a UTF-8 file, one ``source<TAB>target`` a line; blank lines are skipped.

    Raises AttnvizError naming the file and line for a line without a tab, an empty side,
    or a target of more than ``max_target_length`` tokens (``way_out`` says what to do).
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise AttnvizError(f"pairs file {path} does not exist; give a file of "
                           "source<TAB>target lines") from None
    except IsADirectoryError:
        raise AttnvizError(f"pairs file {path} is a directory; give a file of "
                           "source<TAB>target lines") from None
    except OSError as exc:
        raise AttnvizError(f"cannot read pairs file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = text_line_of(exc)
        raise AttnvizError(f"{path}:{line}: the file is not UTF-8 text; save it as UTF-8"
                           ) from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() and "\t" not in line:
            continue
        if "\t" not in line:
            raise AttnvizError(f"{path}:{number}: no tab between source and target; write "
                               "each pair as source<TAB>target")
        if line.count("\t") > 1:
            raise AttnvizError(f"{path}:{number}: more than one tab; write each pair as "
                               "source<TAB>target, with no tab inside either")
        source, target = line.split("\t")
        if not tokenizer.split(source) or not tokenizer.split(target):
            raise AttnvizError(f"{path}:{number}: the source or the target is empty")
        length = len(tokenizer.split(target))
        if length > max_target_length:
            raise AttnvizError(f"{path}:{number}: the target has {length} tokens, more than "
                               f"the model's maximum of {max_target_length}; {way_out}")
        pairs.append(Example(source, target))
    if not pairs:
        raise AttnvizError(f"{path} holds no pairs; write one source<TAB>target pair a line")
    return pairs


def text_line_of(error: UnicodeDecodeError) -> int:
    """The 1-based line of the first byte that is not UTF-8."""
    return error.object[: error.start].count(b"\n") + 1
