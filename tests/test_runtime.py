"""How many threads torch gets: the choice, its overrides, and a model's bytes that do not
depend on it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from attnviz import runtime
from attnviz.checkpoint import save_checkpoint
from attnviz.cli import app
from attnviz.errors import AttnvizError
from attnviz.runtime import Work, choose_threads, threads_from_environment, using_threads
from attnviz.train import evaluate
from attnviz.train import loop as training

# eval of a shipped model: width 64, batches of 256 examples, targets up to 16 tokens
SHIPPED_SIZE = Work(width=64, batch=256, longest=16)


@pytest.fixture
def threads_restored():
    """Tests that set torch's thread count get the suite's back afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_thread_variables(monkeypatch):
    for name in runtime.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_one_thread_for_the_shipped_models_and_for_training():
    assert choose_threads(None, SHIPPED_SIZE, environ={}) == 1
    assert choose_threads(None, Work(64, 64, 16, training=True), environ={}) == 1


def test_asking_wins_over_the_environment_and_mkl_over_omp_as_in_torch():
    both = {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "5"}
    assert choose_threads(7, SHIPPED_SIZE, environ=both) == 7
    assert choose_threads(None, SHIPPED_SIZE, environ=both) == 5
    assert choose_threads(None, SHIPPED_SIZE, environ={"OMP_NUM_THREADS": "3"}) == 3
    # Training too: the person asked, even though the bytes may then differ.
    assert choose_threads(None, Work(64, 64, 16, training=True),
                          environ={"OMP_NUM_THREADS": "2"}) == 2


@pytest.mark.parametrize("value, taken", [
    ("4", 4), (" 4", 4), ("4,2", 4), ("+4", 4),  # what torch's std::stoi makes of them
    ("", None), ("0", None), ("-2", None), ("four", None), ("99999999999", None),
])
def test_thread_variables_are_read_as_torch_reads_them(value, taken):
    assert threads_from_environment({"OMP_NUM_THREADS": value}) == taken
    assert threads_from_environment({"MKL_NUM_THREADS": value}) == taken


def test_a_variable_torch_ignores_does_not_stop_the_choice():
    environ = {"OMP_NUM_THREADS": "four", "MKL_NUM_THREADS": "0"}
    assert choose_threads(None, SHIPPED_SIZE, environ=environ) == 1


@pytest.mark.parametrize("count", [0, -1, runtime.MAX_THREADS + 1])
def test_a_thread_count_out_of_range_is_one_line(count):
    with pytest.raises(AttnvizError, match="thread count must be between 1 and") as caught:
        choose_threads(count, SHIPPED_SIZE, environ={})
    assert "\n" not in str(caught.value)


def test_using_threads_sets_and_restores(threads_restored):
    torch.set_num_threads(1)
    with using_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(KeyboardInterrupt), using_threads(2):
        raise KeyboardInterrupt
    assert torch.get_num_threads() == 1


PAIRS = "\n".join(f"{a} {b}\t{b} {a}" for a in ("red", "green", "blue", "black")
                  for b in ("cat", "dog", "car", "house")) + "\n"


@pytest.fixture
def tiny_plan(tmp_path):
    """A plan to train a tiny model for a few steps, on 16 pairs."""
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(PAIRS, encoding="utf-8")
    return lambda **changes: training.plan(**{
        **dict(task=None, data=pairs, layers=1, heads=2, width=16, steps=10, batch_size=8,
               validation_share=0.25, max_length=8), **changes})


def test_a_retrained_model_has_the_same_bytes_whatever_torch_was_set_to(
        tmp_path, tiny_plan, threads_restored, no_thread_variables):
    """LayerNorm's backward sums its weight gradients in one partial sum per thread, so two
    threads give other last bits than one; training pins the count, whatever the process's."""
    files = []
    for count in (1, 2):
        torch.set_num_threads(count)
        result = training.run(tiny_plan())
        assert torch.get_num_threads() == count  # restored after training
        files.append(tmp_path / f"trained-with-{count}.safetensors")
        save_checkpoint(result.checkpoint, files[-1])
    assert files[0].read_bytes() == files[1].read_bytes()


def test_training_runs_on_the_threads_asked_and_the_command_says_so(
        monkeypatch, tiny_plan, threads_restored, no_thread_variables):
    seen = []
    monkeypatch.setattr(training, "fit", lambda *args: seen.append(torch.get_num_threads()))
    torch.set_num_threads(1)
    asked = tiny_plan(threads=2)
    training.run(asked)
    assert seen == [2] and asked.info["command"].endswith("--threads 2")
    assert "--threads" not in tiny_plan().info["command"]

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    from_variable = tiny_plan()
    training.run(from_variable)
    assert seen == [2, 2] and from_variable.info["command"].endswith("--threads 2")


def test_eval_measures_on_the_threads_asked(monkeypatch, threads_restored, no_thread_variables):
    seen = []
    real = evaluate.evaluate

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate", recording)
    torch.set_num_threads(2)
    evaluate.measure("reverse", task="reverse", data=None, examples=5)
    evaluate.measure("reverse", task="reverse", data=None, examples=5, threads=2)
    assert seen == [1, 2]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("command", [["train", "--task", "reverse", "-o", "never.safetensors"],
                                     ["eval", "-m", "reverse", "--task", "reverse"]])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_the_threads_option_is_checked(command, value):
    result = CliRunner().invoke(app, [*command, "--threads", value])
    assert result.exit_code == 2
    assert "--threads" in result.stderr and "Traceback" not in result.stderr


def test_the_thread_choice_loads_no_torch():
    code = ("import sys\nfrom attnviz.runtime import Work, choose_threads\n"
            "from attnviz.cli import app\n"
            "choose_threads(None, Work(64, 256, 16))\n"
            "try:\n    app(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
