"""Training a model on a task or on pairs of sentences, keeping the best model on validation.

The loop knows nothing of terminals: it reports through a callback, and a KeyboardInterrupt
stops it cleanly with the best weights so far.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from attnviz.errors import AttnvizError
from attnviz.model.checkpoint import Checkpoint
from attnviz.model.config import (
    MAX_LAYERS,
    MAX_MODEL_FILE_BYTES,
    MAX_TOKEN_CHARS,
    MAX_VOCABULARY_SIZE,
    ModelConfig,
)
from attnviz.model.tokenize import PAD_ID, SPECIALS, Tokenizer, Vocabulary
from attnviz.model.transformer import Transformer
from attnviz.train.batches import make_batch, too_large_for_memory
from attnviz.train.evaluate import Metrics, evaluate
from attnviz.train.options import (
    MAX_VALIDATION_PAIRS,
    PATIENCE,
    VALIDATION_SHARE,
    TrainOptions,
)
from attnviz.train.tasks import Example, Task, examples, held_out_examples

# Below this many validation pairs, a warning says that validation's figures rest on few
# pairs: with 9, one pair moves exact match by 11 points, and the best model is chosen by it.
FEW_VALIDATION_PAIRS = 20
HELD_OUT = "held-out test set"


@dataclass(frozen=True)
class Progress:
    step: int
    loss: float  # mean training loss since the last report
    validation: Metrics | None  # set at validation steps


@dataclass
class TrainResult:
    checkpoint: Checkpoint  # holding the best weights on validation
    best: Metrics | None  # validation metrics of those weights
    best_step: int
    steps_done: int
    seconds: float
    interrupted: bool
    measured: Metrics | None = None  # by fit(), after training
    # What stopped training (Ctrl-C, or a SIGTERM turned into Terminated): a command raises it
    # again once the model is saved, to end as any interrupted command does.
    interruption: KeyboardInterrupt | None = None
    measured_on: str = ""  # what fit() measured on: "held-out test set", ...
    # Training ended before its last step because validation exact match was 100% at
    # PATIENCE validations in a row (options.early_stop).
    stopped_early: bool = False
    steps_asked: int = 0  # options.steps


@dataclass(frozen=True)
class Data:
    """Where training examples come from, and the validation set."""

    tokenizer: Tokenizer
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    batches: Callable[[int, int], Iterator[list[Example]]]  # (batch size, seed) -> batches
    validation: list[Example]
    max_target_length: int
    training_size: int = 0  # pairs in one epoch; 0 for a task's endless stream
    validation_name: str = "validation set"  # what the validation examples are, for people


def task_data(task: Task, seed: int, validation_size: int = 500) -> Data:
    """Fresh examples from the task's training part; validation from its validation part."""
    from attnviz.train.tasks import draw

    def batches(batch_size: int, batch_seed: int) -> Iterator[list[Example]]:
        stream = examples(task, batch_seed, "train")
        while True:
            yield [next(stream) for _ in range(batch_size)]

    validation = draw(task, validation_size, seed + 1, "validation")
    return Data(task.tokenizer, Vocabulary([*SPECIALS, *task.source_tokens]),
                Vocabulary([*SPECIALS, *task.target_tokens]), batches, validation,
                task.max_target_length + 4)  # some room: a confused model is not cut short


