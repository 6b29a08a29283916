"""What drawing one long map to a picture takes in memory, by its tokens a side.

The reason for attnviz.render.layout.DRAWING_BYTES_PER_CELL: matplotlib resamples a map's
coloured cells as premultiplied float RGBA, so a picture's memory grows with its cells. Each
size and format runs in a fresh process; printed is how far its peak address space (VmPeak,
what ``ulimit -v`` limits) grew while the picture was drawn and saved, beyond the maps and
their plan, per cell, beside attnviz's own estimate.

    python benchmarks/picture_memory.py               # 3,000 to 6,000 tokens, PNG SVG PDF
    python benchmarks/picture_memory.py 2000 4000     # other sizes
"""

from __future__ import annotations

import os
import subprocess
import sys

DRAW = """
import os, sys, numpy as np
from attnviz.maps.data import AttentionMaps
from attnviz.flow import pipeline
from attnviz.render import image, layout
def peak():
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024
n, fmt = int(sys.argv[1]), sys.argv[2]
maps = AttentionMaps([f"t{i}" for i in range(n)], [],
                     encoder_self=np.full((1, 1, n, n), 1 / n, np.float32))
plan = pipeline.plan(maps, pipeline.View())
estimate = layout.drawing_bytes(layout.Layout(plan))
open(f"/proc/{os.getpid()}/clear_refs", "w").write("5")  # the peaks start again here
before = peak()
image.to_bytes(plan, fmt, "viridis")
print((peak() - before) // 2**20, estimate // 2**20, (peak() - before) / n / n)
"""


def main(sizes: list[int]) -> None:
    print(f"{'tokens':>7} {'format':>6} {'drawing MB':>11} {'estimate MB':>12} {'B/cell':>7}")
    for size in sizes:
        for fmt in ("png", "svg", "pdf"):
            done = subprocess.run([sys.executable, "-c", DRAW, str(size), fmt],
                                  capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            drawn, estimate, per_cell = done.stdout.split() or ["failed", "-", "0"]
            print(f"{size:>7} {fmt:>6} {drawn:>11} {estimate:>12} {float(per_cell):>7.1f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [3000, 4000, 5000, 6000])
