"""Tokenizers and vocabularies."""

from __future__ import annotations

import pytest

from attnviz.model.tokenize import BOS_ID, SPECIALS, UNK_ID, Tokenizer, Vocabulary


def test_word_tokenizer_splits_punctuation_and_lower_cases():
    assert Tokenizer("word").split("The cat, it's BLACK!") == ["the", "cat", ",", "it's",
                                                                "black", "!"]
    assert Tokenizer("word", lowercase=False).split("The Cat") == ["The", "Cat"]


def test_char_tokenizer_keeps_every_character_inside_the_text():
    assert Tokenizer("char").split("  Mar 3, 21 ") == list("mar 3, 21")


def test_join_undoes_split_for_simple_text():
    assert Tokenizer("word").join(["le", "chat"]) == "le chat"
    assert Tokenizer("char").join(list("2021-03-03")) == "2021-03-03"


def test_unknown_tokenizer_kind_is_refused():
    with pytest.raises(ValueError, match="word, char"):
        Tokenizer("bpe")


def test_vocabulary_puts_specials_first_and_maps_unknown_tokens():
    vocab = Vocabulary.build([["b", "a", "b"], ["c"]])
    assert vocab.tokens[:4] == list(SPECIALS)
    assert vocab.tokens[4:] == ["b", "a", "c"]  # most frequent first, then first seen
    assert vocab.ids(["a", "zebra"]) == [5, UNK_ID]
    assert vocab.unknown(["a", "zebra", "yak", "zebra"]) == ["zebra", "yak"]
    assert vocab.tokens_of([BOS_ID, 4]) == ["<bos>", "b"]


@pytest.mark.parametrize("tokens", [["a"], [*SPECIALS, "a", "a"], [*SPECIALS, ""]])
def test_malformed_vocabularies_are_refused(tokens):
    with pytest.raises(ValueError):
        Vocabulary(tokens)


def test_tokenizer_round_trips_through_a_dict():
    tokenizer = Tokenizer("char", lowercase=False)
    assert Tokenizer.from_dict(tokenizer.to_dict()) == tokenizer
    with pytest.raises(ValueError):
        Tokenizer.from_dict({"kind": "word"})
