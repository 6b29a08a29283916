"""The shipped models: the default translates, aligns, and each is listed and measurable."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.model import catalog
from attnviz.model.checkpoint import load_checkpoint
from attnviz.sources import Request, open_source
from attnviz.train.evaluate import evaluate
from attnviz.train.tasks import get_task, held_out_examples

runner = CliRunner()


def test_three_models_are_shipped_small():
    shipped = catalog.shipped_models()
    assert sorted(shipped) == ["dates", "reverse", "translate"]
    for path in shipped.values():
        assert path.stat().st_size <= 2 * 1024 * 1024


def test_the_default_model_translates_the_example_of_the_readme():
    result = runner.invoke(app, ["decode", "the small black cats see a red car", "--kind",
                                 "cross"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "les petits chats noirs voient une voiture rouge"


def test_dates_and_reverse_by_name():
    dates = runner.invoke(app, ["decode", "Tuesday, March 3, 2026", "-m", "dates", "--kind",
                                "cross"])
    assert dates.exit_code == 0 and dates.stdout.splitlines()[0] == "2026-03-03"
    reverse = runner.invoke(app, ["decode", "the old dog sees a cat", "-m", "reverse",
                                  "--kind", "cross"])
    assert reverse.stdout.splitlines()[0] == "cat a sees dog old the"


def test_translate_cross_attention_aligns_on_held_out_sentences_at_the_default_layer():
    checkpoint = load_checkpoint(catalog.shipped_models()["translate"])
    metrics = evaluate(checkpoint, held_out_examples(get_task("translate"), 300))
    assert metrics.exact_match >= 0.99
    best = metrics.best_alignment_layer
    assert metrics.alignment[best] >= 0.95
    # decode shows that layer unless told otherwise
    maps = open_source().maps(Request("the small black cats see a red car"))
    assert maps.default_layer("cross") == best


def test_what_each_shipped_file_says_it_scored_is_what_it_scores():
    """`attnviz models` shows the figures stored in the files: they must be true."""
    for name, path in catalog.shipped_models().items():
        checkpoint = load_checkpoint(path)
        stored = checkpoint.info["metrics"]
        assert stored["measured_on"] == "held-out test set"
        metrics = evaluate(checkpoint, held_out_examples(get_task(name)))  # all 1,000
        assert metrics.exact_match == stored["exact_match"] >= 0.995, name
        assert metrics.token_accuracy == pytest.approx(stored["token_accuracy"]), name
        if stored["alignment"] is not None:
            assert list(metrics.alignment) == pytest.approx(stored["alignment"]), name


def test_models_lists_each_shipped_model_with_its_accuracy():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.stderr
    for name in ("translate", "dates", "reverse", "random"):
        assert name in result.stdout
    assert "%" in result.stdout


def test_eval_of_a_shipped_model_on_its_task():
    result = runner.invoke(app, ["eval", "-m", "reverse", "--task", "reverse", "--examples",
                                 "100"])
    assert result.exit_code == 0, result.stderr
    assert "examples        100" in result.stdout and "exact match" in result.stdout
    assert "(best)" in result.stdout


def test_unknown_words_for_the_default_model_are_named():
    result = runner.invoke(app, ["encode", "the zebra sees the red car"])
    assert result.exit_code == 0
    assert "'zebra'" in result.stderr and "<unk>" in result.stderr
