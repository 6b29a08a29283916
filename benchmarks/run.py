"""attnviz's speed and memory against their floors, as ratios measured in one run.

    python benchmarks/run.py            # the whole suite, a few minutes on 2 cores
    python benchmarks/run.py --quick    # fewer repetitions

Each pair of commands is run alternately (A, B, A, B, ...), so that a machine that gets
busier or quieter during the run affects both alike; the figures are the medians and
their ratio. Peak memory is the maximum resident set size of the process (wait4).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from functools import partial
from pathlib import Path

BIN = Path(sys.executable).parent
ATTNVIZ = str(BIN / "attnviz")
PY = sys.executable
SENTENCE = "the small black cats see a red car"
# 2,048 characters of dates for the character-level model.
LONG = ("march 3, 2021 tuesday, 03/03/2021 mar 3 21 " * 60)[:2048]

ROWS: list[tuple[str, str, str, str]] = []  # what, measured, target, verdict


def run_once(args: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall time in seconds and peak memory in KB of one process.

    The peak includes what the child inherited from this process before exec, so keep
    this process small while measuring (see main).
    """
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(args)}")
    return elapsed, usage.ru_maxrss


def alternate(a: list[str], b: list[str], repeats: int, env_a=None, env_b=None, before=None
              ) -> tuple[list[float], list[float], list[int], list[int]]:
    """Run A and B alternately; ``before`` (if given) runs before each run, untimed."""
    times_a, times_b, memory_a, memory_b = [], [], [], []
    for _ in range(repeats):
        for args, env, times, memory in ((a, env_a, times_a, memory_a),
                                         (b, env_b, times_b, memory_b)):
            if before:
                before()
            seconds, kilobytes = run_once(args, env() if callable(env) else env)
            times.append(seconds)
            memory.append(kilobytes)
    return times_a, times_b, memory_a, memory_b


def report(what: str, value: float, target: float | None, unit: str = "x") -> None:
    verdict = "" if target is None else ("met" if value <= target else "NOT MET")
    shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.2f} {unit}"
    ROWS.append((what, shown, "" if target is None else f"<= {target}{unit}", verdict))
    print(f"  {what}: {shown} {'' if target is None else f'(target <= {target}{unit}: {verdict})'}",
          flush=True)


