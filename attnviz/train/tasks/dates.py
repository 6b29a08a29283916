"""Human-readable dates to ISO 8601 (``2021-03-03``), character level.

Formats: "march 3, 2021", "march 3rd, 2021", "3 march 2021", "3 mar 2021",
"tuesday, march 3, 2021", "03/03/2021" (month/day/year), "2021 march 3", "mar 3 21".
Two-digit years are 19xx above 50, else 20xx; full years run from 1900 to 2099.
"""

from __future__ import annotations

import calendar
import datetime
import random

from attnviz.model.tokenize import Tokenizer
from attnviz.train.tasks import Example, Task

MONTHS = [calendar.month_name[m].lower() for m in range(1, 13)]
SHORT_MONTHS = [calendar.month_abbr[m].lower() for m in range(1, 13)]
WEEKDAYS = [calendar.day_name[d].lower() for d in range(7)]
FIRST, LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
TWO_DIGIT_FIRST, TWO_DIGIT_LAST = datetime.date(1951, 1, 1), datetime.date(2050, 12, 31)


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


FORMATS = (
    lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{MONTHS[d.month - 1]} {ordinal(d.day)}, {d.year}",
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{d.day} {SHORT_MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{WEEKDAYS[d.weekday()]}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",
    lambda d: f"{d.year} {MONTHS[d.month - 1]} {d.day}",
    lambda d: f"{SHORT_MONTHS[d.month - 1]} {d.day} {d.year % 100:02d}",  # two-digit year
)
TWO_DIGIT_FORMAT = len(FORMATS) - 1


def _random_date(rng: random.Random, first: datetime.date, last: datetime.date):
    return first + datetime.timedelta(days=rng.randint(0, (last - first).days))


def _random_case(rng: random.Random, text: str) -> str:
    style = rng.random()
    if style < 0.6:
        return text
    if style < 0.8:
        return text.title()
    if style < 0.9:
        return text.upper()
    return text.capitalize()


def sample(rng: random.Random) -> Example:
    kind = rng.randrange(len(FORMATS))
    if kind == TWO_DIGIT_FORMAT:
        date = _random_date(rng, TWO_DIGIT_FIRST, TWO_DIGIT_LAST)
    else:
        date = _random_date(rng, FIRST, LAST)
    return Example(_random_case(rng, FORMATS[kind](date)), date.isoformat())


def _alphabet() -> tuple[str, ...]:
    words = " ".join(MONTHS + WEEKDAYS) + " 0123456789,/-stndrh"
    return tuple(sorted(set(words)))


TASK = Task(
    name="dates",
    description="dates to ISO 8601",
    tokenizer=Tokenizer("char"),
    sample=sample,
    source_tokens=_alphabet(),
    target_tokens=tuple("0123456789-"),
    max_target_length=len("2021-03-03"),
)
