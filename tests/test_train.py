"""Training: the loss falls, files round-trip, Ctrl-C keeps the best model, bad input is named."""

from __future__ import annotations

import re
import signal
import warnings
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.errors import AttnvizError
from attnviz.io.signals import Terminated
from attnviz.model.checkpoint import load_checkpoint, save_checkpoint
from attnviz.model.tokenize import Tokenizer
from attnviz.train import loop as training
from attnviz.train.options import TrainOptions
from attnviz.train.pairs import read_examples as read_pairs
from tests.conftest import SOURCE, TARGET

PAIRS = "\n".join(f"{a} {b}\t{b} {a}" for a in ("red", "green", "blue", "black")
                  for b in ("cat", "dog", "car", "house")) + "\n"


@pytest.fixture
def pairs_file(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text(PAIRS, encoding="utf-8")
    return path


def _plan(pairs_file, **changes):
    options = dict(task=None, data=pairs_file, layers=1, heads=2, width=16, steps=60,
                   batch_size=8, learning_rate=1e-2, validation_share=0.25, max_length=8)
    options.update(changes)
    return training.plan(**options)


def test_the_loss_falls_and_the_model_file_round_trips(tmp_path, pairs_file):
    reports = []
    plan = _plan(pairs_file)
    result = training.run(plan, reports.append)
    assert result.steps_done == 60 and not result.interrupted
    assert reports[-1].loss < 0.5 * reports[0].loss
    assert result.checkpoint.info["command"].startswith("attnviz train --data")
    assert set(result.checkpoint.info["metrics"]) >= {"exact_match", "token_accuracy"}

    path = tmp_path / "m.safetensors"
    save_checkpoint(result.checkpoint, path)
    loaded = load_checkpoint(path)
    source = torch.tensor([[4, 5]])
    target = torch.tensor([[1, 4, 6]])
    with torch.no_grad():
        before = result.checkpoint.model(source, target)
        after = loaded.model(source, target)
    assert torch.equal(before.logits, after.logits) and torch.equal(
        before.attention.weights("cross"), after.attention.weights("cross"))


def test_the_same_seed_gives_the_same_model(pairs_file):
    first = training.run(_plan(pairs_file, steps=15))
    second = training.run(_plan(pairs_file, steps=15))
    for a, b in zip(first.checkpoint.model.state_dict().values(),
                    second.checkpoint.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_ctrl_c_stops_cleanly_and_keeps_the_best_model_so_far(pairs_file):
    plan = _plan(pairs_file, steps=200)
    plan = training.TrainPlan(plan.data, plan.sizes,
                              training.TrainOptions(steps=200, batch_size=8, learning_rate=1e-2,
                                                    eval_every=10), plan.info, plan.test)
    snapshots = {}

    def interrupt(progress):
        if progress.validation is not None:
            snapshots[progress.step] = training._rank(progress.validation)
        if progress.step == 35:
            raise KeyboardInterrupt

    result = training.run(plan, interrupt)
    assert result.interrupted and result.steps_done == 35
    best_step = max(snapshots, key=lambda step: (snapshots[step], -step))
    assert result.best_step == best_step
    # No test run after Ctrl-C: the figures kept are those of the best validation.
    assert result.measured_on == "validation pairs"
    assert training._rank(result.measured) == snapshots[best_step]
    assert result.checkpoint.info["metrics"]["measured_on"] == "validation pairs"


@pytest.mark.parametrize("content, message", [
    (b"", "holds no pairs"),
    (b"\n\n", "holds no pairs"),
    (b"a cat\tun chat\nno tab here\n", ":2: no tab between source and target"),
    (b"a cat\tun chat\n\t\n", ":2: the source or the target is empty"),
    (b"a cat\tun chat\n\xff\xfe\tbad\n", ":2: the file is not UTF-8"),
    (b"a cat\tun chat\tthird\n", ":1: more than one tab; write each pair as source<TAB>target, "
                                 "with no tab inside either$"),
    (b"a\t" + b"w " * 9 + b"\n", ":1: the target has 9 tokens, more than the model's maximum "
                                 "of 8"),
])
def test_bad_pairs_files_are_named_with_their_line(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(AttnvizError, match=message) as caught:
        read_pairs(path, Tokenizer("word"), 8)
    assert str(path) in str(caught.value)


def test_missing_and_directory_pairs_files(tmp_path):
    with pytest.raises(AttnvizError, match="^pairs file .*none.tsv does not exist; give a file of "
                                           "source<TAB>target lines$"):
        read_pairs(tmp_path / "none.tsv", Tokenizer("word"), 8)
    with pytest.raises(AttnvizError, match="is a directory"):
        read_pairs(tmp_path, Tokenizer("word"), 8)


@pytest.mark.parametrize("changes, message", [
    (dict(task="translate"), "either task NAME or data"),
    (dict(data=None), "either task"),
    (dict(steps=5, epochs=2), "^give steps or epochs, not both"),
    (dict(width=10, heads=4), "^width 10 must be divisible by heads 4"),
    (dict(validation_share=1.0), "validation_share must be at least 0"),
    (dict(steps=0), "steps must be at least 1"),
])
def test_invalid_training_options(pairs_file, changes, message):
    with pytest.raises(AttnvizError, match=message):
        _plan(pairs_file, **changes)


def test_epochs_count_passes_over_the_training_pairs(pairs_file):
    plan = _plan(pairs_file, steps=None, epochs=3, batch_size=4)
    assert plan.options.steps == 3 * 3  # 12 training pairs, 4 a batch


def test_train_and_eval_commands(tmp_path, pairs_file):
    runner = CliRunner()
    out = tmp_path / "m.safetensors"
    result = runner.invoke(app, ["train", "--data", str(pairs_file), "-o", str(out),
                                 "--steps", "40", "--layers", "1", "--heads", "2", "--width",
                                 "16", "--batch-size", "8", "--max-length", "8"])
    assert result.exit_code == 0, result.stderr
    assert f"saved {out}" in result.stdout and "exact match" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "pairs.tsv"]
    measured = runner.invoke(app, ["eval", "--model", str(out), "--data", str(pairs_file)])
    assert measured.exit_code == 0, measured.stderr
    assert "examples        16" in measured.stdout
    shown = runner.invoke(app, ["decode", "red cat", "--model", str(out), "--kind", "cross"])
    assert shown.exit_code == 0, shown.stderr


@pytest.mark.parametrize("args, fragment", [
    (["-o", "m.pt"], "model files end in .safetensors"),
    (["-o", "nowhere/m.safetensors"], "does not exist"),
    (["-o", "m.safetensors", "--task", "poetry"], "unknown task 'poetry'"),
])
def test_train_command_refuses_bad_options_in_one_line(tmp_path, pairs_file, args, fragment):
    if "--task" not in args:
        args = [*args, "--data", str(pairs_file)]
    args = [str(tmp_path / a) if a.startswith(("m.", "nowhere")) else a for a in args]
    result = CliRunner().invoke(app, ["train", *args, "--steps", "1"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and fragment in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


def test_training_on_a_task_records_its_best_aligned_layer(tmp_path):
    """A task that knows its alignment: fit() measures it and names the layer to show."""
    plan = training.plan(task="reverse", data=None, layers=2, heads=2, width=16, steps=30,
                         batch_size=16)
    plan = training.TrainPlan(plan.data, plan.sizes, plan.options, plan.info,
                              plan.test[:50])
    result = training.run(plan)
    info = result.checkpoint.info
    assert info["task"] == "reverse" and info["metrics"]["measured_on"] == "held-out test set"
    alignment = info["metrics"]["alignment"]
    assert len(alignment) == 2
    assert info["default_layers"] == {"cross": alignment.index(max(alignment))}
    path = tmp_path / "r.safetensors"
    save_checkpoint(result.checkpoint, path)
    from attnviz.sources import Request, open_source

    assert open_source(str(path)).maps(Request("the cat sees")).default_layer("cross") == \
        info["default_layers"]["cross"]


def test_train_command_on_a_task(tmp_path):
    out = tmp_path / "d.safetensors"
    result = CliRunner().invoke(app, ["train", "--task", "dates", "-o", str(out), "--steps", "3",
                                      "--layers", "1", "--heads", "2", "--width", "16"])
    assert result.exit_code == 0, result.stderr
    assert "measured on the held-out test set" in result.stdout
    assert load_checkpoint(out).source_tokenizer.kind == "char"


def test_eval_refuses_a_model_measured_on_another_task_and_examples_with_pairs(pairs_file):
    runner = CliRunner()
    wrong = runner.invoke(app, ["eval", "-m", "dates", "--task", "translate"])
    assert wrong.exit_code == 1 and "trained on the dates task" in wrong.stderr
    both = runner.invoke(app, ["eval", "-m", "dates", "--data", str(pairs_file),
                               "--examples", "5"])
    assert both.exit_code == 1 and "--examples sizes a --task test set" in both.stderr


# ---------------------------------------------------------------------------------------------
# Hostile and degenerate input: `attnviz train` and `attnviz eval` either work or say, in one
# line, what is wrong; never a traceback, an endless loop, or a model file that cannot be used.

SMALL = ["--layers", "1", "--heads", "2", "--width", "16", "--batch-size", "8"]


def _assert_refused(result, fragment: str, folder, inputs: set[str]) -> None:
    """Exit 1, one `error:` line naming the problem, no traceback, no file left behind."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
    left = {p.name for p in folder.iterdir()} - inputs
    assert not left, left  # neither the model nor a temporary file (.m.safetensors.*.tmp)


def _distinct_source_words(count: int) -> bytes:
    return "".join(f"w{i}\tx\n" for i in range(count)).encode()


BAD_TRAINING = [
    # (pairs file content or None for the shared PAIRS, extra arguments, message fragment)
    pytest.param(None, ["--lr", "inf"], "learning rate must be above 0 and at most 1, got inf",
                 id="lr-inf"),
    pytest.param(None, ["--lr", "nan"], "got nan", id="lr-nan"),
    pytest.param(None, ["--lr", "1e30"], "at most 1, got 1e+30", id="lr-huge"),
    pytest.param(None, ["--lr", "0"], "above 0", id="lr-zero"),
    pytest.param(None, ["--lr", "-0.1"], "above 0", id="lr-negative"),
    pytest.param(b"a b\tb a\nc d\td c\n", ["--val-split", "0.75", "--steps", "5"],
                 "of the 2 distinct pairs leaves no pair to train on; lower --val-split",
                 id="split-leaves-nothing"),
    pytest.param(b"a b\tb a\nc d\td c\n", ["--val-split", "0.75", "--epochs", "1"],
                 "leaves no pair to train on", id="split-leaves-nothing-epochs"),
    pytest.param(b"a b\tb a\nc d\td c\nc d\td c\n", ["--val-split", "0.9"],
                 "the 2 distinct pairs", id="duplicates-counted-once"),
    pytest.param(b"a b\tb a\nc\x00d\td c\n", [], "pairs.tsv:2: refused character U+0000 (NUL",
                 id="nul"),
    pytest.param(b"a b\tb a\nc d\td \x1b[2J c\n", [], ":2: refused character U+001B",
                 id="escape-sequence"),
    pytest.param(b"a b\tb a\rc d\td c\r", [], ":1: refused character U+000D (a carriage return",
                 id="carriage-return-line-ends"),
    pytest.param("a b\tb a\nc\u2028d\td c\n".encode(), [], ":2: refused character U+2028",
                 id="line-separator"),
    pytest.param("a b\tb a\n\ufeffc d\td c\n".encode(), [], ":2: refused character U+FEFF",
                 id="byte-order-mark-inside"),
    pytest.param("a b\tb a\n".encode("utf-16-le"), [], ":1: refused character U+0000",
                 id="utf-16"),
    pytest.param(b"a b\tb a\n" + ("\u732b" * 200).encode() + b"\td c\n", [],
                 ":2: a word of 200 characters, more than the limit of 128",
                 id="word-too-long"),
    pytest.param(b"a b\tb a\n" + b"w " * 300 + b"\tx\n", [],
                 ":2: the source has 300 tokens, more than the limit of 256",
                 id="source-too-long"),
    pytest.param(b"a b\tb a\n" + b"ab " * 2**19 + b"\tx\n", [],
                 ":2: the line has 1,572,866 characters, more than the limit of 1,048,576",
                 id="line-too-long"),  # split into words first, a 128 MiB line took 4 GB
    pytest.param(_distinct_source_words(65_536 - 4 + 1), ["--val-split", "0"],
                 "the training pairs hold 65,533 distinct source words, more than the limit "
                 "of 65,532; use fewer pairs or --tokenizer char", id="vocabulary-too-large"),
    pytest.param(None, ["--batch-size", "5000"], "batch size must be at most 4,096",
                 id="batch-too-large"),
    pytest.param(None, ["--layers", "65"], "--layers 65 is more than the limit of 64",
                 id="too-many-layers"),
    pytest.param(None, ["--width", "100000", "--heads", "1"],
                 "more than the 536,870,912 a model file holds", id="model-too-large"),
]


@pytest.mark.parametrize("content, extra, fragment", BAD_TRAINING)
def test_train_refuses_what_would_loop_crash_or_save_an_unusable_model(
        tmp_path, content, extra, fragment):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(PAIRS.encode() if content is None else content)
    args = ["train", "--data", str(path), "-o", str(tmp_path / "m.safetensors"), *SMALL]
    if "--steps" not in extra and "--epochs" not in extra:
        args += ["--steps", "3"]
    result = CliRunner().invoke(app, [*args, *extra])
    _assert_refused(result, fragment, tmp_path, {"pairs.tsv"})


@pytest.mark.parametrize("kind", ["directory", "missing", "fifo", "device", "too-large"])
def test_train_and_eval_read_pairs_only_from_a_regular_file_of_bounded_size(
        tmp_path, model_file, kind):
    import os

    path = {"directory": tmp_path / "folder", "missing": tmp_path / "none.tsv",
            "fifo": tmp_path / "pairs.fifo", "device": "/dev/zero",
            "too-large": tmp_path / "huge.tsv"}[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opened the ordinary way, reading it would wait for a writer forever
    elif kind == "too-large":
        with open(path, "wb") as file:  # sparse: takes no room on disk
            file.truncate(256 * 2**20 + 1)
    fragment = {"directory": "is a directory", "missing": "does not exist",
                "fifo": "is not a regular file (a FIFO)",
                "device": "is not a regular file (a device)",
                "too-large": "is larger than the limit of 256 MiB"}[kind]
    inputs = {p.name for p in tmp_path.iterdir()}
    trained = CliRunner().invoke(app, ["train", "--data", str(path), "-o",
                                       str(tmp_path / "m.safetensors"), "--steps", "1"])
    _assert_refused(trained, fragment, tmp_path, inputs)
    measured = CliRunner().invoke(app, ["eval", "-m", str(model_file), "--data", str(path)])
    _assert_refused(measured, fragment, tmp_path, inputs)


def test_a_loss_that_stops_being_finite_stops_training_and_saves_nothing(
        tmp_path, pairs_file, monkeypatch):
    """No finite learning rate can be shown to diverge on every machine, so the loss is
    made to: from the third step on, it is NaN, as it is when training blows up."""
    real = training.F.cross_entropy
    calls = []

    def blowing_up(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 3 else loss

    monkeypatch.setattr(training.F, "cross_entropy", blowing_up)
    result = CliRunner().invoke(app, ["train", "--data", str(pairs_file), "-o",
                                      str(tmp_path / "m.safetensors"), "--steps", "10", *SMALL])
    _assert_refused(result, "training diverged: the loss became nan at step 3", tmp_path,
                    {"pairs.tsv"})
    assert "lower learning rate than 0.003 (--lr)" in result.stderr


def test_weights_that_stop_being_finite_are_not_kept(pairs_file, monkeypatch):
    """The last step before Ctrl-C blew the weights up, and no validation kept better ones."""
    models = []
    real_new = training.new_checkpoint

    def remembered(*args, **kwargs):
        checkpoint = real_new(*args, **kwargs)
        models.append(checkpoint.model)
        return checkpoint

    def blow_up_then_interrupt(progress):
        if progress.step == 3:
            with torch.no_grad():
                next(models[0].parameters()).fill_(float("inf"))
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "new_checkpoint", remembered)
    with pytest.raises(AttnvizError, match="training diverged: the weights of step 3 hold NaN "
                                           "or infinite values; nothing is kept"):
        training.run(_plan(pairs_file, steps=100), blow_up_then_interrupt)


@pytest.mark.parametrize("content, extra, examples, measured_on", [
    pytest.param(b"a b\tb a\n", [], 1, "training pairs (no validation split)", id="one-pair"),
    pytest.param(b"a b\tb a\n", ["--val-split", "0", "--epochs", "1"], 1,
                 "training pairs (no validation split)", id="one-pair-no-split-one-epoch"),
    pytest.param(b"a b\tb a\nc d\td c\n", ["--val-split", "0.5", "--epochs", "1"], 1,
                 "validation pairs", id="two-pairs-half-split"),
    pytest.param(b"a b\tb a\nc d\td c\n", ["--epochs", "3", "--batch-size", "64"], 2,
                 "training pairs (no validation split)", id="batch-larger-than-the-data"),
    pytest.param(b"\xef\xbb\xbfa b\tb a\r\nc d\td c\r\n", ["--val-split", "0", "--steps", "2"],
                 2, "training pairs (no validation split)", id="bom-and-crlf"),
])
def test_tiny_data_trains_to_a_file_that_loads(tmp_path, content, extra, examples,
                                               measured_on):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(content)
    out = tmp_path / "m.safetensors"
    args = ["train", "--data", str(path), "-o", str(out), *SMALL, *extra]
    if "--steps" not in extra and "--epochs" not in extra:
        args += ["--steps", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert f"measured on the {measured_on}:" in result.stdout
    assert f"examples        {examples}" in result.stdout
    loaded = load_checkpoint(out)
    # A byte-order mark is not text: no token holds it, and no token holds a \r.
    assert loaded.source_vocab.tokens[4:] and all(
        "\ufeff" not in t and "\r" not in t for t in loaded.source_vocab.tokens)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "pairs.tsv"]
    measured = CliRunner().invoke(app, ["eval", "-m", str(out), "--data", str(path)])
    assert measured.exit_code == 0, measured.stderr


def test_validation_measures_a_bounded_reproducible_draw_and_says_so(tmp_path):
    from attnviz.train.options import MAX_VALIDATION_PAIRS

    pairs = [training.Example(f"s{i} x", f"t{i}") for i in range(3000)]
    first = training.pairs_data(pairs, Tokenizer("word"), 0.5, 7, 8)
    again = training.pairs_data(pairs, Tokenizer("word"), 0.5, 7, 8)
    assert len(first.validation) == MAX_VALIDATION_PAIRS == 1000
    assert first.validation == again.validation
    assert first.validation_name == "validation pairs (1,000 of 1,500, drawn at random)"
    training_pairs = set(pairs) - set(training.pairs_data(pairs, Tokenizer("word"), 0.5, 7, 8)
                                       .validation)
    assert first.training_size == 1500 and len(training_pairs) == 2000
    unsplit = training.pairs_data(pairs, Tokenizer("word"), 0.0, 7, 8)
    assert len(unsplit.validation) == 1000
    assert unsplit.validation_name == ("training pairs (1,000 of 3,000, drawn at random; "
                                       "no validation split)")


def test_a_large_pairs_file_is_measured_on_the_bounded_draw(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"s{i} x\tt{i}\n" for i in range(2500)))
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(path), "-o", str(out), "--steps",
                                      "1", "--val-split", "0.5", "--max-length", "2", *SMALL])
    assert result.exit_code == 0, result.stderr
    assert ("measured on the validation pairs (1,000 of 1,250, drawn at random):\n"
            "examples        1000") in result.stdout
    assert load_checkpoint(out).info["metrics"]["examples"] == 1000


def test_ctrl_c_before_the_first_validation_says_one_thing(tmp_path, pairs_file, monkeypatch):
    def interrupt_at_step_6(progress):
        if progress.step == 6:
            raise KeyboardInterrupt

    plan = _plan(pairs_file, steps=100)
    result = training.run(plan, interrupt_at_step_6)
    assert result.interrupted and result.best is None and result.measured is None
    path = tmp_path / "m.safetensors"
    save_checkpoint(result.checkpoint, path)
    from attnviz.cli.text import interruption_text, training_summary

    summary = training_summary(result, path)
    assert "best validation" not in summary
    assert summary.endswith("after 6 steps in "
                            f"{result.seconds:.1f} s; not measured: training stopped before the "
                            "first validation, and the model is that of step 6")
    assert interruption_text(result) == ("interrupted at step 6, before the first validation: "
                                         "saved the model as it is")


def test_ctrl_c_before_the_first_step_keeps_nothing(tmp_path, pairs_file, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "make_batch", interrupt)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(pairs_file), "-o", str(out),
                                      "--steps", "5", *SMALL])
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


def test_ctrl_c_while_measuring_after_training_keeps_the_trained_model(pairs_file, monkeypatch):
    real = training.evaluate
    calls = []

    def interrupted_last(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the validation at step 10 went through; the final test does not
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", interrupted_last)
    result = training.run(_plan(pairs_file, steps=10))
    assert result.interrupted and result.steps_done == 10 and result.best is not None
    assert result.measured == result.best and result.measured_on == "validation pairs"


def test_a_vocabulary_at_the_limit_is_planned(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(_distinct_source_words(65_536 - 4))
    plan = _plan(path, validation_share=0.0)
    assert len(plan.data.source_vocab) == 65_536


def test_weight_count_is_that_of_the_model():
    from attnviz.model.config import ModelConfig
    from attnviz.model.transformer import Transformer

    for sizes in (dict(), dict(d_model=24, n_heads=3, n_encoder_layers=3, n_decoder_layers=1,
                               d_ff=50)):
        config = ModelConfig(source_vocab_size=70, target_vocab_size=19, **sizes)
        weights = sum(t.numel() for t in Transformer(config).state_dict().values())
        assert training.weight_count(config) == weights


def test_a_step_too_large_for_memory_is_one_line(pairs_file, monkeypatch):
    import torch

    def allocate_a_petabyte(*args, **kwargs):
        return torch.empty(2**50, dtype=torch.uint8)  # torch's own error, as a huge batch gets

    monkeypatch.setattr(training, "make_batch", allocate_a_petabyte)
    with pytest.raises(AttnvizError, match="step 1 of training does not fit in memory; train "
                                           "with a smaller batch_size"):
        training.run(_plan(pairs_file, steps=3))


@pytest.mark.parametrize("model", ["reverse", "untrained"])
def test_decoding_stops_past_the_longest_target_with_the_same_figures(pairs_file, monkeypatch,
                                                                      model):
    """evaluate() cuts greedy decoding one token past the batch's longest target: an output
    longer than that is wrong whatever follows, so the figures are those of decoding to the
    model's maximum length, which an untrained model, never writing <eos>, always reaches."""
    from attnviz.model import catalog
    from attnviz.model.transformer import Transformer
    from attnviz.train.evaluate import evaluate
    from attnviz.train.tasks import get_task, held_out_examples

    if model == "reverse":
        checkpoint = load_checkpoint(catalog.shipped_models()["reverse"])
        examples = held_out_examples(get_task("reverse"), 200)
    else:
        plan = _plan(pairs_file, max_length=40)
        checkpoint = training.new_checkpoint(plan.data, plan.sizes, 0, {})
        examples = plan.data.validation
    lengths = []
    real_generate = Transformer.generate

    def counted(self, source_ids, max_length=None):
        generated = real_generate(self, source_ids, max_length)
        lengths.append(generated.size(1) - 1)
        return generated

    monkeypatch.setattr(Transformer, "generate", counted)
    cut = evaluate(checkpoint, examples, batch_size=64)
    longest = max(len(checkpoint.target_tokenizer.split(e.target)) for e in examples)
    assert max(lengths) <= longest + 1
    monkeypatch.setattr(Transformer, "generate",
                        lambda self, source_ids, max_length=None: real_generate(self, source_ids))
    assert evaluate(checkpoint, examples, batch_size=64) == cut
    if model == "untrained":
        assert cut.exact_match == 0.0 and max(lengths) == longest + 1
    else:
        assert cut.exact_match > 0.9


@pytest.mark.parametrize("args, fragment", [
    (["-m", "reverse", "--task", "reverse", "--examples", "0"], "--examples must be at least 1"),
    (["-m", "reverse", "--task", "reverse", "--examples", "100001"],
     "at most 100,000, got 100,001"),  # drawn into memory first: 10**9 would never end
    (["-m", "/dev/zero", "--task", "reverse"], "model file /dev/zero is not a regular file"),
    (["-m", "random", "--task", "reverse"], "the random model has nothing to measure"),
    (["-m", "reverse"], "give either --task NAME or --data"),
])
def test_eval_refuses_in_one_line(tmp_path, args, fragment):
    result = CliRunner().invoke(app, ["eval", *args])
    _assert_refused(result, fragment, tmp_path, set())


def test_ctrl_c_before_the_first_validation_in_the_command(tmp_path, pairs_file, monkeypatch):
    real = training.make_batch
    calls = []

    def interrupted_at_the_seventh(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "make_batch", interrupted_at_the_seventh)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(pairs_file), "-o", str(out),
                                      "--steps", "100", *SMALL])
    assert result.exit_code == 130, result.stderr  # saved, then ends as interrupted
    assert ("interrupted at step 6, before the first validation: saved the model as it is"
            in result.stderr)
    assert result.stderr.splitlines()[-1] == "interrupted"
    assert "best validation" not in result.stdout
    assert "not measured: training stopped before the first validation, and the model is " \
           "that of step 6" in result.stdout
    assert load_checkpoint(out).info["metrics"] is None


@pytest.mark.process
@pytest.mark.parametrize("extra, fragment", [
    (["--val-split", "0.75"], "leaves no pair to train on"),  # looped forever
    (["--lr", "inf"], "the learning rate must be above 0"),  # saved NaN weights, exit 0
])
def test_a_real_train_process_refuses_in_one_line_and_leaves_nothing(tmp_path, extra,
                                                                      fragment):
    import subprocess
    import sys

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a b\tb a\nc d\td c\n")
    result = subprocess.run([sys.executable, "-m", "attnviz", "train", "--data", str(pairs),
                             "-o", str(tmp_path / "m.safetensors"), "--steps", "5", *extra],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.tsv"]


@pytest.mark.parametrize("raised, code, line", [(KeyboardInterrupt, 130, "interrupted"),
                                                 (Terminated, 143, "terminated")])
def test_an_interrupted_train_command_saves_then_ends_as_interrupted(
        tmp_path, pairs_file, monkeypatch, raised, code, line):
    """Ctrl-C or SIGTERM in the middle of training: the best model so far is saved, and the
    command ends with 130 or 143 as every other command does (it ended with 0)."""
    from attnviz.cli import text as report

    real = report.training_progress

    @contextmanager
    def stopped_at_step_12(console, steps):
        with real(console, steps) as show:
            def report_then_stop(progress):
                show(progress)
                if progress.step == 12:
                    raise raised()
            yield report_then_stop

    monkeypatch.setattr(report, "training_progress", stopped_at_step_12)
    plan = _plan(pairs_file)
    monkeypatch.setattr(training, "plan", lambda **options: training.TrainPlan(
        plan.data, plan.sizes, TrainOptions(steps=100, batch_size=8, learning_rate=1e-2,
                                            eval_every=10), plan.info, plan.test))
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(pairs_file), "-o", str(out)])
    assert result.exit_code == code, result.stderr
    assert "interrupted at step 12: saved the best model on validation (from step 10)" \
        in result.stderr
    assert result.stderr.splitlines()[-1] == line and "Traceback" not in result.stderr
    assert load_checkpoint(out).info["best_step"] == 10


# --- real processes, real signals -------------------------------------------------------------

def _train_process(tmp_path, pairs_text: str, *extra: str, prelude: str = ""):
    """``attnviz train`` on a small pairs file as its own process, its live progress bar on
    a pipe (TTY_COMPATIBLE: rich draws it as on a terminal)."""
    import os
    import subprocess
    import sys

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(pairs_text)
    code = prelude + "import sys; from attnviz.cli.app import main; sys.argv[0] = 'attnviz'; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", "--data", str(pairs), "-o",
         str(tmp_path / "m.safetensors"), *SMALL, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "TTY_COMPATIBLE": "1", "NO_COLOR": "1", "COLUMNS": "200",
             "OMP_NUM_THREADS": "1"})


