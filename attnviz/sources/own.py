"""attnviz's own encoder-decoder as a source: a shipped model, a model file, or random weights.

Opening reads nothing but the model file's bytes (for the cache's fingerprint); torch is
imported when maps are computed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from attnviz import catalog
from attnviz.errors import AttnvizError
from attnviz.maps import KINDS, MAX_MAP_BYTES, AttentionMaps, Provenance
from attnviz.sources.base import Request, Trace
from attnviz.text import printable, shorten
from attnviz.version import __version__

if TYPE_CHECKING:
    import torch

    from attnviz.checkpoint import Checkpoint
    from attnviz.tokenize import Tokenizer, Vocabulary

UNKNOWN_SHOWN = 10  # unknown words named in a warning; the rest are counted
UNKNOWN_CHARS = 40  # an unknown word longer than this is shortened in the warning


def open(name: str) -> OwnModel:  # noqa: A001 - every source module has open()
    """The model ``name`` means: ``random``, a shipped model's name, or a model file's path."""
    return OwnModel(name, catalog.resolve(name))


@dataclass
class OwnModel:
    """An attnviz model: its file (None: random weights) and, once read, the file's bytes."""

    name: str
    path: Path | None
    _data: bytes | None = field(default=None, repr=False)
    # The model read from the file, by device: a source that traces many texts (an export's
    # worker) loads it once.
    _loaded: dict[str, Checkpoint] = field(default_factory=dict, repr=False)

    def fingerprint(self, request: Request) -> str | None:
        """The digest of the model file's bytes, the texts, and (for random weights) the seed."""
        try:
            weights = "random" if self.path is None else hashlib.sha256(self._bytes()).hexdigest()
        except AttnvizError:
            return None  # trace() reports why the file cannot be read
        parts = {**request.to_dict(), "weights": weights,
                 "part": "encoder" if request.part == "encoder" else "decoder"}
        if self.path is not None:
            parts["seed"] = None  # only the random model has a seed
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()

    def trace(self, request: Request) -> Trace:
        """Encode ``request.text`` (part ``encoder``), or run the whole model (otherwise): with
        ``request.target`` by teacher forcing, without one on the target it writes greedily."""
        import torch

        from attnviz.runtime import resolve_device

        text = _require_text(request.text, "source text", None)
        target = None if request.target is None else _require_text(request.target, "target",
                                                                    "target")
        device = resolve_device(request.device)
        checkpoint = self._checkpoint(text, target, request.seed, device)
        notes: list[str] = []
        source_ids, source_labels = _tokens(checkpoint, text, "source", notes)
        encode_only = request.part == "encoder"
        if encode_only:
            decoder_length = None
        elif target is None:  # the longest it may write, and its begin token
            decoder_length = checkpoint.config.max_target_length + 1
        else:
            decoder_length = len(checkpoint.target_tokenizer.split(target)) + 1
        _check_size(checkpoint, len(source_ids), decoder_length)
        source = torch.tensor([source_ids], dtype=torch.long, device=device)  # (1, S)
        with torch.inference_mode():
            if encode_only:
                encoded = checkpoint.model.encode(source)
                maps = {"encoder_self": _numpy(encoded.self_weights[0])}
                target_labels, written = [], None
            else:
                decoder_input, target_labels, written = self._decoder_input(
                    checkpoint, source, target, notes, device)
                output = checkpoint.model(source, decoder_input)
                maps = {"encoder_self": _numpy(output.encoder_self[0]),
                        "decoder_self": _numpy(output.decoder_self[0]),
                        "cross": _numpy(output.cross[0])}
        provenance = Provenance(
            attnviz_version=__version__, model=self.name,
            model_sha256=None if self.path is None else hashlib.sha256(self._bytes()).hexdigest(),
            source_text=text, target_text=target if written is None else written,
            target_generated=written is not None,
            options={"seed": request.seed} if self.path is None else {},
            default_layers=_default_layers(checkpoint))
        return Trace(AttentionMaps(source_labels, target_labels, provenance=provenance, **maps),
                     tuple(notes))

    def _decoder_input(self, checkpoint: Checkpoint, source: torch.Tensor, target: str | None,
                       notes: list[str], device: torch.device
                       ) -> tuple[torch.Tensor, list[str], str | None]:
        """The decoder's input ids ``(1, T)``, their labels, and the text the model wrote
        (None when the target was given)."""
        import torch

        from attnviz.tokenize import BOS, BOS_ID

        if target is not None:
            tokens = _split(checkpoint.target_tokenizer, target, "target")
            ids = checkpoint.target_ids(tokens)
            notes += _unknown_note(checkpoint.target_vocab, tokens, "target")
            labels = [BOS, *checkpoint.target_vocab.tokens_of(ids)]
            return torch.tensor([[BOS_ID, *ids]], dtype=torch.long, device=device), labels, None
        if self.path is None:
            notes.append("the random model writes random words; give the target text yourself "
                         "to see how the decoder reads a sentence of yours")
        decoder_input = checkpoint.model.generate(source)  # (1, T)
        labels = checkpoint.target_vocab.tokens_of(decoder_input[0].tolist())
        written = checkpoint.target_tokenizer.join(labels[1:])
        if not written:
            notes.append("the model wrote nothing but the end token; the maps show the one "
                         "step that decided so")
        return decoder_input, labels, written

    def _checkpoint(self, text: str, target: str | None, seed: int, device: torch.device
                    ) -> Checkpoint:
        if self.path is None:
            from attnviz.tokenize import Tokenizer

            tokenizer = Tokenizer("word")
            checkpoint = random_checkpoint(tokenizer.split(text),
                                           tokenizer.split(target) if target else [], seed)
            checkpoint.model.to(device)
            return checkpoint
        from attnviz.checkpoint import checkpoint_from_bytes

        if str(device) not in self._loaded:
            self._loaded[str(device)] = checkpoint_from_bytes(self._bytes(),
                                                              printable(str(self.path)), device)
        return self._loaded[str(device)]

    def _bytes(self) -> bytes:
        if self._data is None:
            from attnviz.modelfile import read_model_file

            self._data = read_model_file(self.path)
        return self._data


