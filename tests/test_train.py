"""Training: the loss falls, files round-trip, Ctrl-C keeps the best model, bad input is named."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from attnviz.checkpoint import load_checkpoint, save_checkpoint
from attnviz.cli import app
from attnviz.errors import AttnvizError
from attnviz.tokenize import Tokenizer
from attnviz.train import loop as training
from attnviz.train.pairs import read_pairs

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
    assert torch.equal(before.logits, after.logits) and torch.equal(before.cross, after.cross)


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
    (b"a cat\tun chat\tthird\n", ":1: more than one tab"),
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
    with pytest.raises(AttnvizError, match="does not exist"):
        read_pairs(tmp_path / "none.tsv", Tokenizer("word"), 8)
    with pytest.raises(AttnvizError, match="is a directory"):
        read_pairs(tmp_path, Tokenizer("word"), 8)


@pytest.mark.parametrize("changes, message", [
    (dict(task="translate"), "either --task"),
    (dict(data=None), "either --task"),
    (dict(steps=5, epochs=2), "not both"),
    (dict(width=10, heads=4), "--width 10 must be divisible by --heads 4"),
    (dict(validation_share=1.0), "--val-split"),
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

    assert open_source(str(path)).trace(Request("the cat sees")).maps.default_layer("cross") == \
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