def _read_until(process, pattern: str, timeout: float) -> bytes:
    """What ``process`` wrote on stderr up to the first match of ``pattern``."""
    import os
    import re
    import select
    import time

    seen, deadline = b"", time.monotonic() + timeout
    while re.search(pattern.encode(), seen) is None:
        assert process.poll() is None, seen.decode(errors="replace")
        assert time.monotonic() < deadline, f"no {pattern!r} on stderr: {seen!r}"
        if select.select([process.stderr], [], [], 0.05)[0]:
            seen += os.read(process.stderr.fileno(), 65536)
    return seen


@pytest.mark.process
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_training_keeps_the_model_and_ends_the_process_by_it(tmp_path, signum):
    """A real process, stopped once its progress bar counts steps: the model so far is saved
    whole, and the process ends by the signal (the shell shows 130, 143 or 129). SIGHUP, a
    closed terminal or a lost ssh connection, killed it on the spot: the model was lost."""
    # One source, two targets, validated on the training pairs: never 100%, so training does
    # not stop early on its own before the signal.
    process = _train_process(tmp_path, "a b\tb a\na b\ta b\nc d\td c\n", "--steps", "100000",
                             "--val-split", "0")
    try:
        seen = _read_until(process, r" [1-9][0-9]*/100000 ", timeout=60)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    err = (seen + err).decode()
    assert process.returncode == -signum, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.splitlines()[-1] == {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated",
                                    signal.SIGHUP: "hung up"}[signum]
    steps = load_checkpoint(tmp_path / "m.safetensors").info["steps"]
    # The words follow the count the signal happened to land on: "1 step", "7 steps".
    assert 1 <= steps < 100000 and f"after {steps} step{'s' * (steps != 1)}" in out.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "pairs.tsv"]


