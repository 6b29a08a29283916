"""How well a model does a task: exact match, token accuracy, and where cross-attention looks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from attnviz.model.checkpoint import Checkpoint
from attnviz.model.tokenize import BOS_ID, EOS_ID, PAD_ID
from attnviz.model.transformer import rule_out_specials
from attnviz.train.batches import make_batch, too_large_for_memory
from attnviz.train.tasks import Example


@dataclass(frozen=True)
class Metrics:
    examples: int
    exact_match: float  # share of greedy outputs equal to the target, token for token
    token_accuracy: float  # share of target tokens (and end tokens) predicted right, teacher-forced
    # Per decoder layer: share of target tokens whose largest cross-attention weight (mean over
    # heads) is on their aligned source token; None when the examples carry no alignment.
    alignment: tuple[float, ...] | None = None

    @property
    def best_alignment_layer(self) -> int | None:
        if not self.alignment:
            return None
        return max(range(len(self.alignment)), key=lambda layer: self.alignment[layer])

    def to_dict(self) -> dict:
        return {"examples": self.examples, "exact_match": self.exact_match,
                "token_accuracy": self.token_accuracy,
                "alignment": list(self.alignment) if self.alignment else None}


@torch.inference_mode()
def evaluate(checkpoint: Checkpoint, examples: list[Example], batch_size: int = 256,
             device: torch.device | str = "cpu") -> Metrics:
    """Measure ``checkpoint`` on ``examples``; the model is left in eval mode."""
    model = checkpoint.model.eval()
    exact = correct = counted = 0
    layers = checkpoint.config.n_decoder_layers
    aligned = torch.zeros(layers)
    aligned_count = 0
    with_alignment = all(e.alignment is not None for e in examples)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = make_batch(checkpoint, chunk, device)
        output = model(batch.source, batch.decoder_input)
        real = batch.decoder_target != PAD_ID  # (B, T)
        predicted = rule_out_specials(output.logits.clone()).argmax(-1)  # (B, T)
        correct += int(((predicted == batch.decoder_target) & real).sum())
        counted += int(real.sum())

        # An output longer than every target of the batch is wrong whatever comes next, so
        # decoding stops there: the same figures, without writing up to max_target_length
        # tokens for each example a model that has not learnt to stop is given.
        longest = int(real.sum(-1).max())  # the longest target's tokens, and its <eos>
        limit = min(longest, checkpoint.config.max_target_length)
        generated = model.generate(batch.source, limit)  # (B, T'): <bos> then the output
        for row, example in zip(generated.tolist(), batch.decoder_target.tolist(), strict=True):
            expected = [t for t in example if t not in (PAD_ID, EOS_ID)]
            exact += [t for t in row if t not in (PAD_ID, BOS_ID)] == expected

        if with_alignment:
            cross = output.attention.weights("cross").mean(dim=2)  # (B, L, T, S): mean of heads
            for b, example in enumerate(chunk):
                # Row j is the decoder step whose input is the token before target token j:
                # the step that predicts it.
                rows = torch.arange(len(example.alignment))
                looked_at = cross[b, :, rows].argmax(-1)  # (L, n)
                aligned += (looked_at == torch.tensor(example.alignment)).sum(-1).float()
                aligned_count += len(example.alignment)
    alignment = tuple((aligned / max(1, aligned_count)).tolist()) if with_alignment else None
    return Metrics(len(examples), exact / max(1, len(examples)), correct / max(1, counted),
                   alignment)


def measure(model: str, *, task: str | None, data: Path | None, examples: int | None = None,
            device: str = "cpu", threads: int | None = None) -> Metrics:
    """``attnviz eval``: a model (shipped name or file) on a task's test set or on pairs.

    ``examples`` is the size of the task's test set (default 1,000); pairs are all used.
    ``threads``: torch's CPU threads, restored after; None chooses
    (:func:`attnviz.model.runtime.choose_threads`).
    """
    from attnviz.errors import AttnvizError
    from attnviz.model.catalog import resolve
    from attnviz.model.checkpoint import load_checkpoint
    from attnviz.model.runtime import choose_threads, resolve_device, using_threads
    from attnviz.train.options import MAX_TEST_EXAMPLES
    from attnviz.train.pairs import check_one_source, read_examples
    from attnviz.train.tasks import TEST_SIZE, all_tasks, get_task, held_out_examples

    check_one_source(task, data)
    if examples is not None and data is not None:
        raise AttnvizError("⟨examples⟩ sizes a ⟨task⟩ test set; with ⟨data⟩ every pair is used")
    if examples is not None and not 1 <= examples <= MAX_TEST_EXAMPLES:
        raise AttnvizError(f"⟨examples⟩ must be at least 1 and at most {MAX_TEST_EXAMPLES:,}, "
                           f"got {examples:,}")
    if model == "random":
        raise AttnvizError("the random model has nothing to measure; give a trained model")
    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(resolve(model), torch_device)
    if task is not None:
        trained_on = checkpoint.info.get("task")
        if trained_on in all_tasks() and trained_on != task:
            raise AttnvizError(f"model {model} was trained on the {trained_on} task, not on "
                               f"{task}; measure it with ⟨task⟩ {trained_on}")
        chosen = held_out_examples(get_task(task), examples or TEST_SIZE)
    else:
        chosen = read_examples(data, checkpoint.target_tokenizer,
                            checkpoint.config.max_target_length,
                            way_out="this model cannot write targets that long; leave it out")
    _warn_of_unknown_words(checkpoint, chosen, model)
    try:
        with using_threads(choose_threads(threads)):
            return evaluate(checkpoint, chosen, device=torch_device)
    except RuntimeError as exc:
        if not too_large_for_memory(exc):
            raise
        raise AttnvizError("measuring does not fit in memory; measure on shorter pairs"
                           ) from None


def _warn_of_unknown_words(checkpoint: Checkpoint, examples: list[Example], model: str) -> None:
    """Warn when the examples hold tokens the model's vocabularies lack, read as <unk>, with
    their share of each side (as decode warns of the words of one text): "exact match 0.0%"
    alone did not say that the model never saw the words."""
    import shlex
    import warnings

    from attnviz.errors import AttnvizWarning
    from attnviz.model.tokenize import UNK_ID

    shares = []
    for side, tokenizer, ids, text in (
            ("source", checkpoint.source_tokenizer, checkpoint.source_ids, "source"),
            ("target", checkpoint.target_tokenizer, checkpoint.target_ids, "target")):
        read = [token for example in examples
                for token in ids(tokenizer.split(getattr(example, text)))]
        unknown = sum(token == UNK_ID for token in read)
        if unknown:
            shares.append(f"{unknown / len(read):.1%} of the {side} tokens ({unknown:,} of "
                          f"{len(read):,})")
    if shares:
        warnings.warn(f"{' and '.join(shares)} are not in this model's vocabulary and are read "
                      "as <unk>: the figures measure words it never learnt; see the words it "
                      f"knows with `attnviz models {shlex.quote(model)} --vocab`",
                      AttnvizWarning, stacklevel=3)
