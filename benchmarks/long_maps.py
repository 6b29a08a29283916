"""Long texts through a Llama of SmolLM2-135M's shape (30 layers, 9 heads sharing 3 key/value
heads, width 576; random weights), against a reference process that runs transformers' eager
forward with ``output_attentions=True`` on the same tokens.

    pip install -e ".[hf]"
    python benchmarks/long_maps.py               # about 25 minutes on 2 busy cores
    python benchmarks/long_maps.py --only 1000   # one of the cases

Cases (the issue's targets):
- about 1,000 tokens, every layer kept, float32, written to .npz: peak memory <= 1.1x the
  reference's, time <= 1.2x;
- 2,048 tokens, one layer kept: peak memory <= 0.4x the reference's at the same length;
- 4,096 tokens, one layer kept: completes (the reference would hold 18 GB of maps);
- 4,096 tokens, every layer in float16: completes on this machine.

Each process is timed from outside and its peak resident memory read by /usr/bin/time -v;
reference and subject alternate, and the ratios are of one run's medians. Both run on one
thread (OMP_NUM_THREADS=1), as attnviz does by default.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

# The model: SmolLM2-135M's sizes, random weights, and a word-level tokenizer in which every
# word of the text is one token (no special tokens), so that N words are N tokens.
BUILD = """
import sys, torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

words = [f"w{i}" for i in range(1000)]
vocab = {"<unk>": 0, **{w: i + 1 for i, w in enumerate(words)}}
tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>").save_pretrained(sys.argv[1])
torch.manual_seed(0)
config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                     num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                     max_position_embeddings=8192, rope_theta=100000.0,
                     tie_word_embeddings=True, architectures=["LlamaForCausalLM"])
LlamaModel(config).save_pretrained(sys.argv[1])
"""

REFERENCE = """
import sys, torch
from transformers import AutoModel, AutoTokenizer
folder, text = sys.argv[1], open(sys.argv[2]).read()
tokenizer = AutoTokenizer.from_pretrained(folder)
ids = torch.tensor([tokenizer(text)["input_ids"]])
model = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
with torch.inference_mode():
    out = model(input_ids=ids, output_attentions=True)
print(len(out.attentions), tuple(out.attentions[0].shape))
"""

MAXRSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds and peak resident GB of one process, and its last line of output."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                          env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command[:6])}...\n"
                         f"{done.stderr[-2000:]}")
    peak = int(MAXRSS.search(done.stderr)[1]) / 1024**2
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return seconds, peak, last


def text_of(tokens: int) -> str:
    return " ".join(f"w{i % 1000}" for i in range(tokens))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["1000", "2048", "4096", "4096-float16"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        folder = work / "smollm2-shape"
        subprocess.run([sys.executable, "-c", BUILD, str(folder)], check=True, env=env,
                       capture_output=True)
        print(f"{date.today()} {platform.machine()} {os.cpu_count()} cores, Python "
              f"{platform.python_version()}; load {os.getloadavg()[0]:.2f} at the start")
        cases = {"1000": (1000, [], 2, True), "2048": (2048, ["--layer", "15"], 1, True),
                 "4096": (4096, ["--layer", "15"], 1, False),
                 "4096-float16": (4096, ["--precision", "float16"], 1, False)}
        for name, (tokens, options, repeats, with_reference) in cases.items():
            if args.only and args.only != name:
                continue
            text = work / f"text-{tokens}.txt"
            text.write_text(text_of(tokens))
            output = ["-o", str(work / "maps.npz")] if name != "4096-float16" else []
            subject = [sys.executable, "-m", "attnviz", "decode", text_of(tokens), "-m",
                       f"hf:{folder}", "--no-cache", *options, *output]
            reference = [sys.executable, "-c", REFERENCE, str(folder), str(text)]
            runs: dict[str, list[tuple[float, float]]] = {"reference": [], "attnviz": []}
            for _ in range(max(repeats, args.repeats) if name == "1000" else repeats):
                if with_reference:
                    seconds, peak, _ = measured(reference, env)
                    runs["reference"].append((seconds, peak))
                seconds, peak, _ = measured(subject, {**env, "COLUMNS": "100"})
                runs["attnviz"].append((seconds, peak))
                (work / "maps.npz").unlink(missing_ok=True)
            line = f"{name} tokens, attnviz {' '.join(options) or 'every layer, float32'}" \
                f"{' -o maps.npz' if output else ' (terminal)'}: "
            time_a = statistics.median(s for s, _ in runs["attnviz"])
            peak_a = max(p for _, p in runs["attnviz"])
            line += f"{time_a:.1f} s, peak {peak_a:.2f} GB"
            if with_reference:
                time_r = statistics.median(s for s, _ in runs["reference"])
                peak_r = max(p for _, p in runs["reference"])
                line += (f"; reference {time_r:.1f} s, peak {peak_r:.2f} GB; ratios: memory "
                         f"{peak_a / peak_r:.2f}x, time {time_a / time_r:.2f}x")
            print(line, flush=True)
        print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
