"""What the explain view and the decoding animation cost beyond the forward pass, with the
translate model, measured in one run.

    python benchmarks/explain_views.py            # about 3 minutes on 2 busy cores
    python benchmarks/explain_views.py --quick    # fewer repetitions

In this process (torch and matplotlib already imported, fonts found), each pair of calls runs
alternately (A, B, A, B, ...) so that a machine that gets busier or quieter affects both
alike; the figures are medians. "The forward pass" is what ``decode`` computes before drawing:
``attnviz.trace(TEXT, cache=False)`` (greedy decoding, then one teacher-forced pass). Then
whole commands, as a person runs them (first runs: nothing in attnviz's cache), against
``decode -o x.png``.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import ATTNVIZ, ROWS, SENTENCE, alternate, report  # noqa: E402 - run.py's tools


def timed_pair(a, b, repeats: int) -> tuple[float, float]:
    """Median seconds of two calls run alternately, after one untimed round of each."""
    a(), b()
    times_a, times_b = [], []
    for _ in range(repeats):
        for call, times in ((a, times_a), (b, times_b)):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
    return statistics.median(times_a), statistics.median(times_b)


def in_process(repeats: int) -> None:
    from rich.console import Console

    import attnviz
    from attnviz.maps import views
    from attnviz.render import animation, explain_image, explain_terminal, image

    print(f"in one process, translate model, {SENTENCE!r} (medians):", flush=True)

    def forward():
        return attnviz.trace(SENTENCE, cache=False)

    def explained():
        return attnviz.explain(SENTENCE, kind="self", layer=1, head=0)

    forward_s, explain_s = timed_pair(forward, explained, repeats)
    print(f"  forward pass (trace) {forward_s * 1000:.0f} ms; explain's data (greedy decoding, "
          f"then the blocks up to layer 1) {explain_s * 1000:.0f} ms", flush=True)
    report("explain's data / the forward pass", explain_s / forward_s, None)

    maps = forward()
    heatmaps = views.heatmaps(maps)
    explanation = explained()

    def explain_png():
        return explain_image.to_bytes(explanation, "png", "viridis")

    def decode_png():
        return image.to_bytes(heatmaps, "png", "viridis")

    explain_png_s, decode_png_s = timed_pair(explain_png, decode_png, repeats)
    report("explain view to PNG, beyond the forward pass", explain_png_s, None, "s")
    report("  against decode's three maps to PNG", explain_png_s / decode_png_s, None)

    def explain_text():
        console = Console(file=io.StringIO(), width=100, color_system="truecolor",
                          force_terminal=True)
        explain_terminal.show(console, explanation, "viridis")

    text_s, _ = timed_pair(explain_text, lambda: None, repeats)
    report("explain view in the terminal (100 columns), beyond the forward pass", text_s,
           None, "s")

    def gif():
        return animation.to_bytes(maps, heatmaps, "viridis")

    gif_s, decode_png_s = timed_pair(gif, decode_png, repeats)
    frames = len(maps.target_tokens)
    report(f"decoding GIF ({frames} frames), beyond the forward pass", gif_s, None, "s")
    report("  per frame", gif_s / frames, None, "s")
    report("  against decode's three maps to PNG", gif_s / decode_png_s, None)
    print(f"  the GIF holds {len(gif()) / 1024:.0f} KB", flush=True)


def commands(repeats: int) -> None:
    print("whole commands, first runs (medians of alternating runs):", flush=True)
    scratch = tempfile.TemporaryDirectory()
    counter = iter(range(10**6))

    def fresh_cache() -> dict:
        return {"ATTNVIZ_CACHE_DIR": f"{scratch.name}/fresh{next(counter)}"}

    out = Path(scratch.name)
    decode_png = [ATTNVIZ, "decode", SENTENCE, "-o", str(out / "d.png")]
    for what, args in (
            ("explain -o x.png", [ATTNVIZ, "explain", SENTENCE, "--kind", "self", "-o",
                                  str(out / "e.png")]),
            ("decode -o x.gif", [ATTNVIZ, "decode", SENTENCE, "-o", str(out / "d.gif")])):
        measured, floor, _, _ = alternate(args, decode_png, repeats, env_a=fresh_cache,
                                          env_b=fresh_cache)
        a, b = statistics.median(measured), statistics.median(floor)
        print(f"  {what} {a * 1000:.0f} ms; decode -o x.png {b * 1000:.0f} ms", flush=True)
        report(f"{what} / decode -o x.png (first runs)", a / b, None)
    scratch.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 3 if args.quick else 9
    started = time.perf_counter()
    commands(repeats)  # before this process loads torch: a child inherits its pages
    in_process(repeats)
    print(f"\n{date.today()}, {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}; {time.perf_counter() - started:.0f} s in all\n")
    print("| measure | measured |")
    print("| --- | --- |")
    for what, measured, _, _ in ROWS:
        print(f"| {what} | {measured} |")


if __name__ == "__main__":
    main()
