"""How ``attnviz train`` trains, and the limits of training and evaluation.

No torch here: the CLI reads its defaults from these without paying for torch.
"""

from __future__ import annotations

from dataclasses import dataclass

VALIDATION_SHARE = 0.1  # of a pairs file, kept out of training to choose the best model
PATIENCE = 3  # validations in a row at 100% exact match before training stops early


MAX_VALIDATION_PAIRS = 1000  # measured at each validation, so that one validation takes a
#   bounded time whatever the size of the file; an exact match measured on 1,000 pairs is
#   within about 3 points of the whole split's (two standard errors at 50%)


MAX_TEST_EXAMPLES = 100_000  # of a task, for `attnviz eval --examples`: they are drawn into
#   memory first, and 100,000 already measure an exact match to within 0.3 points


MAX_SOURCE_LENGTH = 256  # tokens of a source in a pairs file, in training and evaluation:
#   attention keeps B x H x S x S weights a layer, so memory grows with the square of the
#   longest source of a batch. A step of the default model on 64 pairs took 0.57 GB with
#   256-token sources, 5.1 GB with 1,024 (python benchmarks/train_memory.py).


MAX_LEARNING_RATE = 1.0  # Adam moves each weight by about the learning rate at each step:
#   at 1 or more, every step replaces the weights, so training can only diverge


MAX_BATCH_SIZE = 4096  # pairs per step, 64 times the default: a step's memory grows with it
#   (the logits alone are B x T x V floats), and a task draws that many examples a step


@dataclass(frozen=True)
class TrainOptions:
    """How ``attnviz train`` trains (see :func:`attnviz.train.loop.train`)."""

    steps: int = 3000  # optimizer steps, at most: training stops early when it is done
    batch_size: int = 64  # pairs per step
    learning_rate: float = 3e-3  # peak, after a linear warm-up; cosine decay to a tenth
    warmup: int = 200  # steps of warm-up
    eval_every: int = 250  # steps between validations
    seed: int = 0  # weights and the order of the data
    device: str = "cpu"
    early_stop: bool = True  # stop once validation is perfect at PATIENCE validations in a row

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"the batch size must be at most {MAX_BATCH_SIZE:,}, got "
                             f"{self.batch_size:,}")
        # Written so that NaN fails it too: every comparison with NaN is false.
        if not 0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise ValueError(f"the learning rate must be above 0 and at most "
                             f"{MAX_LEARNING_RATE:g}, got {self.learning_rate:g}")
