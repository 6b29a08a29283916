"""Retrain every shipped model from scratch, as samples/README.md says, and check the result.

For each `attnviz train ...` command listed in samples/README.md this prints the wall time
of the command, whether the new file is byte-identical to the shipped one (same seed, same
result), and what `attnviz eval` measures on the task's held-out test set.

    python benchmarks/train_shipped.py            # all three, about 4 minutes here
    python benchmarks/train_shipped.py dates      # one of them
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LIMIT_SECONDS = 180  # the budget for training one shipped model on 2 cores


def commands() -> dict[str, list[str]]:
    """The training command of each shipped model, by name, from samples/README.md."""
    found = {}
    for line in (ROOT / "samples" / "README.md").read_text().splitlines():
        if line.startswith("attnviz train "):
            args = shlex.split(line)
            output = args[args.index("-o") + 1]
            found[Path(output).stem] = args
    return found


def main(names: list[str]) -> int:
    listed = commands()
    chosen = names or list(listed)
    rows, failed = [], False
    with tempfile.TemporaryDirectory() as scratch:
        for name in chosen:
            args = listed[name]
            shipped = ROOT / args[args.index("-o") + 1]
            fresh = Path(scratch) / shipped.name
            args = [str(BIN / "attnviz"), *args[1:]]
            args[args.index("-o") + 1] = str(fresh)
            started = time.perf_counter()
            subprocess.run(args, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
            seconds = time.perf_counter() - started
            identical = _digest(fresh) == _digest(shipped) if shipped.exists() else None
            task = args[args.index("--task") + 1]
            report = subprocess.run([str(BIN / "attnviz"), "eval", "--model", str(fresh),
                                     "--task", task], check=True, capture_output=True,
                                    text=True).stdout
            exact = re.search(r"exact match\s+([\d.]+%)", report).group(1)
            alignment = re.search(r"layer (\d+)\s+([\d.]+%)\s+\(best\)", report)
            rows.append((name, seconds, identical, exact,
                         f"{alignment.group(2)} (layer {alignment.group(1)})" if alignment
                         else "-"))
            failed |= seconds > LIMIT_SECONDS or float(exact.rstrip("%")) < 99.5
    print(f"{'model':<10} {'train s':>8} {'same bytes as shipped':>22} {'exact match':>12} "
          f"{'alignment':>18}")
    for name, seconds, identical, exact, alignment in rows:
        print(f"{name:<10} {seconds:>8.1f} {str(identical):>22} {exact:>12} {alignment:>18}")
    print(f"(budget: {LIMIT_SECONDS} s of training and 99.5% exact match per model; "
          f"{os.cpu_count()} cores)")
    return 1 if failed else 0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
