"""Getting a model ready to run: the model a ``--model`` value names."""

from __future__ import annotations

import torch

from attnviz import catalog
from attnviz.checkpoint import Checkpoint, load_checkpoint
from attnviz.config import MAX_TARGET_LENGTH, ModelConfig
from attnviz.model import Transformer
from attnviz.tokenize import Tokenizer, Vocabulary


def random_checkpoint(source_tokens: list[str], target_tokens: list[str], seed: int
                      ) -> Checkpoint:
    """A randomly initialised word-level model whose vocabularies hold exactly the given tokens.

    The weights depend only on ``seed`` and the vocabulary sizes, so a sentence gives the
    same maps on every run.
    """
    source_vocab = Vocabulary.build([source_tokens])
    target_vocab = Vocabulary.build([target_tokens or source_tokens])
    longest = min(MAX_TARGET_LENGTH, max(8, 2 * len(source_tokens)))
    config = ModelConfig(source_vocab_size=len(source_vocab),
                         target_vocab_size=len(target_vocab), max_target_length=longest)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Transformer(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    tokenizer = Tokenizer("word")
    return Checkpoint(model, tokenizer, tokenizer, source_vocab, target_vocab,
                      {"task": "random", "seed": seed})


def load_model(spec: str | None, device: torch.device, source: str, target: str | None,
               seed: int) -> Checkpoint:
    """The model named by ``spec``: ``random``, a shipped model's name, or a file path."""
    path = catalog.resolve(spec)
    if path is not None:
        return load_checkpoint(path, device)
    tokenizer = Tokenizer("word")
    checkpoint = random_checkpoint(tokenizer.split(source),
                                   tokenizer.split(target) if target else [], seed)
    checkpoint.model.to(device)
    return checkpoint
