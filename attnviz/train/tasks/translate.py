"""English to French over a small lexicon, with the grammar that makes the word order differ.

Sentences are ``DET ADJ* NOUN VERB DET ADJ* NOUN``. Colour adjectives follow the French
noun and size/age adjectives precede it, all agreeing in gender and number, so the
cross-attention of a trained model crosses instead of running down the diagonal.
Each French word knows the English word it translates: that is the alignment.
"""

from __future__ import annotations

import random

from attnviz.model.tokenize import Tokenizer
from attnviz.train.tasks import Example, Task

# English noun: (French noun, gender)
NOUNS = {
    "cat": ("chat", "m"), "dog": ("chien", "m"), "book": ("livre", "m"), "boy": ("garcon", "m"),
    "car": ("voiture", "f"), "house": ("maison", "f"), "girl": ("fille", "f"),
    "table": ("table", "f"), "apple": ("pomme", "f"),
}
# English adjective: forms (m, f, m pl, f pl); colours go after the noun, the others before.
COLOURS = {
    "black": ("noir", "noire", "noirs", "noires"),
    "green": ("vert", "verte", "verts", "vertes"),
    "red": ("rouge", "rouge", "rouges", "rouges"),
    "white": ("blanc", "blanche", "blancs", "blanches"),
}
SIZES = {
    "small": ("petit", "petite", "petits", "petites"),
    "big": ("grand", "grande", "grands", "grandes"),
    "old": ("vieux", "vieille", "vieux", "vieilles"),
    "new": ("nouveau", "nouvelle", "nouveaux", "nouvelles"),
}
ADJECTIVES = {**COLOURS, **SIZES}
# English verb (singular, plural): French (singular, plural)
VERBS = {
    ("sees", "see"): ("voit", "voient"), ("eats", "eat"): ("mange", "mangent"),
    ("likes", "like"): ("aime", "aiment"), ("has", "have"): ("a", "ont"),
}
VOWELS = "aeiou"


def _form(forms: tuple[str, str, str, str], gender: str, plural: bool) -> str:
    return forms[(2 if plural else 0) + (1 if gender == "f" else 0)]


def _english_noun_phrase(rng: random.Random, plural: bool) -> list[str]:
    noun = rng.choice(list(NOUNS))
    adjectives = rng.sample(list(ADJECTIVES), rng.randint(0, 2))
    first = adjectives[0] if adjectives else noun
    if rng.random() < 0.5:
        determiner = "the"
    elif plural:
        determiner = "some"
    else:
        determiner = "an" if first[0] in VOWELS else "a"
    return [determiner, *adjectives, noun + "s" if plural else noun]


def sample(rng: random.Random) -> Example:
    plural = rng.random() < 0.5
    subject = _english_noun_phrase(rng, plural)
    verb = rng.choice(list(VERBS))[1 if plural else 0]
    obj = _english_noun_phrase(rng, rng.random() < 0.5)
    english = " ".join([*subject, verb, *obj])
    french, alignment = to_french(english)
    return Example(english, french, alignment)


def to_french(english: str) -> tuple[str, tuple[int, ...]]:
    """The French of a sentence of the task, and for each French word its English word's index.

    Raises ValueError for a sentence outside the task's grammar or lexicon.
    """
    words = english.lower().split()
    verbs = [i for i, w in enumerate(words) if w in _VERB_FORMS]
    if len(verbs) != 1:
        raise ValueError(f"expected one verb in {english!r}")
    v = verbs[0]
    subject, subject_align, plural = _french_noun_phrase(words[:v], 0)
    singular_verb, plural_verb = _VERB_FORMS[words[v]]
    if (words[v] in (s for s, _ in VERBS)) == plural:
        raise ValueError(f"the verb {words[v]!r} does not agree with its subject")
    obj, obj_align, _ = _french_noun_phrase(words[v + 1:], v + 1)
    french = [*subject, plural_verb if plural else singular_verb, *obj]
    return " ".join(french), (*subject_align, v, *obj_align)


def _french_noun_phrase(words: list[str], start: int) -> tuple[list[str], list[int], bool]:
    if len(words) < 2 or words[0] not in ("the", "a", "an", "some"):
        raise ValueError(f"not a noun phrase: {' '.join(words)!r}")
    determiner, *adjectives, noun = words
    plural = noun.endswith("s") and noun[:-1] in NOUNS
    stem = noun[:-1] if plural else noun
    if stem not in NOUNS or any(a not in ADJECTIVES for a in adjectives):
        raise ValueError(f"not a noun phrase of the lexicon: {' '.join(words)!r}")
    french_noun, gender = NOUNS[stem]
    if determiner == "the":
        article = "les" if plural else ("la" if gender == "f" else "le")
    else:
        article = "des" if plural else ("une" if gender == "f" else "un")
    french, alignment = [article], [start]
    # Size and age before the noun, colours after it; each side keeps the English order.
    for i, adjective in enumerate(adjectives):
        if adjective in SIZES:
            french.append(_form(ADJECTIVES[adjective], gender, plural))
            alignment.append(start + 1 + i)
    french.append(french_noun + "s" if plural else french_noun)
    alignment.append(start + len(words) - 1)
    for i, adjective in enumerate(adjectives):
        if adjective in COLOURS:
            french.append(_form(ADJECTIVES[adjective], gender, plural))
            alignment.append(start + 1 + i)
    return french, alignment, plural


_VERB_FORMS = {english: french for pair, french in VERBS.items() for english in pair}


def _vocabulary() -> tuple[tuple[str, ...], tuple[str, ...]]:
    english = ["the", "a", "an", "some", *ADJECTIVES]
    english += [w for noun in NOUNS for w in (noun, noun + "s")]
    english += [w for pair in VERBS for w in pair]
    french = ["le", "la", "les", "un", "une", "des"]
    french += sorted({form for forms in ADJECTIVES.values() for form in forms})
    french += [w for fr, _ in NOUNS.values() for w in (fr, fr + "s")]
    french += [w for pair in VERBS.values() for w in pair]
    return tuple(english), tuple(dict.fromkeys(french))


TASK = Task(
    name="translate",
    description="English to French (adjectives move)",
    tokenizer=Tokenizer("word"),
    sample=sample,
    source_tokens=_vocabulary()[0],
    target_tokens=_vocabulary()[1],
    max_target_length=9,  # two noun phrases of four words and a verb
)
