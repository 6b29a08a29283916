"""Seeded generators of source/target pairs: the tasks the shipped models are trained on.

Every task splits its whole space of examples once and for all by a hash of the source
text: 80% of sources are for training, 10% for validation while training, 10% for the
held-out test of ``attnviz eval``. The three never overlap, whatever the seed or the
number of examples drawn.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from attnviz.model.tokenize import Tokenizer

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    source: str
    target: str
    # For each target token, the index of the source token it comes from (None: unknown).
    alignment: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    tokenizer: Tokenizer  # used for both sides
    sample: Callable[[random.Random], Example]  # one random example, held out or not
    source_tokens: tuple[str, ...]  # every token a source can contain
    target_tokens: tuple[str, ...]  # every token a target can contain
    max_target_length: int  # the longest target, in tokens


def split_of(source: str) -> str:
    """The part of its task's space ``source`` belongs to: train, validation or test."""
    bucket = zlib.crc32(source.lower().encode("utf-8")) % 10
    return "validation" if bucket == 0 else "test" if bucket == 5 else "train"


def examples(task: Task, seed: int, split: str) -> Iterator[Example]:
    """An endless stream of examples from one part of the split, fixed by ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(seed)
    while True:
        example = task.sample(rng)
        if split_of(example.source) == split:
            yield example


def draw(task: Task, count: int, seed: int, split: str) -> list[Example]:
    """``count`` examples from one part of the split (repeats possible, as in real data)."""
    stream = examples(task, seed, split)
    return [next(stream) for _ in range(count)]


TEST_SEED = 12345  # the held-out test set of `attnviz eval --task`: the same for every model
TEST_SIZE = 1000


def held_out_examples(task: Task, count: int = TEST_SIZE) -> list[Example]:
    """The task's held-out test set: never seen in training or validation."""
    return draw(task, count, TEST_SEED, "test")


def get_task(name: str) -> Task:
    from attnviz.errors import AttnvizError

    tasks = all_tasks()
    if name not in tasks:
        raise AttnvizError(f"unknown task {name!r}; use one of {', '.join(tasks)}")
    return tasks[name]


def all_tasks() -> dict[str, Task]:
    from attnviz.train.tasks import dates, reverse, translate

    return {task.name: task for task in (translate.TASK, dates.TASK, reverse.TASK)}
