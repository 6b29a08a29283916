"""The pairs file: one ``source<TAB>target`` a line (or, where a model may write the target,
the source alone), UTF-8, read whole, with errors that name the file and the line.
``attnviz train``, ``eval`` and ``export`` read it with :func:`read_pairs`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attnviz.errors import AttnvizError
from attnviz.io.reading import read_regular_file
from attnviz.io.text import printable

MAX_PAIRS_FILE_BYTES = 256 * 2**20  # a pairs file is read whole and split into words: a
#   128 MiB file of 2.3 million short pairs took 47 s and 1.4 GB to read and train 3 steps
#   (attnviz train --steps 3, a file written like the 50 MB one of issue 7)
MAX_PAIR_LINE_CHARS = 2**20  # characters in one line of a pairs file. A legitimate pair is
#   far shorter (256 source and 1,024 target tokens of 128 characters make 164k); splitting
#   a 128 MiB line into words took 4 GB before its length could be refused.
MORE_NAMED = 10  # bad lines named after the first one
# The way out, as each reader words it: training needs both sides of every pair; an export
# lets the model write a missing target.
PAIRS = "write each pair as source<TAB>target"
LINES = ("write one pair a line: source<TAB>target, or the source alone to let the model "
         "write the target")

# Characters refused anywhere in a pairs file: control characters (C0, DEL, C1; the tab is
# the separator, a \r is kept only as part of a \r\n line end), the line and paragraph
# separators that some programs take for line ends and others do not, and a byte-order mark
# past the start of the file (files joined with cat). Kept, they would become tokens that
# show as nothing or move the cursor, and a stray one (a NUL from a binary or UTF-16 file)
# is a mistake the person wants to hear about, at its line. Other invisible characters
# (joiners, direction marks, soft hyphens) are kept: they belong to real text in many
# scripts, and attnviz.io.text.printable shows them escaped.
_REFUSED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]|\r(?!\n|\Z)")
_WHY = {"\x00": "NUL: a binary or UTF-16 file? save it as UTF-8 text",
        "\r": "a carriage return inside a line: save the file with \\n or \\r\\n line ends",
        "\u2028": "a line separator: end lines with \\n",
        "\u2029": "a paragraph separator: end lines with \\n",
        "\ufeff": "a byte-order mark inside the file: were files joined? remove it"}


@dataclass(frozen=True)
class Line:
    """One line of a pairs file. ``target`` None: the line holds the source alone."""

    number: int  # 1-based, as an editor counts lines
    source: str  # the source text
    target: str | None

    @property
    def stem(self) -> str:
        """The name of its files in an export, without the suffix: the line number, 4 digits
        at least."""
        return f"{self.number:04d}"


class BadLines(AttnvizError):
    """A pairs file refused for its bad lines (not for being missing or too large): what
    :func:`read_pairs_skipping` would leave out."""


@dataclass(frozen=True)
class Skipped:
    """A bad line of a pairs file, left out (see :func:`read_pairs_skipping`)."""

    number: int  # 1-based
    text: str  # the line as it was read (bytes that are not UTF-8 shown as U+FFFD)
    reason: str  # what is wrong with it, and the way out


def read_pairs(path: Path, *, targets: bool = False) -> list[Line]:
    """The pairs of a UTF-8 file of at most :data:`MAX_PAIRS_FILE_BYTES`, one a line; blank
    lines are skipped, and a byte-order mark at the start of the file.

    Args:
        path: the file.
        targets: every line must hold a target (training); else a line may hold the source
            alone (its target is then None: the model writes it).

    Raises:
        BadLines: (an AttnvizError) naming ``file:line`` of the first bad line (a refused
            character, more than one tab, an empty source, a line without a target where
            ``targets``, a line too long), and the numbers of up to :data:`MORE_NAMED` more.
        AttnvizError: a file that is missing, too large, or holds no pairs.
    """
    name = printable(str(path))
    data = _read(path, targets)
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadLines(f"{name}:{line}: the file is not UTF-8 text; save it as UTF-8"
                       ) from None
    check_characters(text, name)
    pairs, problems = _parsed(enumerate(text.split("\n"), start=1), targets)
    if problems:
        first = problems[0]
        more = [problem.number for problem in problems[1:]]
        raise BadLines(f"{name}:{first.number}: {first.reason}"
                       + (f" (also bad: {line_numbers(more, MORE_NAMED)})" if more else ""))
    return _some(pairs, name, targets)


def read_pairs_skipping(path: Path, *, targets: bool = False
                        ) -> tuple[list[Line], list[Skipped]]:
    """As :func:`read_pairs`, but each bad line (bytes that are not UTF-8, a refused
    character, or any problem :func:`read_pairs` names) is left out, and given back with
    why, instead of refusing the file. A file too large, or of no good line, is refused."""
    name = printable(str(path))
    data = _read(path, targets).removeprefix(b"\xef\xbb\xbf")
    readable, skipped = [], []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(Skipped(number, raw.decode("utf-8", "replace"),
                                   "the line is not UTF-8 text; save the file as UTF-8"))
            continue
        refused = _refusal(line.removesuffix("\r"))
        if refused:
            skipped.append(Skipped(number, line, refused))
        else:
            readable.append((number, line))
    pairs, problems = _parsed(readable, targets)
    skipped = sorted(skipped + problems, key=lambda problem: problem.number)
    return _some(pairs, name, targets), skipped


def _read(path: Path, targets: bool) -> bytes:
    missing, too_large = (("give a file of source<TAB>target lines", "train on a part of it")
                          if targets else (LINES, "split it into smaller files"))
    return read_regular_file(Path(path), MAX_PAIRS_FILE_BYTES, "pairs file", way_out=missing,
                             too_large=too_large)


def _parsed(lines, targets: bool) -> tuple[list[Line], list[Skipped]]:
    """The pairs of ``lines`` (number, text), and the bad ones with why."""
    pairs, problems = [], []
    for number, raw in lines:
        raw = raw.removesuffix("\r")
        if not raw.strip() and not (targets and "\t" in raw):  # a tab alone trains nothing
            continue
        source, tab, target = raw.partition("\t")
        if len(raw) > MAX_PAIR_LINE_CHARS:  # checked before anyone splits it into words
            reason = (f"the line has {len(raw):,} characters, more than the limit of "
                      f"{MAX_PAIR_LINE_CHARS:,}; write one sentence pair a line")
        elif "\t" in target:
            reason = "more than one tab; " + (f"{PAIRS}, with no tab inside either" if targets
                                              else LINES)
        elif targets and not tab:
            reason = f"no tab between source and target; {PAIRS}"
        elif targets and not (source.strip() and target.strip()):
            reason = "the source or the target is empty"
        elif not source.strip():
            reason = f"the source is empty; {LINES}"
        else:
            pairs.append(Line(number, source, target if target.strip() else None))
            continue
        problems.append(Skipped(number, raw, reason))
    return pairs, problems


def _some(pairs: list[Line], name: str, targets: bool) -> list[Line]:
    if not pairs:
        raise AttnvizError(f"{name} holds no pairs; write one source<TAB>target pair a line"
                           if targets else f"pairs file {name} holds no pairs; {LINES}")
    return pairs


def _refusal(text: str) -> str | None:
    """Why ``text`` may not be in a pairs file: its first refused character (see
    ``_REFUSED``), or None."""
    refused = _REFUSED.search(text)
    return None if not refused else _why(refused.group())


def _why(character: str) -> str:
    why = _WHY.get(character, "a control character: remove it, a pairs file is plain text")
    return f"refused character U+{ord(character):04X} ({why})"


def check_characters(text: str, name: str) -> None:
    """Raise BadLines naming ``name:line`` of the first character of ``text`` that a pairs
    file may not hold (see ``_REFUSED``)."""
    refused = _REFUSED.search(text)
    if refused:
        line = text.count("\n", 0, refused.start()) + 1
        raise BadLines(f"{name}:{line}: {_why(refused.group())}")


def line_numbers(numbers: Sequence[int], named: int = 5) -> str:
    """``line 3``, ``lines 3, 4, 9``, or ``lines 1, 2, 3, 4, 5 and 25 more``."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    rest = len(numbers) - named
    return f"lines {', '.join(map(str, numbers[:named]))}" + (f" and {rest} more" if rest > 0
                                                             else "")