def pairs_data(pairs: list[Example], tokenizer: Tokenizer, validation_share: float, seed: int,
               max_target_length: int) -> Data:
    """A shuffled split of the pairs; the vocabularies hold the training side's tokens.

    ``validation_share`` is in [0, 1); with 0, validation uses training pairs. Validation
    measures at most ``MAX_VALIDATION_PAIRS`` of its pairs (the first of the shuffled split,
    so the same ones for the same seed), and says so in ``validation_name``. Warns
    (AttnvizWarning) when it measures fewer than ``FEW_VALIDATION_PAIRS``. Raises
    AttnvizError when the split leaves no pair to train on.
    """
    unique = list(dict.fromkeys(pairs))
    random.Random(seed).shuffle(unique)
    cut = round(len(unique) * validation_share) if len(unique) > 1 else 0
    validation, training = unique[:cut], unique[cut:]
    if not training:
        raise AttnvizError(
            f"a validation share of {validation_share:g} of the {len(unique)} distinct pairs "
            "leaves no pair to train on; lower ⟨validation_share⟩ (with 0, validation uses the "
            "training pairs) or add pairs")

    def batches(batch_size: int, batch_seed: int) -> Iterator[list[Example]]:
        rng = random.Random(batch_seed)
        while True:  # epochs of shuffled training pairs
            order = training[:]
            rng.shuffle(order)
            for start in range(0, len(order), batch_size):
                yield order[start:start + batch_size]

    source_vocab = Vocabulary.build(tokenizer.split(e.source) for e in training)
    target_vocab = Vocabulary.build(tokenizer.split(e.target) for e in training)
    measured = validation or training
    kept = measured[:MAX_VALIDATION_PAIRS]  # already shuffled: a random draw, fixed by the seed
    notes = []
    if len(kept) < len(measured):
        notes.append(f"{len(kept):,} of {len(measured):,}, drawn at random")
    if not validation:
        notes.append("no validation split")
    name = ("validation pairs" if validation else "training pairs") + (
        f" ({'; '.join(notes)})" if notes else "")
    if len(kept) < FEW_VALIDATION_PAIRS:
        _warn_few(len(kept), bool(validation), len(unique), len(pairs), validation_share)
    return Data(tokenizer, source_vocab, target_vocab, batches, kept, max_target_length,
                len(training), name)


def _warn_few(measured: int, split: bool, distinct: int, lines: int, share: float) -> None:
    """Say, in one line, that validation's figures rest on ``measured`` pairs, and how to get
    more."""
    import warnings

    from attnviz.errors import AttnvizWarning

    plural = "s" if measured != 1 else ""
    what = (f"pair{plural} of the validation split" if split
            else f"training pair{plural} (no validation split)")
    held = f"{distinct:,} distinct pairs" + (f" among {lines:,} lines" if lines != distinct
                                             else "")
    more = "add distinct pairs" + (" or raise the validation share" if split and share < 0.5
                                   else "")
    warnings.warn(f"validation's figures rest on {measured} {what} ({held}), and they choose "
                  f"the best model; {more}", AttnvizWarning, stacklevel=3)


def new_checkpoint(data: Data, config_sizes: dict, seed: int, info: dict) -> Checkpoint:
    """A randomly initialised model sized for ``data``, with its vocabularies."""
    config = ModelConfig(source_vocab_size=len(data.source_vocab),
                         target_vocab_size=len(data.target_vocab),
                         max_target_length=data.max_target_length, **config_sizes)
    torch.manual_seed(seed)
    model = Transformer(config)
    return Checkpoint(model, data.tokenizer, data.tokenizer, data.source_vocab,
                      data.target_vocab, info)


