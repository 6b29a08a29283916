"""How many threads torch gets: the choice, its overrides, and a model's bytes that do not
depend on it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.errors import AttnvizError
from attnviz.model import runtime
from attnviz.model.checkpoint import save_checkpoint
from attnviz.model.runtime import choose_threads, threads_set_in, using_threads
from attnviz.train import evaluate
from attnviz.train import loop as training


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


def test_one_thread_unless_asked():
    assert choose_threads(None, environ={}) == 1
    assert choose_threads(3, environ={}) == 3


def test_a_thread_variable_leaves_torch_its_own_count_unless_threads_are_asked():
    assert choose_threads(None, environ={"OMP_NUM_THREADS": "3"}) is None
    assert choose_threads(None, environ={"MKL_NUM_THREADS": "3"}) is None
    assert choose_threads(2, environ={"OMP_NUM_THREADS": "3"}) == 2


@pytest.mark.parametrize("value, taken", [
    ("4", True), (" 4", True), ("4,2", True), ("+4", True),  # as std::stoi reads them
    ("", False), ("0", False), ("-2", False), ("four", False), ("99999999999", False),
])
def test_thread_variables_are_read_as_torch_reads_them(value, taken):
    assert threads_set_in({"OMP_NUM_THREADS": value}) == taken
    assert threads_set_in({"MKL_NUM_THREADS": value}) == taken
    assert threads_set_in({"MKL_NUM_THREADS": value, "OMP_NUM_THREADS": "x"}) == taken


@pytest.mark.process
@pytest.mark.parametrize("variables", [{"MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"},
                                       {"OMP_NUM_THREADS": " 1"},
                                       {"OMP_NUM_THREADS": "one"}])
def test_torch_itself_takes_the_variables_that_count(variables):
    """With a count of 1, torch's own count shows whether it took the variable."""
    import os

    environ = {name: value for name, value in os.environ.items()
               if name not in runtime.THREAD_VARIABLES}
    code = "import torch; print(torch.get_num_threads(), end='')"
    default = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                             text=True, check=True).stdout
    if default == "1":
        pytest.skip("one core: torch's default is one thread too")
    read = subprocess.run([sys.executable, "-c", code], env={**environ, **variables},
                          capture_output=True, text=True, check=True).stdout
    assert (read == "1") == threads_set_in(variables)


@pytest.mark.parametrize("count", [0, -1, runtime.MAX_THREADS + 1])
def test_a_thread_count_out_of_range_is_one_line(count):
    with pytest.raises(AttnvizError, match="thread count must be between 1 and") as caught:
        choose_threads(count, environ={})
    assert "\n" not in str(caught.value)


def test_using_threads_sets_and_restores(threads_restored):
    torch.set_num_threads(1)
    with using_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1
    with pytest.raises(KeyboardInterrupt), using_threads(2):
        raise KeyboardInterrupt
    assert torch.get_num_threads() == 1
    with using_threads(None):
        assert torch.get_num_threads() == 1


def test_one_thread_sets_every_variable_and_a_torch_already_imported(threads_restored):
    """For a process among many (an export's worker): MKL_NUM_THREADS too, which torch reads
    first (OMP_NUM_THREADS=1 alone left a worker two threads with MKL_NUM_THREADS=2)."""
    torch.set_num_threads(2)
    environ = {"MKL_NUM_THREADS": "2", "OMP_NUM_THREADS": "4,2", "HOME": "/home/x"}
    runtime.one_thread(environ)
    assert environ == {"MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "HOME": "/home/x"}
    assert torch.get_num_threads() == 1
    assert choose_threads(None, environ) is None  # the sources then leave torch at one


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
    torch.set_num_threads(2)  # as torch does at start-up, reading the variable
    from_variable = tiny_plan()
    torch.set_num_threads(1)
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
    code = ("import sys\nfrom attnviz.model.runtime import choose_threads\n"
            "from attnviz.cli.app import app\n"
            "choose_threads()\n"
            "try:\n    app(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
