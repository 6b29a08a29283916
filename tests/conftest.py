"""Shared fixtures: tiny models with fixed seeds, so every test runs in well under a second."""

from __future__ import annotations

import os

import pytest
import torch

from attnviz.model.checkpoint import Checkpoint, save_checkpoint
from attnviz.model.config import ModelConfig
from attnviz.model.runtime import threads_set_in
from attnviz.model.tokenize import Tokenizer, Vocabulary
from attnviz.model.transformer import Transformer

SOURCE = "the black cat sees the red car"

# One thread for the tests and for the attnviz processes they start, unless the person
# running them set OMP_NUM_THREADS or MKL_NUM_THREADS: the models here are tiny, and torch's
# default (a thread per core) made the suite take 64 to 197 s beside one busy process on
# 2 cores, where one thread took 24 s (issue 7).
if not threads_set_in():
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty render cache, never the user's."""
    folder = tmp_path_factory.mktemp("cache") / "attnviz"
    monkeypatch.setenv("ATTNVIZ_CACHE_DIR", str(folder))
    return folder

TARGET = "le chat noir voit la voiture rouge"


def tiny_config(**changes) -> ModelConfig:
    sizes = dict(source_vocab_size=11, target_vocab_size=13, d_model=16, n_heads=2,
                 n_encoder_layers=2, n_decoder_layers=3, d_ff=32, max_target_length=12)
    sizes.update(changes)
    return ModelConfig(**sizes)


def tiny_model(seed: int = 0, **changes) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_config(**changes)).eval()


@pytest.fixture
def model() -> Transformer:
    return tiny_model()


@pytest.fixture
def checkpoint() -> Checkpoint:
    """A small word-level model that knows the words of SOURCE and TARGET."""
    tokenizer = Tokenizer("word")
    source_vocab = Vocabulary.build([tokenizer.split(SOURCE)])
    target_vocab = Vocabulary.build([tokenizer.split(TARGET)])
    torch.manual_seed(1)
    model = Transformer(tiny_config(source_vocab_size=len(source_vocab),
                                    target_vocab_size=len(target_vocab))).eval()
    return Checkpoint(model, tokenizer, tokenizer, source_vocab, target_vocab,
                      {"task": "test"})


@pytest.fixture
def model_file(tmp_path, checkpoint):
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(checkpoint, path)
    return path


def pytest_configure(config):
    """A test named by its node id (``tests/test_x.py::test_y``) runs whatever its markers:
    the ``-m 'not process'`` of pyproject's addopts is for whole runs."""
    if config.option.markexpr == "not process" and any("::" in arg for arg in config.args):
        config.option.markexpr = ""
