"""The task generators: grammar, formats, determinism, and splits that never overlap."""

from __future__ import annotations

import datetime
import random
import re

import pytest

from attnviz.train.tasks import all_tasks, draw, split_of
from attnviz.train.tasks.dates import sample as date_sample
from attnviz.train.tasks.translate import to_french


@pytest.mark.parametrize("english, french", [
    ("the small black cats see a red car", "les petits chats noirs voient une voiture rouge"),
    ("an apple has a big white house", "une pomme a une grande maison blanche"),
    ("an old cat likes the old girls", "un vieux chat aime les vieilles filles"),
    ("some small cats eat some green apples", "des petits chats mangent des pommes vertes"),
    ("the new boys have a new table", "les nouveaux garcons ont une nouvelle table"),
    ("a dog sees the white old book", "un chien voit le vieux livre blanc"),
    ("the small big house eats a green red apple",
     "la petite grande maison mange une pomme verte rouge"),
])
def test_translate_grammar(english, french):
    assert to_french(english)[0] == french


def test_translate_alignment_points_each_french_word_at_its_english_word():
    french, alignment = to_french("the small black cats see a red car")
    english = "the small black cats see a red car".split()
    pairs = [(f, english[i]) for f, i in zip(french.split(), alignment, strict=True)]
    assert pairs == [("les", "the"), ("petits", "small"), ("chats", "cats"),
                     ("noirs", "black"), ("voient", "see"), ("une", "a"), ("voiture", "car"),
                     ("rouge", "red")]


def test_translate_refuses_sentences_outside_its_grammar():
    for sentence in ("the cat see a dog", "the cat sees", "the zebra sees a dog"):
        with pytest.raises(ValueError):
            to_french(sentence)


def test_translate_samples_follow_the_rules():
    task = all_tasks()["translate"]
    for example in draw(task, 300, seed=3, split="train"):
        words = example.source.split()
        assert 5 <= len(words) <= 9
        for i, word in enumerate(words[:-1]):
            if word in ("a", "an"):
                assert (word == "an") == (words[i + 1][0] in "aeiou")
        assert to_french(example.source) == (example.target, example.alignment)
        assert example.target == example.target.lower() and "  " not in example.target
        assert set(example.target.split()) <= set(task.target_tokens)
        assert set(words) <= set(task.source_tokens)


def two_digit_year(year: int) -> int:
    """The year a two-digit year of the dates task stands for: 19xx above 50, else 20xx (its
    dates run from 1951 to 2050 in that format)."""
    return 1900 + year if year > 50 else 2000 + year


def test_dates_are_correct_and_cover_every_format():
    task = all_tasks()["dates"]
    shapes = set()
    for example in draw(task, 2000, seed=0, split="train"):
        date = datetime.date.fromisoformat(example.target)
        assert datetime.date(1900, 1, 1) <= date <= datetime.date(2099, 12, 31)
        source = example.source.lower()
        assert set(source) <= set(task.source_tokens)
        shape = re.sub(r"[a-z]+", "W", re.sub(r"\d+", "9", source))
        shapes.add(shape)
        if "/" in source:
            assert source == date.strftime("%m/%d/%Y")
        if source.count(",") == 2:
            assert source.startswith(date.strftime("%A").lower())  # the weekday is right
        two_digit = re.fullmatch(r"([a-z]{3}) (\d+) (\d\d)", source)
        if two_digit:
            assert two_digit_year(int(two_digit.group(3))) == date.year
    # "3 march 2021", "3 mar 2021" and "2021 march 3" share the shape "9 W 9".
    assert shapes >= {"W 9, 9", "W 9W, 9", "9 W 9", "W, W 9, 9", "9/9/9", "W 9 9"}


def test_dates_vary_their_case():
    sources = [date_sample(random.Random(i)).source for i in range(200)]
    assert any(s != s.lower() for s in sources) and any(s == s.lower() for s in sources)


def test_reverse_reverses():
    task = all_tasks()["reverse"]
    for example in draw(task, 200, seed=0, split="train"):
        words = example.source.split()
        assert 3 <= len(words) <= 12
        assert example.target.split() == words[::-1]
        assert example.alignment == tuple(range(len(words) - 1, -1, -1))


@pytest.mark.parametrize("name", ["translate", "dates", "reverse"])
def test_generators_are_deterministic_and_splits_never_overlap(name):
    task = all_tasks()[name]
    assert draw(task, 50, 7, "train") == draw(task, 50, 7, "train")
    train = {e.source.lower() for e in draw(task, 3000, 1, "train")}
    test = {e.source.lower() for e in draw(task, 500, 1, "test")}
    validation = {e.source.lower() for e in draw(task, 500, 1, "validation")}
    assert not train & test and not train & validation and not test & validation
    assert {split_of(s) for s in test} == {"test"}
