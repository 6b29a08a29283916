"""What choosing fallback fonts costs a picture, measured in one run.

    python benchmarks/fonts.py

Latin labels: the time of a PNG with the font choice against the same PNG with the choice
skipped, drawn alternately (A, B, A, B, ...) so that a machine growing busier affects both;
the medians and their ratio. Then the choice alone: for Latin labels, for labels the
default font lacks on the first call of a process (it reads the installed fonts' character
maps) and on later calls (cached). Each first call runs in a fresh process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

REPEATS = 15

FIRST_CALL = """
import time
from matplotlib import font_manager
font_manager.fontManager  # matplotlib's font list is loaded by any picture anyway
from attnviz.render import fonts
start = time.perf_counter()
choice = fonts.choose({labels!r})
first = time.perf_counter() - start
start = time.perf_counter()
fonts.choose({labels!r})
again = time.perf_counter() - start
print(first, again, choice.families, repr(choice.missing))
"""


def main() -> None:
    import numpy as np

    from attnviz.maps.views import Heatmap
    from attnviz.render import fonts, image

    tokens = ["<bos>", "the", "small", "black", "cats", "see", "a", "red", "car", "<eos>"]
    n = len(tokens)
    weights = np.full((n, n), 1.0 / n, dtype=np.float32)
    heatmap = Heatmap("encoder_self", 0, None, 4, weights, tokens, tokens,
                      np.ones((n, n), bool))
    image.to_bytes([heatmap], "png", "viridis")  # warm up: imports, font cache

    real_choose = fonts.choose
    skipped = lambda text: fonts.FontChoice((), "")  # noqa: E731
    timings: dict[str, list[float]] = {"with the choice": [], "without": []}
    for _ in range(REPEATS):
        for name, choose in (("with the choice", real_choose), ("without", skipped)):
            fonts.choose = choose
            start = time.perf_counter()
            image.to_bytes([heatmap], "png", "viridis")
            timings[name].append(time.perf_counter() - start)
    fonts.choose = real_choose
    with_choice, without = (statistics.median(timings[k]) for k in timings)
    print(f"PNG of a 10-token map, Latin labels: {with_choice * 1000:.1f} ms with the font "
          f"choice, {without * 1000:.1f} ms without: ratio {with_choice / without:.3f}")

    start = time.perf_counter()
    for _ in range(1000):
        fonts.choose(tokens)
    print(f"choice for ASCII labels: {(time.perf_counter() - start) * 1000:.3f} µs a call")

    for what, labels in (("Latin-1 labels (café, naïve)", ["café", "naïve", "Straße"]),
                         ("Chinese, Japanese and an emoji", ["我爱你", "こんにちは", "🙂"])):
        out = subprocess.run([sys.executable, "-c", FIRST_CALL.format(labels=labels)],
                             capture_output=True, text=True, check=True).stdout.split(" ", 2)
        print(f"choice for {what}: first call {float(out[0]) * 1000:.1f} ms, then "
              f"{float(out[1]) * 1e6:.0f} µs; fallbacks {out[2].strip()}")


if __name__ == "__main__":
    main()