# The second Ctrl-C, a real signal sent by the process to itself as the model is saved.
SIGNAL_WHILE_SAVING = """
import signal, safetensors.torch
serialize = safetensors.torch.save
def save(*args, **kwargs):
    signal.raise_signal(signal.SIGINT)
    return serialize(*args, **kwargs)
safetensors.torch.save = save
"""


@pytest.mark.process
def test_a_second_ctrl_c_while_the_model_is_saved_keeps_it(tmp_path):
    """Ctrl-C stops training and the model so far is saved; a second one during that save
    aborted it, and the model was lost."""
    process = _train_process(tmp_path, "a b\tb a\na b\ta b\nc d\td c\n", "--steps", "100000",
                             "--val-split", "0", prelude=SIGNAL_WHILE_SAVING)
    try:
        seen = _read_until(process, r" [1-9][0-9]*/100000 ", timeout=60)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    err = (seen + err).decode()
    assert process.returncode == -signal.SIGINT, err
    assert "Traceback" not in err and err.endswith("interrupted\n")
    assert 1 <= load_checkpoint(tmp_path / "m.safetensors").info["steps"] < 100000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "pairs.tsv"]


# A real signal, sent by the process to itself at the moment torch's C start-up imports numpy:
# that import clears any exception, so the KeyboardInterrupt was lost and training ran on.
SIGNAL_WHILE_TORCH_IMPORTS_NUMPY = """
import signal, sys
class SignalWhenTorchImportsNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and "torch" in sys.modules:
            sys.meta_path.remove(self)
            signal.raise_signal(signal.{name})
        return None
sys.meta_path.insert(0, SignalWhenTorchImportsNumpy())
"""


