"""attnviz's own encoder-decoder as a source: a shipped model, a model file, or random weights.

Opening reads nothing but the model file's bytes (for the cache's fingerprint); torch is
imported when maps are computed.
"""

from __future__ import annotations

import hashlib
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import printable, shorten
from attnviz.maps.budget import check_size
from attnviz.maps.choice import check_head, check_layer
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.maps.explanation import Explanation
from attnviz.maps.kinds import KINDS
from attnviz.model import catalog
from attnviz.sources.base import REPEATED, Request, digest, require_text
from attnviz.version import __version__

if TYPE_CHECKING:
    import torch

    from attnviz.model.checkpoint import Checkpoint
    from attnviz.model.config import ModelConfig
    from attnviz.model.tokenize import Tokenizer, Vocabulary
    from attnviz.model.transformer import Intermediates, Transformer

UNKNOWN_SHOWN = 10  # unknown words named in a warning; the rest are counted
UNKNOWN_CHARS = 40  # an unknown word longer than this is shortened in the warning


@dataclass
class _Start:
    """What every run of a model begins with (see :meth:`OwnModel._start`)."""

    text: str | None  # None: a repeated random sequence (Request.repeated) instead of a text
    target: str | None
    checkpoint: Checkpoint
    source_ids: torch.Tensor  # (1, S)
    source_labels: list[str]
    source_written: dict[int, str]  # unknown source words as written, by position
    threads: int | None  # None: torch's own count (a thread variable set it)


@dataclass
class _Decoded:
    """What the decoder read: its input and what the labels say of it."""

    ids: torch.Tensor | None  # (1, T) the decoder's input ids; None when only the encoder ran
    labels: list[str]  # T labels (<unk> for unknown words)
    written: str | None  # the text the model wrote; None when the target was given
    unknown: dict[int, str]  # unknown target words as written, by position in the labels
    next_token: str | None  # what the last position predicts: the end token, or None when
    # the model stopped at its length limit before writing it


def open(name: str) -> OwnModel:  # noqa: A001 - every source module has open()
    """The model ``name`` means: ``random``, a shipped model's name, or a model file's path."""
    return OwnModel(name, catalog.resolve(name))


