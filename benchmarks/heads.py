"""attnviz heads: the atlas of a model of SmolLM2-135M's shape (30 layers x 9 heads, 3
key/value heads, width 576) on a 512-token text, beside the forward pass alone; and the atlas
of a 1,000-line corpus on the translate model, --jobs 1 against --jobs 2.

    python benchmarks/heads.py            # about 4 minutes on 2 cores
    python benchmarks/heads.py --quick    # one run of each

The 30 x 9 model is a random Llama with SmolLM2-135M's sizes (but a vocabulary of 2,001
words, so that its file is 0.4 GB), built with transformers and saved with save_pretrained in
a temporary folder; its text is 512 of those words. Every run starts with an empty render
cache (--no-cache), so every map is computed. Pairs of commands run alternately; the figures
are medians, and peak memory the largest resident set of the process (wait4; with --jobs 2
the largest of its processes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import ATTNVIZ, PY, report, run_once, summary  # noqa: E402

WORDS = 2000
TOKENS = 512
LINES = 1000


def smollm2_shaped(folder: Path) -> str:
    """A random decoder-only model of SmolLM2-135M's sizes, and a text of TOKENS tokens."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, **{f"w{i}": i + 1 for i in range(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>").save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=576, intermediate_size=1536,
                         num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         max_position_embeddings=2048, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, WORDS + 1, (TOKENS,), generator=generator).tolist()
    return " ".join(f"w{i - 1}" for i in ids)


def timed(name: str, runs: dict[str, list[tuple[float, int]]], args: list[str]) -> None:
    runs.setdefault(name, []).append(run_once(args, {"COLUMNS": "100"}))


def medians(runs: list[tuple[float, int]]) -> tuple[float, float]:
    """Median seconds, and the largest peak memory in GB."""
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs) / 1024**2


def big_model(repeats: int, scratch: Path) -> None:
    print("the atlas of a 30 x 9 model (SmolLM2-135M's shape) on a 512-token text:", flush=True)
    folder = scratch / "smollm2-shaped"
    # Built by another process: torch and transformers loaded here would count in the peak
    # memory of every command started after them (a fork's pages, before its exec).
    subprocess.run([PY, __file__, "--build", str(folder)], check=True)
    text = (folder / "text.txt").read_text()
    model = f"hf:{folder}"
    runs: dict[str, list[tuple[float, int]]] = {}
    maps = scratch / "maps.npz"
    for _ in range(repeats):
        timed("decode -o maps.npz (the forward pass, its maps saved)", runs,
              [ATTNVIZ, "decode", text, "-m", model, "-o", str(maps), "--no-cache"])
        timed("heads -o heads.json", runs,
              [ATTNVIZ, "heads", text, "-m", model, "-o", str(scratch / "h.json"), "--no-cache"])
        timed("heads --induction -o heads.json", runs,
              [ATTNVIZ, "heads", text, "-m", model, "--induction", "-o",
               str(scratch / "hi.json"), "--no-cache"])
        timed("heads -o heads.json -o heads.png", runs,
              [ATTNVIZ, "heads", text, "-m", model, "-o", str(scratch / "hp.json"), "-o",
               str(scratch / "h.png"), "--no-cache"])
        timed("heads --maps maps.npz -o heads.json (no model: the figures alone)", runs,
              [ATTNVIZ, "heads", "--maps", str(maps), "-o", str(scratch / "hm.json")])
    alone = [float(subprocess.run([PY, "-c", FIGURES_ALONE, str(maps)], check=True,
                                  capture_output=True, text=True).stdout)
             for _ in range(repeats)]
    found = {name: medians(values) for name, values in runs.items()}
    base = found["decode -o maps.npz (the forward pass, its maps saved)"][0]
    for name, (seconds, gigabytes) in found.items():
        print(f"  {name}: {seconds:.2f} s (runs: "
              f"{', '.join(f'{r[0]:.2f}' for r in runs[name])}), peak {gigabytes:.2f} GB",
              flush=True)
        report(f"30 x 9 at 512 tokens: {name}", seconds, None, "s")
        report("  its peak memory", gigabytes, None, "GB")
    print(f"  the figures alone, in one process, of the maps read: "
          f"{statistics.median(alone):.2f} s", flush=True)
    report("30 x 9 at 512 tokens: the figures and labels alone (attnviz.maps.atlas.atlas_of)",
           statistics.median(alone), None, "s")
    heads = found["heads -o heads.json"][0]
    report("30 x 9 at 512 tokens: heads -o heads.json / decode -o maps.npz", heads / base, None)
    report("30 x 9 at 512 tokens: heads --induction / heads",
           found["heads --induction -o heads.json"][0] / heads, None)


FIGURES_ALONE = """
import sys, time
from attnviz.maps.atlas import atlas_of
from attnviz.maps.data import AttentionMaps
maps = AttentionMaps.load(sys.argv[1])
started = time.perf_counter()
atlas_of(maps).to_bytes()
print(time.perf_counter() - started)
"""


def write_pairs(path: Path, count: int) -> None:
    from attnviz.train.tasks import get_task, held_out_examples

    pairs = held_out_examples(get_task("translate"), count)
    path.write_text("".join(f"{p.source}\t{p.target}\n" for p in pairs), encoding="utf-8")


def big_corpus(repeats: int, scratch: Path) -> None:
    print(f"the atlas of {LINES:,} translate pairs, --jobs 1 against --jobs 2:", flush=True)
    pairs = scratch / "pairs.tsv"
    subprocess.run([PY, __file__, "--pairs", str(pairs)], check=True)  # torch: not here
    runs: dict[int, list[tuple[float, int]]] = {1: [], 2: []}
    written: dict[int, bytes] = {}
    for _ in range(repeats):
        for jobs in (1, 2):
            out = scratch / f"corpus-{jobs}.json"
            runs[jobs].append(run_once([ATTNVIZ, "heads", "--pairs", str(pairs), "--jobs",
                                        str(jobs), "-o", str(out), "--no-cache"],
                                       {"COLUMNS": "100"}))
            written[jobs] = out.read_bytes()
    assert written[1] == written[2], "--jobs 1 and --jobs 2 wrote different atlases"
    found = {jobs: medians(values) for jobs, values in runs.items()}
    for jobs, (seconds, gigabytes) in found.items():
        print(f"  --jobs {jobs}: {seconds:.1f} s (runs: "
              f"{', '.join(f'{r[0]:.1f}' for r in runs[jobs])}), peak {gigabytes:.2f} GB in "
              "its largest process", flush=True)
        report(f"{LINES:,} lines, --jobs {jobs}: time (median)", seconds, None, "s")
    report(f"{LINES:,} lines: --jobs 2 time / --jobs 1 time", found[2][0] / found[1][0], 1.0)
    print("  the two atlases are the same bytes", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # the model, alone
    parser.add_argument("--pairs", type=Path, help=argparse.SUPPRESS)  # the corpus, alone
    args = parser.parse_args()
    if args.build:
        (args.build / "text.txt").write_text(smollm2_shaped(args.build))
        return
    if args.pairs:
        write_pairs(args.pairs, LINES)
        return
    repeats = 1 if args.quick else 3
    started = time.perf_counter()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as scratch:
        big_model(repeats, Path(scratch))
        big_corpus(repeats, Path(scratch))
    summary(started, f"load average at the start {load}, at the end "
            + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