@pytest.mark.process
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_torch_loads_is_not_lost(tmp_path, signum):
    process = _train_process(
        tmp_path, "a b\tb a\nc d\td c\n", "--steps", "20",
        prelude=SIGNAL_WHILE_TORCH_IMPORTS_NUMPY.format(name=signal.Signals(signum).name))
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signum, err.decode()
    assert err.decode() == {signal.SIGINT: "interrupted\n", signal.SIGTERM: "terminated\n",
                            signal.SIGHUP: "hung up\n"}[signum]
    assert out == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


@NO_CUDA
@pytest.mark.parametrize("command", ["train", "eval"])
def test_cuda_without_a_gpu_is_refused_before_anything_is_drawn(tmp_path, pairs_file, command):
    """The progress bar used to be drawn first, then the error."""
    out = tmp_path / "m.safetensors"
    args = (["train", "--data", str(pairs_file), "-o", str(out), "--steps", "5", *SMALL]
            if command == "train" else ["eval", "-m", "reverse", "--task", "reverse"])
    result = CliRunner().invoke(app, [*args, "--device", "cuda"])
    assert result.exit_code == 1
    assert result.stderr == ("error: --device cuda was asked for, but torch sees no CUDA GPU "
                             "here; use cpu (or auto)\n")
    assert result.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]


