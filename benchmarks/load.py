"""attnviz on a busy machine: each command idle and beside one busy process, as ratios.

    python benchmarks/load.py            # eval and a 300-step training, about 6 minutes on 2 cores
    python benchmarks/load.py --quick    # fewer repetitions, about 3 minutes
    python benchmarks/load.py --sizes    # then where more threads start to pay (2 minutes)
    python benchmarks/load.py --suite    # then the test suite, once idle and once loaded

"Loaded" means one CPU-bound process (``python -c "while True: pass"``) that this script
starts before the command and kills after it; "idle" means no such process. Idle and loaded
runs alternate (idle, loaded, idle, ...), so that a machine that gets busier or quieter
during the run affects both alike; the figures are the medians and their ratio. The same is
then measured with torch's default thread count (one per core, attnviz's behaviour before
it chose), forced with ``--threads``. A run that exceeds the time limit is stopped and
counts as the limit (shown as ">=").

Other processes are not under this script's control: it measures the CPU time they took
during the run (from /proc/stat, less its own processes') and prints it, so that a reader
can tell an idle machine from a shared one.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

BIN = Path(sys.executable).parent
ATTNVIZ = str(BIN / "attnviz")
PY = sys.executable
BUSY = [PY, "-c", "while True: pass"]
LIMIT = 60.0  # seconds: a run stopped here counts as this long
ROOT = Path(__file__).resolve().parent.parent

ROWS: list[tuple[str, str, str, str]] = []  # what, measured, target, verdict
OTHERS: list[float] = []  # CPU seconds other processes took, per measured run
WALL: list[float] = []  # the wall time of the same runs


def clean_environment() -> dict[str, str]:
    """This process's environment without the thread variables, so that attnviz chooses."""
    return {name: value for name, value in os.environ.items()
            if name not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def cpu_seconds_used() -> float:
    """CPU seconds spent by everything on the machine since boot (not idle, not iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - fields[3] - fields[4]) / ticks  # all but idle and iowait


@contextmanager
def beside_busy_process(loaded: bool) -> Iterator[None]:
    """With ``loaded``, one CPU-bound process runs from 0.2 s before the block until its end;
    the other processes' CPU time during the block is added to ``OTHERS``."""
    busy = subprocess.Popen(BUSY) if loaded else None
    try:
        if busy:
            time.sleep(0.2)  # let it start spinning
        machine, ours = cpu_seconds_used(), _own_cpu_seconds(busy)
        started = time.perf_counter()
        yield
        WALL.append(time.perf_counter() - started)
        OTHERS.append(max(0.0, cpu_seconds_used() - machine - (_own_cpu_seconds(busy) - ours)))
    finally:
        if busy:
            busy.kill()
            busy.wait()


def _own_cpu_seconds(busy: subprocess.Popen | None) -> float:
    """CPU seconds of this process, of its children that ended, and of the busy process."""
    import resource

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    if busy:
        with open(f"/proc/{busy.pid}/stat") as stat:  # fields 14, 15: utime, stime
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_once(args: list[str], loaded: bool, env: dict[str, str], cwd: Path | None = None
             ) -> tuple[float, bool]:
    """Wall time of one process (beside a busy one if ``loaded``), and whether it was stopped
    at the limit."""
    with beside_busy_process(loaded):
        started = time.perf_counter()
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=env, cwd=cwd or tempfile.gettempdir())
        try:
            process.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            process.kill()  # at the limit, or when this script is stopped
            process.wait()
        elapsed = time.perf_counter() - started
    stopped = elapsed >= LIMIT
    if not stopped and process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(args)}")
    return min(elapsed, LIMIT), stopped


def idle_and_loaded(args: list[str], repeats: int, env: dict[str, str]
                    ) -> tuple[list[float], list[float], bool, bool]:
    """``repeats`` runs idle and as many loaded, alternately; whether an idle run, and
    whether a loaded run, was stopped at the limit."""
    times: dict[bool, list[float]] = {False: [], True: []}
    stopped = {False: False, True: False}
    for _ in range(repeats):
        for loaded in (False, True):
            seconds, hit = run_once(args, loaded, env)
            times[loaded].append(seconds)
            stopped[loaded] |= hit
    return times[False], times[True], stopped[False], stopped[True]