def summary(started: float, *notes: str, rows: list | None = None) -> None:
    """The machine, the ``notes`` on it, the time since ``started`` (perf_counter), then the
    table of every row reported (``ROWS`` unless ``rows``), ready for the README."""
    said = "".join(f"; {note}" for note in notes)
    print(f"\n{date.today()}, {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}{said}; {time.perf_counter() - started:.0f} s in all\n")
    print("| measure | measured | target | |")
    print("| --- | --- | --- | --- |")
    for row in ROWS if rows is None else rows:
        print("| " + " | ".join(row) + " |")


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def startup(repeats: int) -> None:
    print("start-up (medians of alternating runs):", flush=True)
    floor_pass = [PY, "-c", "pass"]
    floor_typer = [PY, "-c", "import typer"]
    floor_torch = [PY, "-c", "import torch, typer, rich"]
    floor_mpl = [PY, "-c", "import torch, typer, rich, matplotlib; matplotlib.use('Agg'); "
                           "import matplotlib.pyplot"]

    python, typer_only, _, _ = alternate(floor_pass, floor_typer, repeats)
    print(f"  floors: python -c pass {median_ms(python)}, import typer {median_ms(typer_only)}")
    helps, typers, _, _ = alternate([ATTNVIZ, "--help"], floor_typer, repeats)
    print(f"  attnviz --help {median_ms(helps)}")
    report("attnviz --help / import typer", statistics.median(helps) /
           statistics.median(typers), 3.0)

    scratch = tempfile.TemporaryDirectory()
    counter = iter(range(10**6))

    def fresh_cache() -> dict:  # a first run: nothing in attnviz's cache yet
        return {"ATTNVIZ_CACHE_DIR": f"{scratch.name}/fresh{next(counter)}", "COLUMNS": "100"}

    encode, floor, _, _ = alternate([ATTNVIZ, "encode", SENTENCE], floor_torch, repeats,
                                    env_a=fresh_cache)
    print(f"  encode to the terminal, first run {median_ms(encode)}; "
          f"import torch, typer, rich {median_ms(floor)}")
    report("encode TEXT (terminal, first run) / torch+typer+rich floor",
           statistics.median(encode) / statistics.median(floor), 1.15)

    png = str(Path(scratch.name) / "x.png")
    decode, floor2, _, _ = alternate([ATTNVIZ, "decode", SENTENCE, "-o", png], floor_mpl,
                                     repeats, env_a=fresh_cache)
    print(f"  decode -o x.png, first run {median_ms(decode)}; floor with matplotlib "
          f"{median_ms(floor2)}")
    report("decode TEXT -o x.png (first run) / floor with matplotlib",
           statistics.median(decode) / statistics.median(floor2), 1.2)

    warm = {"ATTNVIZ_CACHE_DIR": f"{scratch.name}/warm", "COLUMNS": "100"}
    run_once([ATTNVIZ, "decode", SENTENCE, "-o", png], warm)
    svg = str(Path(scratch.name) / "x.svg")
    hit, first, _, _ = alternate(
        [ATTNVIZ, "decode", SENTENCE, "--layer", "0", "--head", "2", "-o", svg],
        [ATTNVIZ, "decode", SENTENCE, "-o", png], repeats, env_a=warm, env_b=fresh_cache)
    print(f"  the same with another layer, head and format (cache hit) {median_ms(hit)}")
    report("decode again, other layer/head/format (cache hit) / first run",
           statistics.median(hit) / statistics.median(first), 0.35)
    hit_terminal, first_terminal, _, _ = alternate(
        [ATTNVIZ, "decode", SENTENCE, "--kind", "self", "--head", "1"],
        [ATTNVIZ, "decode", SENTENCE, "--kind", "self", "--head", "1"], repeats,
        env_a=warm, env_b=fresh_cache)
    report("decode to the terminal again (cache hit) / first run",
           statistics.median(hit_terminal) / statistics.median(first_terminal), None)

    saved = str(Path(scratch.name) / "saved.npz")
    run_once([ATTNVIZ, "decode", SENTENCE, "-o", saved], fresh_cache())
    shows, floor_numpy, _, _ = alternate(
        [ATTNVIZ, "show", saved, "--kind", "cross"],
        [PY, "-c", "import typer, rich, numpy"], repeats, env_a={"COLUMNS": "100"})
    print(f"  show saved.npz to the terminal {median_ms(shows)}; import typer, rich, numpy "
          f"{median_ms(floor_numpy)}")
    report("show x.npz (terminal) / import typer, rich, numpy",
           statistics.median(shows) / statistics.median(floor_numpy), 2.0)

    _, _, memory, memory_torch = alternate([ATTNVIZ, "encode", SENTENCE],
                                           [PY, "-c", "import torch"], max(3, repeats // 2),
                                           env_a=fresh_cache)
    print(f"  peak memory: encode {max(memory) / 1024:.0f} MB, import torch "
          f"{max(memory_torch) / 1024:.0f} MB")
    report("peak memory of encode TEXT / of import torch",
           max(memory) / max(memory_torch), 1.4)
    scratch.cleanup()


def attention(repeats: int) -> None:
    """The shared attention function in attnviz's multi-head layer, against torch's own."""
    import torch
    import torch.nn.functional as F

    from attnviz.model import attention as shared
    from attnviz.model.transformer import MultiHeadAttention

    print("attention, 8 heads, d = 512, self-attention, batch 1 (medians):", flush=True)
    torch.manual_seed(0)
    width, heads = 512, 8
    ours = MultiHeadAttention(width, heads).eval()
    theirs = torch.nn.MultiheadAttention(width, heads, batch_first=True).eval()
    with torch.no_grad():  # the same projections in both
        theirs.in_proj_weight.copy_(torch.cat([ours.query_proj.weight, ours.key_proj.weight,
                                               ours.value_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.query_proj.bias, ours.key_proj.bias,
                                             ours.value_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    for n in (128, 512, 2048):
        x = torch.randn(1, n, width)
        count = repeats * (8 if n < 2048 else 4)
        with torch.inference_mode():
            out_ours, weights_ours = ours(x, x)
            out_theirs, weights_theirs = theirs(x, x, x, need_weights=True,
                                                average_attn_weights=False)
            torch.testing.assert_close(out_ours, out_theirs, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(weights_ours, weights_theirs, atol=1e-5, rtol=1e-4)
            q, k, v = (ours._split_heads(p(x)) for p in (ours.query_proj, ours.key_proj,
                                                          ours.value_proj))
            calls = {
                "ours": partial(ours, x, x),
                "mha": partial(theirs, x, x, x, need_weights=True, average_attn_weights=False),
                "function": partial(shared.scaled_dot_product_attention, q, k, v),
                "sdpa": partial(F.scaled_dot_product_attention, q, k, v),
            }
            times = {name: [] for name in calls}
            for _ in range(count):
                for name, call in calls.items():
                    started = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - started)
        med = {name: statistics.median(values) for name, values in times.items()}
        print(f"  N = {n}: attnviz layer {med['ours'] * 1000:.2f} ms, "
              f"nn.MultiheadAttention {med['mha'] * 1000:.2f} ms; attnviz function "
              f"{med['function'] * 1000:.2f} ms, F.scaled_dot_product_attention "
              f"{med['sdpa'] * 1000:.2f} ms", flush=True)
        report(f"N={n}: attnviz layer with weights / nn.MultiheadAttention(need_weights)",
               med["ours"] / med["mha"], 1.0)
        report(f"N={n}: attnviz function with weights / F.scaled_dot_product_attention "
               "(no weights)", med["function"] / med["sdpa"], None)


def long_text(repeats: int) -> None:
    from rich.console import Console

    from attnviz.maps import views
    from attnviz.maps.data import AttentionMaps
    from attnviz.render import terminal

    print("a 2,048-character text with the dates model:", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        npz = Path(scratch) / "long.npz"
        timings, memories = [], []
        for index in range(max(2, repeats // 2)):
            seconds, kilobytes = run_once(
                [ATTNVIZ, "encode", LONG, "-m", "dates", "-o", str(npz)],
                {"ATTNVIZ_CACHE_DIR": f"{scratch}/c{index}"})
            timings.append(seconds)
            memories.append(kilobytes)
        report("encode 2,048 characters to .npz (first run), median", statistics.median(
            timings), None, "s")
        report("  its peak memory", max(memories) / 1024 ** 2, 1.5, "GB")
        maps = AttentionMaps.load(npz)
        assert maps.encoder_self.shape[-1] == len(LONG) + 1
        heatmap = views.heatmap(maps, "encoder_self", 1, None)
        draw = []
        for _ in range(max(3, repeats)):
            console = Console(file=io.StringIO(), width=100, color_system="truecolor",
                              force_terminal=True)
            started = time.perf_counter()
            terminal.show(console, [heatmap], "viridis")
            draw.append(time.perf_counter() - started)
        assert "pooled" in console.file.getvalue()
        report("terminal view of it, pooled to 100 columns (beyond the forward pass)",
               statistics.median(draw), 1.0, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 3 if args.quick else 9
    started = time.perf_counter()
    # Processes are measured before this one loads torch or big arrays: a child's peak
    # memory counts what it inherited from its parent before exec.
    startup(repeats)
    long_text(repeats)
    attention(repeats)
    summary(started)


if __name__ == "__main__":
    main()
