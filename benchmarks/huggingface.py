"""What ``-m hf:`` costs: encode on a tiny local Hugging Face model against encode on attnviz's
own random model, and against the import of transformers, measured in one run.

    pip install -e ".[hf]"
    python benchmarks/huggingface.py            # about 5 minutes on 2 busy cores
    python benchmarks/huggingface.py --quick    # fewer repetitions

The commands run in turn (A, B, C, D, E, A, B, ...), so that a machine that gets busier or
quieter during the run affects them alike; the figures are medians. The issue's target:
``-m hf:`` on a tiny local model adds at most the import of transformers to encode's time,
that is (hf encode - random encode) <= (the floor with transformers - the floor without).
The import is measured twice: ``import transformers`` alone (lazy: it loads little), and
with the modules that loading any model needs (``transformers.modeling_utils``, which is
where transformers imports most of torch); the second is what a model costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import ATTNVIZ, PY, SENTENCE, run_once  # noqa: E402 - the other benchmark's tools

# A BERT of 2 layers, 2 heads and width 8, with a word-level tokenizer: a few thousand
# weights, so that what is measured is start-up and loading, not arithmetic. Built in a
# child process, so that this one stays small (a child inherits its parent's pages).
BUILD = """
import sys, torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

words = sorted(set(sys.argv[2].split()))
vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
tokenizer.post_processor = processors.TemplateProcessing(
    single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
                        ).save_pretrained(sys.argv[1])
torch.manual_seed(0)
config = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=16, max_position_embeddings=64)
BertForMaskedLM(config).save_pretrained(sys.argv[1])
"""


def medians(commands: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """The median wall time of each command, run in turn ``repeats`` times after one
    untimed warm-up round (bytecode compiled, files in the page cache)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeats + 1):
        for name, args in commands.items():
            seconds, _ = run_once(args)
            if round_:
                times[name].append(seconds)
        print(f"  round {round_}/{repeats}", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    repeats = 3 if parser.parse_args().quick else 9
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "tiny-bert"
        subprocess.run([PY, "-c", BUILD, str(model), SENTENCE], check=True,
                       capture_output=True)
        commands = {
            "hf": [ATTNVIZ, "encode", SENTENCE, "-m", f"hf:{model}", "--no-cache"],
            "random": [ATTNVIZ, "encode", SENTENCE, "-m", "random", "--no-cache"],
            "floor": [PY, "-c", "import torch, typer, rich"],
            "floor+transformers": [PY, "-c", "import torch, typer, rich, transformers"],
            "floor+model code": [PY, "-c", "import torch, typer, rich, "
                                            "transformers.modeling_utils"],
        }
        os.environ["COLUMNS"] = "100"
        times = medians(commands, repeats)
    ms = {name: round(seconds * 1000) for name, seconds in times.items()}
    added = ms["hf"] - ms["random"]
    bare = ms["floor+transformers"] - ms["floor"]
    needed = ms["floor+model code"] - ms["floor"]
    print("medians of commands run in turn:")
    print(f"  attnviz encode TEXT -m hf:<tiny local BERT>  {ms['hf']} ms")
    print(f"  attnviz encode TEXT -m random                {ms['random']} ms")
    print(f"  python -c 'import torch, typer, rich'        {ms['floor']} ms")
    print(f"  ... and transformers                         {ms['floor+transformers']} ms")
    print(f"  ... and transformers.modeling_utils          {ms['floor+model code']} ms")
    print(f"hf encode / random encode: {times['hf'] / times['random']:.2f}x")
    print(f"-m hf: adds {added} ms to encode; import transformers adds {bare} ms to the floor, "
          f"and with the modules every model needs {needed} ms")
    verdict = "met" if added <= needed else "NOT MET"
    print(f"target: -m hf: adds at most the import of transformers ({added} ms <= {needed} ms): "
          f"{verdict}; what is left beyond the import: {added - needed} ms")
    print(f"\n{date.today()}, {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}; "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
