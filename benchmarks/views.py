"""The views that draw many maps at once: their time beyond the forward pass, and memory.

    python benchmarks/views.py            # 7 runs of each case, about two minutes on 2 cores
    python benchmarks/views.py --quick    # 3 runs

Cases (each a fresh process, so imports count, as they do for a person at the terminal):

- grid: the translate model's every layer and head (2 x 4, and the mean), of every kind, to
  PNG: ``attnviz decode SENTENCE --layer all --head all -o grid.png``.
- grid 6x8 at 256: a random model of 6 layers and 8 heads, 256 source tokens, encoder
  self-attention, every layer and head, to PNG.
- 512 every kind: the random model, a 511-word source and target (512 tokens each with
  <eos> and <bos>), every kind at one layer, one PNG. Target: at most 1 s beyond the forward
  pass, for the drawing (importing matplotlib, which any picture needs, is shown apart).

Each case runs in a child process that times itself: the forward pass (``attnviz.trace``
without the cache), then everything after it (importing matplotlib, choosing the panels,
drawing, writing the PNG), in wall time and in the CPU time of the process (attnviz runs
torch on one thread, and drawing is single-threaded, so on a quiet machine the two agree;
on a shared one, the CPU time is what other processes did not inflate). The cases run
alternately (A, B, C, A, B, C, ...), so that a machine that gets busier affects all alike;
the figures are medians. Peak memory is the child's maximum resident set size (wait4), and
the same command through the CLI is timed too, for the whole picture. The load average
before and after says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

BIN = Path(sys.executable).parent
ATTNVIZ = str(BIN / "attnviz")
SENTENCE = "the small black cats see a red car"
WORDS = [f"w{i}" for i in range(200)]
# What any command that draws a PNG imports, as benchmarks/run.py's floor does.
FLOOR = [sys.executable, "-c", "import torch, typer, rich, matplotlib.figure"]


def words(count: int, seed: int) -> str:
    """``count`` words of WORDS, the same for the same seed."""
    import random

    chooser = random.Random(seed)
    return " ".join(chooser.choice(WORDS) for _ in range(count))


LONG_SOURCE, LONG_TARGET = words(511, 1), words(511, 2)
MEDIUM_SOURCE = words(255, 3)


def make_model(path: Path) -> None:
    """A random word-level model of 6 layers and 8 heads that knows WORDS."""
    import torch

    from attnviz.model.checkpoint import Checkpoint, save_checkpoint
    from attnviz.model.config import ModelConfig
    from attnviz.model.tokenize import Tokenizer, Vocabulary
    from attnviz.model.transformer import Transformer

    vocab = Vocabulary.build([WORDS])
    config = ModelConfig(source_vocab_size=len(vocab), target_vocab_size=len(vocab),
                         d_model=64, n_heads=8, n_encoder_layers=6, n_decoder_layers=6,
                         d_ff=128, max_target_length=64)
    torch.manual_seed(0)
    tokenizer = Tokenizer("word")
    save_checkpoint(Checkpoint(Transformer(config).eval(), tokenizer, tokenizer, vocab, vocab,
                               {"task": "benchmark"}), path)


def cases(model: Path) -> dict[str, dict]:
    """What each case traces and draws: trace() arguments, plan() arguments, CLI arguments."""
    return {
        "grid 2x4 translate, every kind": dict(
            trace=dict(source=SENTENCE, model="translate"),
            plan=dict(layer="all", head="all"),
            cli=["decode", SENTENCE, "--layer", "all", "--head", "all"]),
        "grid 6x8 random, 256 tokens, encoder": dict(
            trace=dict(source=MEDIUM_SOURCE, model=str(model), part="encoder"),
            plan=dict(layer="all", head="all"),
            cli=["encode", MEDIUM_SOURCE, "-m", str(model), "--layer", "all", "--head", "all"]),
        "512 tokens, every kind, one layer": dict(
            trace=dict(source=LONG_SOURCE, target=LONG_TARGET, model="random"),
            plan=dict(),
            cli=["decode", LONG_SOURCE, "-t", LONG_TARGET, "-m", "random"]),
    }


def child(spec: dict, output: str) -> None:
    """One run: the forward pass, then the picture; prints their times as JSON."""
    import warnings

    import torch  # noqa: F401 - imported before the clock starts: it is not the forward pass

    import attnviz

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started, started_cpu = time.perf_counter(), time.process_time()
        maps = attnviz.trace(**spec["trace"], cache=False)
        forward, forward_cpu = time.perf_counter(), time.process_time()
        import matplotlib.figure  # noqa: F401 - the CLI imports it to draw, so it counts

        from attnviz.io.atomic import write_atomically
        from attnviz.maps import views
        from attnviz.render import image

        imported, imported_cpu = time.perf_counter(), time.process_time()
        plan = views.plan(maps, **spec["plan"])
        write_atomically(Path(output), image.to_bytes(plan, "png", "viridis"))
    done, done_cpu = time.perf_counter(), time.process_time()
    print(json.dumps({"forward": forward - started, "forward_cpu": forward_cpu - started_cpu,
                      "beyond": done - forward, "beyond_cpu": done_cpu - forward_cpu,
                      "matplotlib": imported - forward,
                      "matplotlib_cpu": imported_cpu - forward_cpu,
                      "draw": done - imported, "draw_cpu": done_cpu - imported_cpu,
                      "panels": len(plan.panels)}))


def measure(args: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall time, peak memory (KB) and standard output of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})})
    out = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args[:6])} ...")
    return elapsed, usage.ru_maxrss, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs of each case, not 7")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--make-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_model:
        make_model(Path(args.make_model))
        return
    if args.child:
        child(cases(Path(args.model))[args.child], args.output)
        return
    repeats = 3 if args.quick else 7
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "six-by-eight.safetensors"
        # Made by a child: this process stays small, as a child's peak memory counts what
        # it inherited before exec.
        subprocess.run([sys.executable, __file__, "--make-model", str(model)], check=True)
        specs = cases(model)
        runs: dict[str, list[dict]] = {name: [] for name in specs}
        cli: dict[str, list[tuple[float, int]]] = {name: [] for name in specs}
        floor: list[float] = []  # the imports any picture needs, between the cases
        png = str(Path(scratch) / "x.png")
        counter = iter(range(10**6))
        for _ in range(repeats):
            for name, spec in specs.items():
                seconds, kilobytes, out = measure(
                    [sys.executable, __file__, "--child", name, "--output", png,
                     "--model", str(model)])
                runs[name].append({**json.loads(out), "wall": seconds, "memory": kilobytes})
                fresh = {"ATTNVIZ_CACHE_DIR": f"{scratch}/cache{next(counter)}"}
                seconds, kilobytes, _ = measure([ATTNVIZ, *spec["cli"], "-o", png], fresh)
                cli[name].append((seconds, kilobytes))
                floor.append(measure(FLOOR)[0])
        print(f"{date.today()}, {os.cpu_count()} cores, {platform.machine()}, Python "
              f"{platform.python_version()}; {repeats} runs of each, alternating; "
              f"{time.perf_counter() - started:.0f} s in all; load average {load_before:.1f} "
              f"before, {os.getloadavg()[0]:.1f} after\n")
        print("Seconds of wall time (and of the process's CPU time). \"Beyond\" is everything "
              "after the forward pass: importing matplotlib, then drawing (choosing the "
              "panels, drawing them, the PNG file). The target is on the drawing: importing "
              "matplotlib is the floor of any picture, whatever it shows.\n")
        print(f"The floor, `{' '.join(FLOOR[1:])}`: {statistics.median(floor):.2f} s "
              "(median), measured between the cases; the CLI's ratio to it is steadier on a "
              "busy machine than its time.\n")
        print("| case | panels | forward pass | beyond it | import matplotlib | drawing | "
              "peak memory | CLI -o x.png, first run | CLI / floor | CLI peak memory | "
              "target |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in specs:
            median = {key: statistics.median(run[key] for run in runs[name])
                      for key in ("forward", "beyond", "matplotlib", "draw")}
            cpu = {key: statistics.median(run[f"{key}_cpu"] for run in runs[name])
                   for key in median}
            memory = max(run["memory"] for run in runs[name]) / 1024
            cli_time = statistics.median(t for t, _ in cli[name])
            cli_memory = max(m for _, m in cli[name]) / 1024
            target = ""
            if name.startswith("512"):
                target = (f"drawing <= 1 s: {'met' if median['draw'] <= 1.0 else 'NOT MET'} "
                          f"(CPU: {'met' if cpu['draw'] <= 1.0 else 'NOT MET'})")
            shown = " | ".join(f"{median[key]:.2f} s ({cpu[key]:.2f} s)" for key in median)
            print(f"| {name} | {runs[name][0]['panels']} | {shown} | {memory:.0f} MB | "
                  f"{cli_time:.2f} s | {cli_time / statistics.median(floor):.2f}x | "
                  f"{cli_memory:.0f} MB | {target} |")


if __name__ == "__main__":
    main()