def random_checkpoint(source_tokens: list[str], target_tokens: list[str], seed: int
                      ) -> Checkpoint:
    """A randomly initialised word-level model whose vocabularies hold exactly the given tokens.

    The weights depend only on ``seed`` and the vocabulary sizes, so a sentence gives the
    same maps on every run.
    """
    import torch

    from attnviz.checkpoint import Checkpoint
    from attnviz.config import MAX_TARGET_LENGTH, ModelConfig
    from attnviz.model import Transformer
    from attnviz.tokenize import Tokenizer, Vocabulary

    source_vocab = Vocabulary.build([source_tokens])
    target_vocab = Vocabulary.build([target_tokens or source_tokens])
    longest = min(MAX_TARGET_LENGTH, max(8, 2 * len(source_tokens)))
    config = ModelConfig(source_vocab_size=len(source_vocab),
                         target_vocab_size=len(target_vocab), max_target_length=longest)
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Transformer(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    tokenizer = Tokenizer("word")
    return Checkpoint(model, tokenizer, tokenizer, source_vocab, target_vocab,
                      {"task": "random", "seed": seed})


def _require_text(text: str | None, what: str, setting: str | None) -> str:
    """``text``, unless it is missing or blank. A message about a setting starts with its
    name, so that the CLI can call it by its flag."""
    if text is None or not text.strip():
        subject = what if setting else f"the {what}"
        raise AttnvizError(f"{subject} is empty; give a sentence in quotes, for example "
                           '"the black cat sees the red car"', setting=setting)
    return text


def _split(tokenizer: Tokenizer, text: str, side: str) -> list[str]:
    tokens = tokenizer.split(text)
    if not tokens:
        raise AttnvizError(f"the {side} text {printable(shorten(text, 60))!r} has no tokens; "
                           "give some words")
    return tokens


def _tokens(checkpoint: Checkpoint, text: str, side: str, notes: list[str]
            ) -> tuple[list[int], list[str]]:
    """Source ids (ending with <eos>) and their labels (<unk> for unknown words)."""
    tokens = _split(checkpoint.source_tokenizer, text, side)
    ids = checkpoint.source_ids(tokens)
    notes += _unknown_note(checkpoint.source_vocab, tokens, side)
    return ids, checkpoint.source_vocab.tokens_of(ids)


def _unknown_note(vocab: Vocabulary, tokens: list[str], side: str) -> list[str]:
    unknown = vocab.unknown(tokens)
    if not unknown:
        return []
    shown = ", ".join(repr(shorten(t, UNKNOWN_CHARS)) for t in unknown[:UNKNOWN_SHOWN])
    more = len(unknown) - UNKNOWN_SHOWN
    return [f"{len(unknown)} {side} token(s) are not in this model's vocabulary and are shown "
            f"as <unk>: {shown}" + (f" and {more} more" if more > 0 else "")]


def _check_size(checkpoint: Checkpoint, source_length: int, target_length: int | None) -> None:
    """Refuse, before any allocation, a text whose maps would not fit in memory.

    ``target_length`` is the decoder's input length, None when only the encoder runs.
    """
    config = checkpoint.config
    decoder = target_length
    weights = config.n_encoder_layers * source_length ** 2
    if decoder is not None:
        weights += config.n_decoder_layers * (decoder ** 2 + decoder * source_length)
    needed = 4 * config.n_heads * weights  # float32
    if needed <= MAX_MAP_BYTES:
        return
    raise AttnvizError(f"the text is too long: {source_length:,} source tokens make attention "
                       f"maps of {needed / 1024**3:.1f} GB, and attnviz keeps them under "
                       f"{MAX_MAP_BYTES / 1024**3:.0f} GB; with this model, cut the text to at "
                       f"most {_longest_source(checkpoint, target_length):,} tokens")


def _longest_source(checkpoint: Checkpoint, target_length: int | None) -> int:
    """The most source tokens whose maps fit :data:`MAX_MAP_BYTES`: the positive root of
    L_enc S² + L_dec T S + L_dec T² = budget, in weights."""
    config = checkpoint.config
    budget = MAX_MAP_BYTES / (4 * config.n_heads)
    t = target_length or 0
    a = config.n_encoder_layers
    b = config.n_decoder_layers * t if target_length else 0
    c = (config.n_decoder_layers * t * t if target_length else 0) - budget
    return max(0, int((-b + (b * b - 4 * a * c) ** 0.5) / (2 * a)))


def _numpy(weights: torch.Tensor):
    return weights.float().cpu().numpy()  # (L, H, Q, K)


def _default_layers(checkpoint: Checkpoint) -> dict[str, int]:
    """The layers the model file recommends looking at, where they exist."""
    chosen = checkpoint.info.get("default_layers", {})
    config = checkpoint.config
    layers = {"encoder_self": config.n_encoder_layers, "decoder_self": config.n_decoder_layers,
              "cross": config.n_decoder_layers}
    if not isinstance(chosen, dict):
        return {}
    return {kind: value for kind, value in chosen.items() if kind in KINDS
            and isinstance(value, int) and not isinstance(value, bool)
            and 0 <= value < layers[kind]}