def train(checkpoint: Checkpoint, data: Data, options: TrainOptions,
          report: Callable[[Progress], None] = lambda progress: None) -> TrainResult:
    """Train ``checkpoint.model`` in place; the result holds the best weights on validation.

    Training stops after ``options.steps`` steps, when validation exact match has been
    100% at ``PATIENCE`` validations in a row (unless ``options.early_stop`` is off: the
    result says so, ``stopped_early``), or at Ctrl-C (KeyboardInterrupt), which is not
    re-raised once a step is done (before it, there is nothing to keep).

    Raises:
        AttnvizError: the loss or the weights stopped being finite numbers (training
            diverged), or a step did not fit in memory. Nothing is worth keeping then.
    """
    from attnviz.model.runtime import resolve_device

    device = resolve_device(options.device)
    torch.manual_seed(options.seed)
    model = checkpoint.model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate,
                                  betas=(0.9, 0.98), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(options))
    batches = data.batches(options.batch_size, options.seed)

    best_key, best_state, best_metrics, best_step = None, None, None, 0
    perfect_in_a_row, step, losses = 0, 0, []
    started = time.perf_counter()
    interruption, stopped_early = None, False
    try:
        while step < options.steps:
            batch = make_batch(checkpoint, next(batches), device)
            logits = model(batch.source, batch.decoder_input).logits  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1), batch.decoder_target.flatten(),
                                   ignore_index=PAD_ID)
            value = loss.item()
            if not math.isfinite(value):
                raise _diverged(f"the loss became {value} at step {step + 1}", options)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(value)
            validation = None
            if step % options.eval_every == 0 or step == options.steps:
                validation = evaluate(checkpoint, data.validation, device=device)
                model.train()
                key = _rank(validation)
                if best_key is None or key > best_key:
                    best_key, best_metrics, best_step = key, validation, step
                    best_state = copy.deepcopy(model.state_dict())
                perfect_in_a_row = perfect_in_a_row + 1 if validation.exact_match == 1.0 else 0
            progress = Progress(step, sum(losses) / len(losses), validation)
            report(progress)
            if validation is not None:
                losses = []
                if options.early_stop and perfect_in_a_row >= PATIENCE and \
                        step < options.steps:
                    stopped_early = True
                    break
    except KeyboardInterrupt as exc:
        if step == 0:
            raise
        interruption = exc
    except RuntimeError as exc:
        if not too_large_for_memory(exc):
            raise
        raise AttnvizError(f"step {step + 1} of training does not fit in memory; train with "
                           "a smaller ⟨batch_size⟩, shorter pairs or a smaller model") from None
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_step = step
    model.eval()
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values()):
        raise _diverged(f"the weights of step {best_step} hold NaN or infinite values", options)
    return TrainResult(checkpoint, best_metrics, best_step, step,
                       time.perf_counter() - started, interruption is not None,
                       interruption=interruption, stopped_early=stopped_early,
                       steps_asked=options.steps)


def _diverged(what: str, options: TrainOptions) -> AttnvizError:
    return AttnvizError(f"training diverged: {what}; nothing is kept; train again with a lower "
                        f"learning rate than {options.learning_rate:g} (⟨learning_rate⟩)")


def _rank(metrics: Metrics) -> tuple[float, float, float]:
    """How validation results compare: exact match first, then token accuracy, then how well
    the best layer's cross-attention aligns (for tasks that know their alignment)."""
    return (metrics.exact_match, metrics.token_accuracy, max(metrics.alignment or (0.0,)))


