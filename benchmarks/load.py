"""attnviz on a busy machine: each command idle and beside one busy process, as ratios.

    python benchmarks/load.py            # eval and a 300-step training: 5 minutes on 2 cores
    python benchmarks/load.py --quick    # fewer repetitions
    python benchmarks/load.py --sizes    # then where more threads start to pay
    python benchmarks/load.py --suite    # then the test suite, once idle and once loaded

"Loaded" means one CPU-bound process (``python -c "while True: pass"``) that this script
starts before the command and kills after it; "idle" means no such process. Idle and loaded
runs alternate (idle, loaded, idle, ...), so that a machine that gets busier or quieter
during the run affects both alike; the figures are the medians and their ratio. The same is
then measured with torch's default thread count (one per core: attnviz's behaviour before it
chose), forced with ``--threads``. A run that exceeds the time limit is stopped and counts
as the limit (the figure is then a bound: ">=", "<=").

Other processes are not under this script's control. It measures the CPU time they take
during each run (from /proc/stat, less its own processes'); a run during which they kept
more than a sixth of a core busy is run again, twice at most, and each section says how busy
they kept the machine in the runs it kept. On a shared machine, read the figures with that.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import ATTNVIZ, PY, summary  # noqa: E402

BUSY = [PY, "-c", "while True: pass"]
ROOT = Path(__file__).resolve().parent.parent
LIMIT = 60.0  # seconds: a run stopped here counts as this long
QUIET = 1 / 6  # cores: other processes busier than this during a run spoil it
RETRIES = 2  # times a spoilt run is run again; after that it is kept as it is
TICK = os.sysconf("SC_CLK_TCK")

ROWS: list[tuple[str, str, str, str]] = []  # what, measured, target, verdict


@dataclass
class Interval:
    """A measured stretch of time and how busy other processes kept the machine."""

    seconds: float = 0.0
    others: float = 0.0  # cores other processes kept busy, on average

    @property
    def quiet(self) -> bool:
        return self.others <= QUIET


class Section:
    """The intervals kept in one section of the benchmark, for its line on other processes."""

    def __init__(self) -> None:
        self.kept: list[Interval] = []
        self.again = 0  # runs measured again because other processes were busy

    def report(self) -> None:
        seconds = sum(interval.seconds for interval in self.kept)
        others = sum(i.others * i.seconds for i in self.kept) / max(1e-9, seconds)
        report(f"  other processes meanwhile, cores busy on average ({self.again} runs "
               f"measured again)", others, None, "cores")


def clean_environment() -> dict[str, str]:
    """This process's environment without the thread variables, so that attnviz chooses."""
    return {name: value for name, value in os.environ.items()
            if name not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def machine_cpu_seconds() -> float:
    """CPU seconds spent by everything on the machine since boot (not idle, not iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def own_cpu_seconds(busy: subprocess.Popen | None) -> float:
    """CPU seconds of this process, of its children that ended, and of the busy process."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    if busy:
        with open(f"/proc/{busy.pid}/stat") as stat:  # fields 14 and 15: utime, stime
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


@contextmanager
def measuring(busy: subprocess.Popen | None = None) -> Iterator[Interval]:
    """Times the block, and how busy processes other than this script's kept the machine."""
    interval = Interval()
    machine, ours = machine_cpu_seconds(), own_cpu_seconds(busy)
    started = time.perf_counter()
    yield interval
    interval.seconds = time.perf_counter() - started
    others = machine_cpu_seconds() - machine - (own_cpu_seconds(busy) - ours)
    interval.others = max(0.0, others) / interval.seconds


@contextmanager
def busy_process(loaded: bool) -> Iterator[subprocess.Popen | None]:
    """With ``loaded``, one CPU-bound process, spinning from 0.2 s before the block until its
    end, whatever happens."""
    if not loaded:
        yield None
        return
    busy = subprocess.Popen(BUSY)
    try:
        time.sleep(0.2)
        yield busy
    finally:
        busy.kill()
        busy.wait()


def run_once(args: list[str], loaded: bool, env: dict[str, str], cwd: Path | None = None
             ) -> tuple[Interval, bool]:
    """One process (beside a busy one if ``loaded``); whether it was stopped at the limit."""
    with busy_process(loaded) as busy, measuring(busy) as interval:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=env, cwd=cwd or tempfile.gettempdir())
        try:
            process.wait(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            process.kill()  # at the limit, or when this script is stopped
            process.wait()
    stopped = interval.seconds >= LIMIT
    if not stopped and process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(args)}")
    interval.seconds = min(interval.seconds, LIMIT)
    return interval, stopped


def run_quietly(args: list[str], loaded: bool, env: dict[str, str], section: Section,
                cwd: Path | None = None) -> tuple[float, bool]:
    """Wall time of ``run_once``, run again (``RETRIES`` times at most) while other
    processes spoil it, unless it was stopped at the limit (a bound either way)."""
    for attempt in range(RETRIES + 1):
        interval, stopped = run_once(args, loaded, env, cwd)
        if interval.quiet or stopped or attempt == RETRIES:
            break
        section.again += 1
    section.kept.append(interval)
    return interval.seconds, stopped