@dataclass
class OwnModel:
    """An attnviz model: its file (None: random weights) and, once read, the file's bytes."""

    name: str
    path: Path | None
    _data: bytes | None = field(default=None, repr=False)
    _digest: str | None = field(default=None, repr=False)
    # The model read from the file, by device: a source that traces many texts (an export's
    # worker) loads it once.
    _loaded: dict[str, Checkpoint] = field(default_factory=dict, repr=False)

    def fingerprint(self, request: Request) -> str | None:
        """The digest of the model file's bytes, the texts, and (for random weights) the seed."""
        if self.path is None:
            return digest(request, "random")
        try:
            return digest(request, self._sha256(), seed=None)  # only random weights have a seed
        except AttnvizError:
            return None  # trace() reports why the file cannot be read

    def maps(self, request: Request) -> AttentionMaps:
        """Encode ``request.text`` (part ``encoder``), or run the whole model (otherwise): with
        ``request.target`` by teacher forcing, without one on the target it writes greedily;
        or, for ``request.repeated``, read a repeated random sequence (see :meth:`_repeated`).
        With ``request.weights == "norm"``, the maps are the norm-based weights of the same
        forward pass (:func:`_norm_based`)."""
        encode_only = request.part == "encoder"
        if request.repeated is None:
            start, decoded = self._start(request, encode_only), None
        else:
            start, decoded = self._repeated(request, encode_only)
        decoded, attention = self._run(start, encode_only, decoded)
        maps = {kind: _numpy(_norm_based(start.checkpoint.model, attention, kind)
                             if request.weights == "norm" else attention.weights(kind))[0]
                for kind in KINDS if attention.layers(kind)}  # (L, H, Q, K) each
        return AttentionMaps(start.source_labels, decoded.labels,
                             provenance=self._provenance(request, start, decoded), **maps)

    def explain(self, request: Request, kind: str, layer: int | None, head: int
                ) -> Explanation:
        """One head of one attention layer, step by step, from the forward pass that
        :meth:`maps` runs: the queries, keys, values, mask and weights that layer's call of
        the attention function took and gave, and the scores Q Kᵀ / √d_k of those queries and
        keys (the formula's first step, shown before the mask).

        Args:
            request: the texts; its ``part`` is ignored (the kind decides).
            kind: ``encoder_self``, ``decoder_self`` or ``cross``.
            layer: counting from 0; None: the layer the model file recommends, else the last.
            head: counting from 0.

        Raises:
            AttnvizError: for a layer or head the model does not have, and as :meth:`maps`.
        """
        import torch

        from attnviz.model.attention import attention_scores

        encode_only = kind == "encoder_self"
        start = self._start(request, encode_only)
        config = start.checkpoint.config
        layers = config.n_encoder_layers if encode_only else config.n_decoder_layers
        layer = check_layer(_default_layers(start.checkpoint).get(kind, layers - 1)
                            if layer is None else layer, layers, kind)
        check_head(head, config.n_heads, "this model has", "; explain shows one head")
        decoded, attention = self._run(start, encode_only)
        step = attention.layers(kind)[layer]
        with torch.inference_mode():
            scores = attention_scores(step.queries, step.keys)  # (B, H, Q, K), no mask

        def one_head(tensor: torch.Tensor) -> torch.Tensor:
            return tensor[0, head]  # (Q, K) or (Q, Dh)

        query_tokens = start.source_labels if encode_only else decoded.labels
        key_tokens = decoded.labels if kind == "decoder_self" else start.source_labels
        return Explanation(
            kind=kind, layer=layer, head=head, heads=config.n_heads, d_model=config.d_model,
            queries=_numpy(one_head(step.queries)), keys=_numpy(one_head(step.keys)),
            values=_numpy(one_head(step.values)), scores=_numpy(one_head(scores)),
            mask=one_head(step.visible()).cpu().numpy(), weights=_numpy(one_head(step.weights)),
            query_tokens=list(query_tokens), key_tokens=list(key_tokens),
            provenance=self._provenance(request, start, decoded))

    def _run(self, start: _Start, encode_only: bool, decoded: _Decoded | None = None
             ) -> tuple[_Decoded, Intermediates]:
        """The one forward pass of every request: the encoder alone (``encode_only``), or the
        whole model on the decoder's input (``decoded``'s, or else the target's or what the
        model writes); what the decoder read, and the attention layers of the pass, as data."""
        import torch

        from attnviz.model.runtime import using_threads

        checkpoint, source_ids = start.checkpoint, start.source_ids
        with using_threads(start.threads), torch.inference_mode():
            if encode_only:
                attention = checkpoint.model.encode(source_ids).attention
                decoded = _Decoded(None, [], None, {}, None)
            else:
                decoded = decoded or self._decoder_input(checkpoint, source_ids, start.target,
                                                         source_ids.device)
                attention = checkpoint.model(source_ids, decoded.ids).attention
        return decoded, attention

    def _start(self, request: Request, encode_only: bool) -> _Start:
        """What every run begins with: the texts checked, the model, the source's ids and
        labels, and torch's threads. Refuses, before building anything, a
        text whose maps would not fit in memory."""
        import torch

        from attnviz.model.runtime import choose_threads, resolve_device

        text = require_text(request.text)
        target = None if request.target is None else require_text(request.target, "target")
        device = resolve_device(request.device)
        if self.path is None:  # its vocabulary grows with the text: check before building it
            from attnviz.model.config import ModelConfig
            from attnviz.model.tokenize import Tokenizer

            words = Tokenizer("word")
            longest = _random_target_length(len(words.split(text)))
            _check_size(ModelConfig, len(words.split(text)) + 1, None if encode_only else
                        len(words.split(target)) + 1 if target else longest + 1)
        checkpoint = self._checkpoint(text, target, request.seed, device)
        source_ids, source_labels, source_written = _tokens(checkpoint, text, self.name)
        if encode_only:
            decoder_length = None
        elif target is None:  # the longest it may write, and its begin token
            decoder_length = checkpoint.config.max_target_length + 1
        else:
            decoder_length = len(checkpoint.target_tokenizer.split(target)) + 1
        _check_size(checkpoint.config, len(source_ids), decoder_length)
        ids = torch.tensor([source_ids], dtype=torch.long, device=device)  # (1, S)
        return _Start(text, target, checkpoint, ids, source_labels, source_written,
                      choose_threads(request.threads))

    def _repeated(self, request: Request, encode_only: bool) -> tuple[_Start, _Decoded]:
        """The start of a run on ``request.repeated``: the encoder reads ``r r <eos>``, the
        decoder (unless ``encode_only``) ``<bos> r' r'`` by teacher forcing, r and r' drawn
        from the source's and the target's vocabularies. The random model builds its
        vocabularies from the request's texts, as for them."""
        import torch

        from attnviz.model.runtime import choose_threads, resolve_device
        from attnviz.model.tokenize import BOS_ID, EOS_ID, SPECIALS

        repeated, device = request.repeated, resolve_device(request.device)
        length = 2 * repeated.length + 1  # the sequence twice, and the end or begin token
        if self.path is None:
            from attnviz.model.config import ModelConfig

            _check_size(ModelConfig, length, None if encode_only else length)
        checkpoint = self._checkpoint(require_text(request.text) if self.path is None else "",
                                      request.target, request.seed, device)
        _check_size(checkpoint.config, length, None if encode_only else length)

        def ordinary(vocab: Vocabulary) -> list[int]:
            return list(range(len(SPECIALS), len(vocab)))

        source = [*repeated.ids(ordinary(checkpoint.source_vocab)), EOS_ID]
        start = _Start(None, None, checkpoint, torch.tensor([source], device=device),
                       checkpoint.source_vocab.tokens_of(source), {},
                       choose_threads(request.threads))
        if encode_only:
            return start, _Decoded(None, [], None, {}, None)
        target = [BOS_ID, *repeated.ids(ordinary(checkpoint.target_vocab), stream=1)]
        return start, _Decoded(torch.tensor([target], device=device),
                               checkpoint.target_vocab.tokens_of(target), None, {}, None)

    def _provenance(self, request: Request, start: _Start, decoded: _Decoded) -> Provenance:
        written = decoded.written
        options = {"seed": request.seed} if self.path is None else {}
        if request.weights != "attention":
            options["weights"] = request.weights
        if request.repeated is not None:
            starts = {"encoder_self": 0} if decoded.ids is None else \
                {"encoder_self": 0, "decoder_self": 1}
            options[REPEATED] = request.repeated.provenance(starts)
        return Provenance(
            attnviz_version=__version__, model=self.name,
            model_sha256=None if self.path is None else self._sha256(),
            source_text=start.text, target_text=start.target if written is None else written,
            target_generated=written is not None, options=options,
            default_layers=_default_layers(start.checkpoint), next_token=decoded.next_token,
            source_written=start.source_written, target_written=decoded.unknown)

    def _decoder_input(self, checkpoint: Checkpoint, source_ids: torch.Tensor,
                       target: str | None, device: torch.device) -> _Decoded:
        """What the decoder reads: ``target`` by teacher forcing, or (None) the text the model
        writes greedily."""
        import torch

        from attnviz.model.tokenize import BOS, BOS_ID, EOS

        if target is not None:
            tokens = _split(checkpoint.target_tokenizer, target, "target")
            ids = checkpoint.target_ids(tokens)
            _warn_unknown(checkpoint.target_vocab, tokens, "target", self.name)
            labels = [BOS, *checkpoint.target_vocab.tokens_of(ids)]
            unknown = _as_written(checkpoint.target_tokenizer, checkpoint.target_vocab, target,
                                  tokens)
            return _Decoded(torch.tensor([[BOS_ID, *ids]], dtype=torch.long, device=device),
                            labels, None, {position + 1: word for position, word
                                           in unknown.items()}, EOS)
        if self.path is None:
            _warn("the random model writes random words; give the target text yourself to see "
                  "how the decoder reads a sentence of yours")
        decoder_input = checkpoint.model.generate(source_ids)  # (1, T)
        labels = checkpoint.target_vocab.tokens_of(decoder_input[0].tolist())
        written = checkpoint.target_tokenizer.join(labels[1:])
        if not written:
            _warn("the model wrote nothing but the end token; the maps show the one step that "
                  "decided so")
        # generate() stops after writing the end token, or after max_target_length tokens
        # without one (then T = limit + 1, and what the last position predicts is unknown).
        ended = decoder_input.shape[1] <= checkpoint.config.max_target_length
        return _Decoded(decoder_input, labels, written, {}, EOS if ended else None)

    def _checkpoint(self, text: str, target: str | None, seed: int, device: torch.device
                    ) -> Checkpoint:
        if self.path is None:
            from attnviz.model.tokenize import Tokenizer

            tokenizer = Tokenizer("word")
            checkpoint = random_checkpoint(tokenizer.split(text),
                                           tokenizer.split(target) if target else [], seed)
            checkpoint.model.to(device)
            return checkpoint
        from attnviz.model.checkpoint import checkpoint_from_bytes

        if str(device) not in self._loaded:
            self._loaded[str(device)] = checkpoint_from_bytes(self._bytes(),
                                                              printable(str(self.path)), device)
        return self._loaded[str(device)]

    def _sha256(self) -> str:
        if self._digest is None:
            self._digest = hashlib.sha256(self._bytes()).hexdigest()
        return self._digest

    def _bytes(self) -> bytes:
        if self._data is None:
            from attnviz.model.modelfile import read_model_file

            self._data = read_model_file(self.path)
        return self._data