def _schedule(options: TrainOptions) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to a tenth of the peak learning rate."""
    warmup = min(options.warmup, max(1, options.steps // 10))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, options.steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def fit(data: Data, sizes: dict, options: TrainOptions, info: dict,
        test: list[Example] | None = None,
        report: Callable[[Progress], None] = lambda progress: None) -> TrainResult:
    """Build a model for ``data``, train it, and record in its info what it scored.

    ``test`` (default: the validation set) is measured after training; the decoder layer
    whose cross-attention aligns best becomes the layer ``decode`` shows by default.
    """
    checkpoint = new_checkpoint(data, sizes, options.seed, info)
    result = train(checkpoint, data, options, report)
    measured, measured_on = result.best, data.validation_name
    if not result.interrupted:  # else the person is waiting: keep the validation figures
        try:
            measured = evaluate(checkpoint, test if test is not None else data.validation,
                                device=next(checkpoint.model.parameters()).device)
            measured_on = HELD_OUT if test is not None else data.validation_name
        except KeyboardInterrupt as exc:  # while measuring: the trained model is worth keeping
            result.interrupted, result.interruption = True, exc
    checkpoint.model.to("cpu")
    checkpoint.info.update({
        "metrics": {**measured.to_dict(), "measured_on": measured_on} if measured else None,
        "steps": result.steps_done,
        "best_step": result.best_step,
    })  # no timings: the same command and seed give the same file, byte for byte
    if measured and measured.best_alignment_layer is not None:
        checkpoint.info["default_layers"] = {"cross": measured.best_alignment_layer}
    result.measured, result.measured_on = measured, measured_on
    return result


@dataclass(frozen=True)
class TrainPlan:
    """Everything a training run needs, checked before the first step."""

    data: Data
    sizes: dict  # ModelConfig fields besides the vocabularies and the maximum length
    options: TrainOptions
    info: dict  # stored in the model file
    test: list[Example] | None  # measured after training (None: the validation set)
    threads: int = 1  # torch's CPU threads; the file's bytes depend on it (see runtime)


def plan(*, task: str | None, data: Path | None, tokenizer: str = "word",
         layers: int = ModelConfig.n_encoder_layers, heads: int = ModelConfig.n_heads,
         width: int = ModelConfig.d_model, steps: int | None = None, epochs: int | None = None,
         batch_size: int = TrainOptions.batch_size,
         learning_rate: float = TrainOptions.learning_rate, seed: int = 0,
         validation_share: float = VALIDATION_SHARE,
         max_length: int = ModelConfig.max_target_length, device: str = "cpu",
         threads: int | None = None, early_stop: bool = True) -> TrainPlan:
    """Check the options of ``attnviz train`` and gather the data; raises AttnvizError.

    ``early_stop``: stop once validation exact match is 100% at :data:`PATIENCE`
    validations in a row; False trains every step of ``steps``.

    ``threads``: torch's CPU threads; None chooses (:func:`attnviz.model.runtime.choose_threads`).
    """
    from attnviz.errors import AttnvizError
    from attnviz.model.runtime import choose_threads, resolve_device
    from attnviz.train.pairs import check_one_source, read_examples
    from attnviz.train.tasks import get_task

    check_one_source(task, data)
    resolve_device(device)  # cuda without a GPU: refused before any data or progress bar
    if steps is not None and epochs is not None:
        raise AttnvizError("give ⟨steps⟩ or ⟨epochs⟩, not both")
    if epochs is not None and data is None:
        raise AttnvizError("⟨epochs⟩ counts passes over ⟨data⟩ pairs; with ⟨task⟩ use ⟨steps⟩")
    sizes = {"d_model": width, "n_heads": heads, "n_encoder_layers": layers,
             "n_decoder_layers": layers, "d_ff": 4 * width}
    if heads >= 1 and width % heads:
        raise AttnvizError(f"⟨width⟩ {width} must be divisible by ⟨heads⟩ {heads}: each head "
                           f"gets width / heads dimensions; try ⟨width⟩ {heads * 16}")
    if layers > MAX_LAYERS:
        raise AttnvizError(f"⟨layers⟩ {layers} is more than the limit of {MAX_LAYERS}")
    try:
        ModelConfig(source_vocab_size=4, target_vocab_size=4, max_target_length=max_length,
                    **sizes)
        if not 0.0 <= validation_share < 1.0:
            raise ValueError(f"⟨validation_share⟩ must be at least 0 and below 1, got "
                             f"{validation_share}")
        TrainOptions(steps=1 if steps is None else steps, batch_size=batch_size,
                     learning_rate=learning_rate, seed=seed, device=device)
        if epochs is not None and epochs < 1:
            raise ValueError("⟨epochs⟩ must be at least 1")
    except ValueError as exc:
        raise AttnvizError(f"invalid training options: {exc}") from None
    chosen = choose_threads(threads)  # None: a variable set torch's count; keep it
    used_threads = torch.get_num_threads() if chosen is None else chosen

    command = ["attnviz", "train"]
    if task is not None:
        source = get_task(task)
        built = task_data(source, seed)
        test = held_out_examples(source)
        command += ["--task", task]
        info = {"task": task, "description": source.description}
    else:
        pairs = read_examples(data, Tokenizer(tokenizer), max_length,
                           way_out="shorten it or raise ⟨max_length⟩",
                           max_token_chars=MAX_TOKEN_CHARS)
        built = pairs_data(pairs, Tokenizer(tokenizer), validation_share, seed, max_length)
        _check_vocabularies(built)
        test = None
        command += ["--data", str(data), "--tokenizer", tokenizer, "--val-split",
                    str(validation_share), "--max-length", str(max_length)]
        info = {"task": f"pairs from {Path(data).name}"}
    if epochs is not None:
        steps = math.ceil(built.training_size / batch_size) * epochs
    if steps is None:
        steps = TrainOptions.steps
    command += ["--layers", str(layers), "--heads", str(heads), "--width", str(width),
                "--steps", str(steps), "--batch-size", str(batch_size), "--lr",
                str(learning_rate), "--seed", str(seed)]
    if used_threads != 1:  # the bytes depend on it: the command that gives them says it
        command += ["--threads", str(used_threads)]
    if not early_stop:
        command += ["--no-early-stop"]
    info["command"] = " ".join(command)
    info["seed"] = seed
    options = TrainOptions(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                           seed=seed, device=device, early_stop=early_stop)
    _check_model_size(built, sizes)
    return TrainPlan(built, sizes, options, info, test, used_threads)


def _check_vocabularies(data: Data) -> None:
    """Refuse, before the first step, vocabularies that a model file cannot hold."""
    unit = "characters" if data.tokenizer.kind == "char" else "words"
    for side, vocab in (("source", data.source_vocab), ("target", data.target_vocab)):
        if len(vocab) > MAX_VOCABULARY_SIZE:
            limit = MAX_VOCABULARY_SIZE - len(SPECIALS)
            way_out = "use fewer pairs" + (" or ⟨tokenizer⟩ char" if unit == "words" else "")
            raise AttnvizError(f"the training pairs hold {len(vocab) - len(SPECIALS):,} distinct "
                               f"{side} {unit}, more than the limit of {limit:,}; {way_out}")


def _check_model_size(data: Data, sizes: dict) -> None:
    """Refuse, before allocating it, a model whose file would be beyond a model file's limit."""
    config = ModelConfig(source_vocab_size=len(data.source_vocab),
                         target_vocab_size=len(data.target_vocab),
                         max_target_length=data.max_target_length, **sizes)
    weights = weight_count(config)
    if 4 * weights > MAX_MODEL_FILE_BYTES:  # float32
        raise AttnvizError(f"a model of these sizes has {weights:,} weights, more than the "
                           f"{MAX_MODEL_FILE_BYTES // 4:,} a model file holds; use a smaller "
                           "⟨width⟩ or fewer ⟨layers⟩")


