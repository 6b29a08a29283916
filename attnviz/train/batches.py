"""Text pairs to padded id tensors, the same way for training and for evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnviz.model.checkpoint import Checkpoint
from attnviz.model.tokenize import BOS_ID, EOS_ID, PAD_ID
from attnviz.train.tasks import Example


@dataclass
class Batch:
    source: torch.Tensor  # (B, S) source ids, padded with 0
    decoder_input: torch.Tensor  # (B, T) <bos> then the target, padded with 0
    decoder_target: torch.Tensor  # (B, T) the target then <eos>, padded with 0


def pad(sequences: list[list[int]], device: torch.device | str = "cpu") -> torch.Tensor:
    """Shape: B lists of ids -> ``[B, N]`` with N the longest, padded with 0."""
    width = max(len(ids) for ids in sequences)
    return torch.tensor([ids + [PAD_ID] * (width - len(ids)) for ids in sequences],
                        dtype=torch.long, device=device)


def make_batch(checkpoint: Checkpoint, examples: list[Example],
               device: torch.device | str = "cpu") -> Batch:
    sources = [checkpoint.source_ids(checkpoint.source_tokenizer.split(e.source))
               for e in examples]
    targets = [checkpoint.target_ids(checkpoint.target_tokenizer.split(e.target))
               for e in examples]
    return Batch(pad(sources, device), pad([[BOS_ID, *t] for t in targets], device),
                 pad([[*t, EOS_ID] for t in targets], device))


def too_large_for_memory(error: RuntimeError) -> bool:
    """Whether ``error`` is torch saying a tensor could not be allocated (CPU or GPU).

    On the CPU, torch raises a plain RuntimeError ("DefaultCPUAllocator: can't allocate
    memory"); on a GPU, ``torch.OutOfMemoryError``, a RuntimeError too.
    """
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)