def test_validation_on_few_pairs_is_said_once_with_the_count_and_the_way_out(tmp_path):
    from attnviz.errors import AttnvizWarning

    pairs = [training.Example(f"s{i % 9} x", f"t{i % 9}") for i in range(300)]  # 9 distinct
    with pytest.warns(AttnvizWarning) as caught:
        data = training.pairs_data(pairs, Tokenizer("word"), 0.1, 7, 8)
    (warning,) = [w for w in caught if issubclass(w.category, AttnvizWarning)]
    message = str(warning.message)
    assert len(data.validation) == 1 and "\n" not in message
    assert message == ("validation's figures rest on 1 pair of the validation split (9 "
                       "distinct pairs among 300 lines), and they choose the best model; add "
                       "distinct pairs or raise the validation share")
    with pytest.warns(AttnvizWarning, match="rest on 9 training pairs \\(no validation split"):
        training.pairs_data(pairs, Tokenizer("word"), 0.0, 7, 8)
    many = [training.Example(f"s{i} x", f"t{i}") for i in range(200)]  # 20 validation pairs
    with warnings.catch_warnings():
        warnings.simplefilter("error", AttnvizWarning)
        assert len(training.pairs_data(many, Tokenizer("word"), 0.1, 7, 8).validation) == 20
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{p.source}\t{p.target}\n" for p in pairs), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", "--data", str(path), "-o",
                                      str(tmp_path / "m.safetensors"), *SMALL, "--steps", "2"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("warning: validation's figures rest on 1 pair of") == 1


