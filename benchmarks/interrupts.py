"""Ctrl-C at any moment of a command's start-up: how do the runs end?

    python benchmarks/interrupts.py                 # 200 runs, SIGINT from 0.05 to 1.5 s
    python benchmarks/interrupts.py --runs 50 --last 3.0 -- decode "the cat" --no-cache
    python benchmarks/interrupts.py --program OTHER/attnviz   # another install, to compare

Each run starts the installed ``attnviz`` console script (the one next to this Python) with
the given command (by default ``encode "the cat sees a car" --no-cache``, which imports torch
from inside the source) and sends it SIGINT after a delay; the delays are spread evenly over
``--first`` to ``--last`` seconds, so that some land while Python starts, some while
``attnviz.cli`` is imported, some while torch is imported, some while the model runs.

A run ends well when it is ended by SIGINT (or exits 130) with nothing on stderr or one line,
and no "Traceback" or "Exception ignored" in it. The script prints how many runs ended each
way, and the stderr of the first run of each bad kind. A run that ended before its signal was
sent counts apart ("finished first"): it says nothing about interrupts.
"""

from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import time
from pathlib import Path

ATTNVIZ = Path(sys.executable).parent / "attnviz"
DEFAULT = ["encode", "the cat sees a car", "--no-cache"]


def outcome(returncode: int, stderr: str) -> str:
    """The kind of ending: "ok" or what went wrong."""
    if returncode not in (-signal.SIGINT, 128 + signal.SIGINT):
        if returncode < 0:
            return f"killed by {signal.Signals(-returncode).name}"
        return f"exit {returncode}"
    if "Traceback" in stderr or "Exception ignored" in stderr:
        return "traceback"
    if stderr.count("\n") > 1:
        return "more than one line"
    return "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--first", type=float, default=0.05, help="earliest delay, seconds")
    parser.add_argument("--last", type=float, default=1.5, help="latest delay, seconds")
    parser.add_argument("--program", default=str(ATTNVIZ), help="the attnviz script to run")
    parser.add_argument("command", nargs="*", default=DEFAULT)
    options = parser.parse_args()
    # Started in the background by a shell without job control, this script ignores SIGINT,
    # and so would each attnviz it starts: give them Python's usual Ctrl-C instead.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    delays: dict[str, list[float]] = collections.defaultdict(list)
    examples: dict[str, str] = {}
    step = (options.last - options.first) / max(options.runs - 1, 1)
    for index in range(options.runs):
        delay = options.first + index * step
        process = subprocess.Popen([options.program, *options.command], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.002)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            stderr = process.communicate(timeout=120)[1]
            kind = outcome(process.returncode, stderr)
        else:
            stderr = process.communicate()[1]
            kind = "finished first"
        delays[kind].append(delay)
        if kind not in ("ok", "finished first") and kind not in examples:
            examples[kind] = f"(SIGINT at {delay:.2f} s)\n{stderr}"
    print(f"attnviz {' '.join(options.command)}: {options.runs} runs, SIGINT at "
          f"{options.first}-{options.last} s")
    for kind, sent in sorted(delays.items(), key=lambda item: -len(item[1])):
        print(f"  {len(sent):4d}  {kind:20s} (SIGINT at {min(sent):.3f}-{max(sent):.3f} s)")
    for kind, text in examples.items():
        print(f"\n--- first {kind} {text}")


if __name__ == "__main__":
    main()
