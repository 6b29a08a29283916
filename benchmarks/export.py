"""attnviz export of 100 held-out pairs of the translate task, to PNG and to HTML: time and peak
memory, --jobs 1 against --jobs 2.

    python benchmarks/export.py            # about 4 minutes on 2 cores
    python benchmarks/export.py --quick    # one run of each

The runs alternate (jobs 1, jobs 2, jobs 1, ...) so that a machine that gets busier or quieter
affects both alike; the figures are medians. Every run starts from an empty output folder and
an empty render cache, so every pair is traced and drawn. Peak memory is the largest sum of
the resident sets of the export's processes (the main one and its workers), sampled every
50 ms, and the largest single process (wait4).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import ATTNVIZ, report, summary  # noqa: E402

PAIRS = 100
PAGE = os.sysconf("SC_PAGE_SIZE")


def write_pairs(path: Path, count: int = PAIRS) -> None:
    from attnviz.train.tasks import get_task, held_out_examples

    pairs = held_out_examples(get_task("translate"), count)
    path.write_text("".join(f"{p.source}\t{p.target}\n" for p in pairs), encoding="utf-8")


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and every process below it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in family} - family
        family |= below
        grew = bool(below)
    total = 0
    for pid in family:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def run(args: list[str], env: dict) -> tuple[float, int, int]:
    """Wall time, peak memory of the process tree and of its largest process (bytes)."""
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, **env})
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(process.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{stderr.decode()}")
    return elapsed, peak[0], usage.ru_maxrss * 1024


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src")]


def check(folder: Path, fmt: str, pairs: int = PAIRS) -> None:
    """Every pair has its file, and every link of the index resolves."""
    assert len(list(folder.glob(f"*.{fmt}"))) == pairs + (fmt == "html"), fmt
    parser = Links()
    parser.feed((folder / "index.html").read_text(encoding="utf-8"))
    assert len(parser.links) == pairs * (2 if fmt == "png" else 1)  # a picture: link and img
    assert all((folder / link).is_file() for link in parser.links)


RUNS = iter(range(10**6))  # every run gets its own output folder and render cache


def export(fmt: str, repeats: int, scratch: Path, pairs: Path, one: Path) -> None:
    print(f"export of {PAIRS} translate pairs to {fmt} (medians of {repeats}, alternating):",
          flush=True)
    counter = RUNS
    figures: dict[int, list[tuple[float, int, int]]] = {1: [], 2: []}
    alone: list[float] = []  # --jobs 1 of the first pair alone: the cost of starting
    for _ in range(repeats):
        for jobs, file, count in ((1, pairs, PAIRS), (2, pairs, PAIRS), (1, one, 1)):
            run_id = next(counter)
            out = scratch / f"{fmt}-{jobs}-{run_id}"
            env = {"ATTNVIZ_CACHE_DIR": str(scratch / f"cache-{run_id}"), "COLUMNS": "100"}
            figure = run([ATTNVIZ, "export", str(file), "--out-dir", str(out), "--format", fmt,
                          "--jobs", str(jobs)], env)
            check(out, fmt, count)
            if count == 1:
                alone.append(figure[0])
            else:
                figures[jobs].append(figure)
    medians = {}
    for jobs, runs in figures.items():
        seconds = statistics.median(r[0] for r in runs)
        medians[jobs] = seconds
        tree = max(r[1] for r in runs) / 1024**2
        single = max(r[2] for r in runs) / 1024**2
        print(f"  --jobs {jobs}: {seconds:.1f} s ({seconds / PAIRS * 1000:.0f} ms a pair; runs: "
              f"{', '.join(f'{r[0]:.1f}' for r in runs)} s); peak memory {tree:.0f} MB in all, "
              f"{single:.0f} MB in the largest process", flush=True)
        report(f"{fmt}, --jobs {jobs}: time (median)", seconds, None, "s")
        report(f"{fmt}, --jobs {jobs}: peak memory, all its processes", tree, None, "MB")
    report(f"{fmt}: --jobs 2 time / --jobs 1 time", medians[2] / medians[1], 1.0)
    started = statistics.median(alone)
    each = (medians[1] - started) / (PAIRS - 1) * 1000
    print(f"  one pair alone, --jobs 1: {started:.2f} s; so a pair once loaded takes {each:.0f} "
          f"ms", flush=True)
    report(f"{fmt}: one pair alone (--jobs 1)", started, None, "s")
    report(f"{fmt}: a pair once loaded ((--jobs 1 time - one pair's) / {PAIRS - 1})", each, None,
           "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--formats", default="png,html", help="comma-separated")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        pairs, one = Path(scratch) / "pairs.tsv", Path(scratch) / "one.tsv"
        write_pairs(pairs)
        write_pairs(one, 1)
        for fmt in args.formats.split(","):
            export(fmt, repeats, Path(scratch), pairs, one)
    summary(started, "load average at the end "
            + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
