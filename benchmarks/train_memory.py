"""What one training step takes in memory, by the length of the longest source of a batch.

The reason for attnviz.train.options.MAX_SOURCE_LENGTH: attention keeps B x H x S x S weights a
layer, so a step's memory grows with the square of S. Each size runs in a fresh process,
whose peak resident memory (ru_maxrss) is printed above that of the same process before the
step.

    python benchmarks/train_memory.py              # S = 64, 256, 1024 at batch 64
    python benchmarks/train_memory.py 64 512       # other source lengths
"""

from __future__ import annotations

import subprocess
import sys

STEP = """
import resource, sys, torch, torch.nn.functional as F
from attnviz.model.config import ModelConfig
from attnviz.model.transformer import Transformer
torch.set_num_threads(1)
batch, source, target = int(sys.argv[1]), int(sys.argv[2]), 65
model = Transformer(ModelConfig(source_vocab_size=1000, target_vocab_size=1000))
sources = torch.randint(4, 1000, (batch, source))
targets = torch.randint(4, 1000, (batch, target))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
logits = model(sources, targets).logits  # (B, T, V)
F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def main(lengths: list[int], batch: int = 64) -> None:
    print(f"default model, batch {batch}, targets of 65 tokens")
    print(f"{'source tokens':>14} {'step MB':>8}")
    for length in lengths:
        done = subprocess.run([sys.executable, "-c", STEP, str(batch), str(length)],
                              capture_output=True, text=True)
        print(f"{length:>14} {done.stdout.strip() or 'failed':>8}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [64, 256, 1024])