def random_checkpoint(source_tokens: list[str], target_tokens: list[str], seed: int
                      ) -> Checkpoint:
    """A randomly initialised word-level model whose vocabularies hold exactly the given tokens.

    The weights depend only on ``seed`` and the vocabulary sizes, so a sentence gives the
    same maps on every run.
    """
    import torch

    from attnviz.model.checkpoint import Checkpoint
    from attnviz.model.config import ModelConfig
    from attnviz.model.tokenize import Tokenizer, Vocabulary
    from attnviz.model.transformer import Transformer

    source_vocab = Vocabulary.build([source_tokens])
    target_vocab = Vocabulary.build([target_tokens or source_tokens])
    config = ModelConfig(source_vocab_size=len(source_vocab),
                         target_vocab_size=len(target_vocab),
                         max_target_length=_random_target_length(len(source_tokens)))
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Transformer(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    tokenizer = Tokenizer("word")
    return Checkpoint(model, tokenizer, tokenizer, source_vocab, target_vocab,
                      {"task": "random", "seed": seed})


def _random_target_length(source_tokens: int) -> int:
    """The most tokens the random model writes: twice the source, within the model's bounds."""
    from attnviz.model.config import MAX_TARGET_LENGTH

    return min(MAX_TARGET_LENGTH, max(8, 2 * source_tokens))


def _split(tokenizer: Tokenizer, text: str, side: str) -> list[str]:
    tokens = tokenizer.split(text)
    if not tokens:
        raise AttnvizError(f"the {side} text {printable(shorten(text, 60))!r} has no tokens; "
                           "give some words")
    return tokens


def _tokens(checkpoint: Checkpoint, text: str, model: str
            ) -> tuple[list[int], list[str], dict[int, str]]:
    """Source ids (ending with <eos>), their labels (<unk> for unknown words), and the
    unknown words as written, by position."""
    tokens = _split(checkpoint.source_tokenizer, text, "source")
    ids = checkpoint.source_ids(tokens)
    _warn_unknown(checkpoint.source_vocab, tokens, "source", model)
    return (ids, checkpoint.source_vocab.tokens_of(ids),
            _as_written(checkpoint.source_tokenizer, checkpoint.source_vocab, text, tokens))


def _as_written(tokenizer: Tokenizer, vocab: Vocabulary, text: str, tokens: list[str]
                ) -> dict[int, str]:
    """The tokens the vocabulary lacks, by position, as the text writes them.

    The tokenizer lower-cases before splitting; split without lower-casing, the text gives
    the words with their capitals, unless lower-casing changed the count (a letter such as
    "İ" becomes two characters), where the lower-cased token is kept.
    """
    from dataclasses import replace

    unknown = set(vocab.unknown(tokens))
    if not unknown:
        return {}
    as_written = replace(tokenizer, lowercase=False).split(text)
    if len(as_written) != len(tokens):
        as_written = tokens
    return {i: word for i, (token, word) in enumerate(zip(tokens, as_written, strict=True))
            if token in unknown}


def _warn_unknown(vocab: Vocabulary, tokens: list[str], side: str, model: str) -> None:
    unknown = vocab.unknown(tokens)
    if not unknown:
        return
    shown = ", ".join(repr(shorten(t, UNKNOWN_CHARS)) for t in unknown[:UNKNOWN_SHOWN])
    more = len(unknown) - UNKNOWN_SHOWN
    _warn(f"{len(unknown)} {side} token(s) are not in this model's vocabulary and are read as "
          f"<unk> (labelled word?): {shown}" + (f" and {more} more" if more > 0 else "")
          + f"; see the words it knows with `attnviz models {shlex.quote(model)} --vocab`")


def _warn(message: str) -> None:
    warnings.warn(message, AttnvizWarning, stacklevel=2)


def _check_size(config: ModelConfig, source_length: int, target_length: int | None) -> None:
    """:func:`attnviz.maps.budget.check_size` for an attnviz model; ``config`` gives the numbers of
    heads and layers (the ModelConfig class itself gives the defaults, the random model's),
    ``target_length`` is None when only the encoder runs."""
    check_size(config.n_heads, config.n_encoder_layers,
               0 if target_length is None else config.n_decoder_layers, source_length,
               target_length or 0)


def _numpy(weights: torch.Tensor):
    return weights.float().cpu().numpy()  # (B, L, H, Q, K)


def _norm_based(model: Transformer, attention: Intermediates, kind: str) -> torch.Tensor:
    """Every layer's norm-based weights of ``kind`` (see :mod:`attnviz.model.norms`), each
    row as shares of its sum, from the pass's values and each layer's output projection.

    Shape: ``[B, L, H, Q, K]``, as :meth:`Intermediates.weights`.
    """
    import torch

    from attnviz.model.norms import norm_based_weights, row_shares

    with torch.inference_mode():
        return torch.stack([row_shares(norm_based_weights(layer.weights, layer.values,
                                                          module.out_proj.weight))
                            for layer, module in zip(attention.layers(kind),
                                                     model.attention_modules(kind),
                                                     strict=True)], dim=1)


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