def idle_and_loaded(args: list[str], repeats: int, env: dict[str, str], section: Section
                    ) -> tuple[list[float], list[float], bool, bool]:
    """``repeats`` runs idle and as many loaded, alternately; whether an idle run, and
    whether a loaded run, was stopped at the limit."""
    times: dict[bool, list[float]] = {False: [], True: []}
    stopped = {False: False, True: False}
    for _ in range(repeats):
        for loaded in (False, True):
            seconds, hit = run_quietly(args, loaded, env, section)
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
        section = Section()
        idle, loaded, _, _ = idle_and_loaded(args, repeats, env, section)
        print(f"  attnviz's choice: idle {seconds_list(idle)} s; loaded {seconds_list(loaded)} s")
        report(f"{name}, idle", statistics.median(idle), None, "s")
        report(f"{name}, loaded / idle", statistics.median(loaded) / statistics.median(idle),
               1.5)

        old_idle, old_loaded, idle_stopped, loaded_stopped = idle_and_loaded(
            [*args, "--threads", str(default)], max(2, repeats // 2), env, section)
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
        section.report()
    scratch.cleanup()


def torch_default_threads(env: dict[str, str]) -> int:
    """The thread count torch starts with here when no variable sets it."""
    done = subprocess.run([PY, "-c", "import torch; print(torch.get_num_threads())"],
                          env=env, capture_output=True, text=True, check=True)
    return int(done.stdout)


def suite() -> None:
    """The test suite, once idle and once loaded: slow, so measured once each."""
    global LIMIT
    print("the test suite, python -m pytest -q (once idle, once loaded):", flush=True)
    LIMIT = 900.0
    args = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    section = Section()
    idle, _ = run_quietly(args, False, clean_environment(), section, ROOT)
    loaded, _ = run_quietly(args, True, clean_environment(), section, ROOT)
    report("python -m pytest -q, idle", idle, None, "s")
    report("python -m pytest -q, loaded / idle", loaded / idle, 1.5)
    section.report()


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
    section = Section()
    for name, step in cases:
        for loaded in (False, True):
            with busy_process(loaded) as busy:
                one, many, kept = _one_against_many(step, cores, seconds, busy, section)
            report(f"{name}, {'loaded' if loaded else 'idle'}: 1 thread / {cores}",
                   one / many, None)
            print(f"    (1 thread {one * 1000:.1f} ms, {cores} threads {many * 1000:.1f} ms; "
                  f"{kept} quiet pairs)", flush=True)
    torch.set_num_threads(cores)
    section.report()


def _size(width: int, batch: int, longest: int) -> str:
    """Multiply-adds of one layer, about: per token, the four projections of attention
    (4 D^2) and the feed-forward layer (8 D^2, at d_ff = 4 D), and the attention weights and
    their mix of values (2 x longest x D)."""
    adds = batch * longest * (12 * width ** 2 + 2 * longest * width)
    return f"{adds / 1e6:,.0f} M multiply-adds a layer"


def _one_against_many(step: Callable[[], None], cores: int, seconds: float,
                      busy: subprocess.Popen | None, section: Section
                      ) -> tuple[float, float, int]:
    """Medians of ``step`` on 1 thread and on ``cores`` threads, and the pairs kept.

    Pairs (1 thread, then ``cores``) are measured for about ``seconds``; a pair during which
    other processes were busy is left out, unless no pair at all is quiet within three
    times that. Each measurement repeats ``step`` for at least 0.1 s, so that /proc/stat's
    ticks can tell.
    """
    import torch

    torch.set_num_threads(1)
    step()  # warm-up: allocations, one-time kernels
    started = time.perf_counter()
    step()
    repeats = max(1, round(0.1 / max(1e-6, time.perf_counter() - started)))
    quiet: dict[int, list[float]] = {1: [], cores: []}
    spoilt: dict[int, list[float]] = {1: [], cores: []}
    intervals: dict[bool, list[Interval]] = {True: [], False: []}  # quiet or not
    end = time.perf_counter() + seconds
    while (time.perf_counter() < end and len(quiet[1]) < 50) or (
            len(quiet[1]) < 3 and time.perf_counter() < end + 2 * seconds):
        pair = {}
        with measuring(busy) as interval:
            for count in quiet:
                torch.set_num_threads(count)
                started = time.perf_counter()
                for _ in range(repeats):
                    step()
                pair[count] = (time.perf_counter() - started) / repeats
        kept = quiet if interval.quiet else spoilt
        for count, value in pair.items():
            kept[count].append(value)
        intervals[interval.quiet].append(interval)
    chosen = quiet if quiet[1] else spoilt
    section.kept += intervals[bool(quiet[1])]
    section.again += len(intervals[False]) if quiet[1] else 0
    return (statistics.median(chosen[1]), statistics.median(chosen[cores]), len(quiet[1]))


def _model(width: int):
    import torch

    from attnviz.model.config import ModelConfig
    from attnviz.model.transformer import Transformer

    torch.manual_seed(0)
    return Transformer(ModelConfig(source_vocab_size=64, target_vocab_size=64, d_model=width,
                                   n_heads=4, d_ff=4 * width, max_target_length=64))


def _training_step(width: int) -> Callable[[], None]:
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


def _forward(width: int, batch: int, length: int) -> Callable[[], None]:
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
        sizes(2.0 if args.quick else 6.0)
    summary(started, rows=ROWS)


if __name__ == "__main__":
    main()