@pytest.mark.parametrize("flag", [[], ["--no-early-stop"]])
def test_training_that_stops_early_says_why_and_can_train_every_step(tmp_path, monkeypatch,
                                                                      flag):
    """train stopped at step 750 of 5,000 with no word of why."""
    from attnviz.train.options import PATIENCE

    (tmp_path / "pairs.tsv").write_text("a\tb\n" * 8, encoding="utf-8")  # learnt at once
    real_plan = training.plan

    def often(**options):  # a validation every 5 steps, not 250
        plan = real_plan(**{**options, "layers": 1, "heads": 2, "width": 16})
        return training.TrainPlan(plan.data, plan.sizes, replace(
            plan.options, batch_size=8, learning_rate=1e-2, eval_every=5), plan.info,
            plan.test, plan.threads)

    monkeypatch.setattr(training, "plan", often)
    out = tmp_path / "m.safetensors"
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "pairs.tsv"), "-o",
                                      str(out), "--steps", "200", *flag])
    assert result.exit_code == 0, result.stderr
    steps = load_checkpoint(out).info["steps"]
    if flag:
        assert steps == 200 and "stopped early" not in result.stderr
        assert load_checkpoint(out).info["command"].endswith(" --no-early-stop")
    else:
        assert steps < 200
        assert (f"stopped early, at step {steps} of 200: validation exact match was 100% at "
                f"{PATIENCE} validations in a row; --no-early-stop trains every step"
                ) in result.stderr.splitlines()


def test_eval_on_words_the_model_does_not_know_warns_with_their_share(model_file, tmp_path):
    """eval gave "exact match 0.0%" with no warning where decode warns of the same words."""
    result = CliRunner().invoke(app, ["eval", "-m", str(model_file), "--task", "translate",
                                      "--examples", "5"])
    assert result.exit_code == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(r"warning: \d+\.\d% of the source tokens \([\d,]+ of [\d,]+\) and "
                        r"\d+\.\d% of the target tokens \([\d,]+ of [\d,]+\) are not in this "
                        r"model's vocabulary and are read as <unk>: the figures measure words "
                        r"it never learnt; see the words it knows with `attnviz models .* "
                        r"--vocab`", line), line
    known = tmp_path / "known.tsv"
    known.write_text(f"{SOURCE}\t{TARGET}\n", encoding="utf-8")
    quiet = CliRunner().invoke(app, ["eval", "-m", str(model_file), "--data", str(known)])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