def report(what: str, value: float, target: float | None, unit: str = "x",
           bound: str = "") -> None:
    """A row of the table; ``bound`` (">=", "<=") when runs stopped at the limit make the
    value a bound."""
    verdict = "" if target is None else ("met" if value <= target else "NOT MET")
    shown = (f"{bound} " if bound else "") + (f"{value:.2f}{unit}" if unit == "x"
                                              else f"{value:.2f} {unit}")
    ROWS.append((what, shown, "" if target is None else f"<= {target}{unit}", verdict))
    print(f"  {what}: {shown} {'' if target is None else f'(target <= {target}{unit}: {verdict})'}",
          flush=True)


def seconds_list(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


def commands(repeats: int) -> None:
    env = clean_environment()
    default = torch_default_threads(env)
    scratch = tempfile.TemporaryDirectory()
    model = str(Path(scratch.name) / "x.safetensors")
    measured = {
        "eval --model translate --task translate": [ATTNVIZ, "eval", "--model", "translate",
                                                    "--task", "translate"],
        "train --task translate --steps 300": [ATTNVIZ, "train", "--task", "translate",
                                               "--steps", "300", "-o", model],
    }
    for name, args in measured.items():
        print(f"attnviz {name} (medians of {repeats} idle and {repeats} loaded runs):",
              flush=True)
        first = len(WALL)
        idle, loaded, _, _ = idle_and_loaded(args, repeats, env)
        print(f"  attnviz's choice: idle {seconds_list(idle)} s; loaded {seconds_list(loaded)} s")
        report(f"{name}, idle", statistics.median(idle), None, "s")
        report(f"{name}, loaded / idle", statistics.median(loaded) / statistics.median(idle),
               1.5)

        old_idle, old_loaded, idle_stopped, loaded_stopped = idle_and_loaded(
            [*args, "--threads", str(default)], max(2, repeats // 2), env)
        print(f"  torch's default, {default} threads: idle {seconds_list(old_idle)} s; "
              f"loaded {seconds_list(old_loaded)} s (runs stop at {LIMIT:.0f} s)")
        report(f"{name}, {default} threads (torch's default), idle",
               statistics.median(old_idle), None, "s", ">=" if idle_stopped else "")
        if not idle_stopped:
            report(f"{name}, {default} threads (torch's default), loaded / idle",
                   statistics.median(old_loaded) / statistics.median(old_idle), None,
                   bound=">=" if loaded_stopped else "")
        report(f"{name}, idle: attnviz's choice / torch's default",
               statistics.median(idle) / statistics.median(old_idle), None,
               bound="<=" if idle_stopped else "")
        report_others(first)
    scratch.cleanup()


def report_others(first: int) -> None:
    """The cores other processes kept busy, on average, since measured run ``first``."""
    cores = sum(OTHERS[first:]) / max(1e-9, sum(WALL[first:]))
    report("  other processes meanwhile, cores busy on average", cores, None, "cores")


def torch_default_threads(env: dict[str, str]) -> int:
    """The thread count torch starts with here when no variable sets it."""
    done = subprocess.run([PY, "-c", "import torch; print(torch.get_num_threads())"],
                          env=env, capture_output=True, text=True, check=True)
    return int(done.stdout)


def suite() -> None:
    """The test suite, once idle and once loaded: slow, so measured once each."""
    print("the test suite, python -m pytest -q (once idle, once loaded):", flush=True)
    global LIMIT
    LIMIT = 900.0
    args = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests")]
    env = clean_environment()
    first = len(WALL)
    idle, _ = run_once(args, False, env, ROOT)
    loaded, _ = run_once(args, True, env, ROOT)
    report("python -m pytest -q, idle", idle, None, "s")
    report("python -m pytest -q, loaded / idle", loaded / idle, 1.5)
    report_others(first)


def sizes(seconds: float) -> None:
    """Where a second thread starts to pay: one training step, and one forward pass, of
    models of growing width and inputs of growing length, on 1 thread and on all the cores,
    idle and loaded. In this process: what is measured is the computation alone."""
    import torch

    cores = torch.get_num_threads()
    print(f"sizes: time on 1 thread / on {cores} threads, in-process medians "
          f"(above 1: more threads pay):", flush=True)
    cases = [(f"training step, width {width}, batch 64 x 12 tokens ({_size(width, 64, 12)})",
              _training_step(width)) for width in (64, 128, 256, 512)]
    cases += [(f"forward, width {width}, batch 256 x 12 tokens ({_size(width, 256, 12)})",
               _forward(width, 256, 12)) for width in (64, 128, 256, 512)]
    cases += [(f"forward, width 64, 1 text of {length} tokens ({_size(64, 1, length)})",
               _forward(64, 1, length)) for length in (256, 512, 1024, 2048)]
    first = len(WALL)
    for name, step in cases:
        for loaded in (False, True):
            with beside_busy_process(loaded):
                one, many = _one_against_many(step, cores, seconds)
            report(f"{name}, {'loaded' if loaded else 'idle'}: 1 thread / {cores}",
                   one / many, None)
            print(f"    (1 thread {one * 1000:.1f} ms, {cores} threads {many * 1000:.1f} ms)",
                  flush=True)
    torch.set_num_threads(cores)
    report_others(first)


def _size(width: int, batch: int, longest: int) -> str:
    from attnviz.runtime import Work

    return f"{Work(width, batch, longest).multiply_adds / 1e6:,.0f} M multiply-adds a layer"


def _one_against_many(step, cores: int, seconds: float) -> tuple[float, float]:
    """Medians of ``step`` on 1 thread and on ``cores`` threads, alternately, for about
    ``seconds`` (at least 3 of each)."""
    import torch

    step()  # warm-up: allocations, one-time kernels
    times = {1: [], cores: []}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times[1]) < 3:
        for count, values in times.items():
            torch.set_num_threads(count)
            started = time.perf_counter()
            step()
            values.append(time.perf_counter() - started)
    return statistics.median(times[1]), statistics.median(times[cores])


def _model(width: int):
    import torch

    from attnviz.config import ModelConfig
    from attnviz.model import Transformer

    torch.manual_seed(0)
    return Transformer(ModelConfig(source_vocab_size=64, target_vocab_size=64, d_model=width,
                                   n_heads=4, d_ff=4 * width, max_target_length=64))


def _training_step(width: int):
    """One optimizer step of a 2+2-layer model, as ``attnviz train`` takes them."""
    import torch
    import torch.nn.functional as F

    model = _model(width).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    source = torch.randint(4, 64, (64, 12))  # (B, S)
    target = torch.randint(4, 64, (64, 12))  # (B, T)

    def step() -> None:
        logits = model(source, target).logits  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _forward(width: int, batch: int, length: int):
    """One forward pass with every attention map, as ``eval``, ``encode`` and ``decode`` do."""
    import torch

    model = _model(width).eval()
    source = torch.randint(4, 64, (batch, length))  # (B, S)
    target = torch.randint(4, 64, (batch, min(length, 64)))  # (B, T)

    def step() -> None:
        with torch.inference_mode():
            model(source, target)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sizes", action="store_true",
                        help="also measure where more threads start to pay")
    parser.add_argument("--suite", action="store_true",
                        help="also time the test suite, once idle and once loaded")
    args = parser.parse_args()
    # Stopped from outside: end as after Ctrl-C, so that no busy process outlives this one.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(143))
    started = time.perf_counter()
    commands(3 if args.quick else 5)
    if args.suite:
        suite()
    if args.sizes:
        sizes(1.0 if args.quick else 3.0)
    others = sum(OTHERS) / max(1e-9, sum(WALL))
    print(f"\n{date.today()}, {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}; {time.perf_counter() - started:.0f} s in all; other "
          f"processes used {others:.2f} cores on average while measuring\n")
    print("| measure | measured | target | |")
    print("| --- | --- | --- | --- |")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