def weight_count(config: ModelConfig) -> int:
    """The number of weights of ``Transformer(config)``, counted without building it.

    (Building it on torch's meta device would count them too, but its first use costs
    seconds of imports.) tests/test_train.py checks this against the model itself.
    """
    width, hidden = config.d_model, config.d_ff
    norm = 2 * width  # LayerNorm: scale and shift
    attention = 4 * (width * width + width)  # query, key, value and output projections
    feed_forward = width * hidden + hidden + hidden * width + width
    encoder_block = 2 * norm + attention + feed_forward
    decoder_block = 3 * norm + 2 * attention + feed_forward
    return ((config.source_vocab_size + config.target_vocab_size) * width  # embeddings
            + config.n_encoder_layers * encoder_block + config.n_decoder_layers * decoder_block
            + 2 * norm  # the encoder's and the decoder's final norms
            + width * config.target_vocab_size + config.target_vocab_size)  # output layer


def run(plan: TrainPlan, report: Callable[[Progress], None] = lambda progress: None
        ) -> TrainResult:
    """``attnviz train``: :func:`fit` with torch on ``plan.threads`` threads, restored after."""
    from attnviz.model.runtime import using_threads

    with using_threads(plan.threads):
        return fit(plan.data, plan.sizes, plan.options, dict(plan.info), plan.test, report)
