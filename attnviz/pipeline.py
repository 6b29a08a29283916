"""From text to attention maps: pick a model, tokenize, run the forward pass, collect the maps.

This is the library behind ``attnviz encode`` and ``attnviz decode``; it knows nothing of
options, files or terminals.
"""

from __future__ import annotations

import torch

from attnviz import catalog
from attnviz.checkpoint import Checkpoint
from attnviz.errors import AttnvizError
from attnviz.loader import load_model
from attnviz.maps import KINDS, AttentionMaps, Result
from attnviz.request import Request
from attnviz.runtime import resolve_device
from attnviz.tokenize import BOS, BOS_ID, Tokenizer, Vocabulary


def run(request: Request) -> Result:
    """The attention maps ``request`` asks for."""
    if request.command == "encode":
        return encode(request.text, request.model, seed=request.seed, device=request.device)
    return decode(request.text, request.target, request.model, seed=request.seed,
                  device=request.device)


def encode(text: str, model: str | None = None, *, seed: int = 0, device: str = "cpu"
           ) -> Result:
    """Run the encoder on ``text``: the encoder self-attention of every layer and head."""
    _require_text(text, "source text")
    torch_device = resolve_device(device)
    checkpoint = load_model(model, torch_device, text, None, seed)
    source_ids, source_labels, warnings = _source(checkpoint, text)
    with torch.inference_mode():
        encoded = checkpoint.model.encode(_batch(source_ids, torch_device))
    config = checkpoint.config
    heads = config.n_heads
    maps = AttentionMaps(
        source_tokens=source_labels,
        target_tokens=[],
        encoder_self=_numpy(encoded.self_weights[0]),
        decoder_self=torch.zeros(config.n_decoder_layers, heads, 0, 0).numpy(),
        cross=torch.zeros(config.n_decoder_layers, heads, 0, len(source_ids)).numpy(),
    )
    return Result(maps, _default_layers(checkpoint), warnings)


def decode(text: str, target: str | None = None, model: str | None = None, *, seed: int = 0,
           device: str = "cpu") -> Result:
    """Run the whole model on ``text`` and ``target`` (teacher forcing) and collect all maps.

    Without a target, the model first writes one greedily, then the maps of that target
    are collected; ``Result.generated`` holds its text.
    """
    _require_text(text, "source text")
    if target is not None:
        _require_text(target, "--target text")
    torch_device = resolve_device(device)
    checkpoint = load_model(model, torch_device, text, target, seed)
    source_ids, source_labels, warnings = _source(checkpoint, text)
    source = _batch(source_ids, torch_device)  # (1, S)
    generated = None
    with torch.inference_mode():
        if target is None:
            if catalog.resolve(model) is None:
                warnings.append("the random model writes random words; give --target to see "
                                "how the decoder reads a sentence of yours")
            decoder_input = checkpoint.model.generate(source)  # (1, T)
            target_labels = checkpoint.target_vocab.tokens_of(decoder_input[0].tolist())
            generated = checkpoint.target_tokenizer.join(target_labels[1:])
            if not generated:
                warnings.append("the model wrote nothing but the end token; the maps show "
                                "the one step that decided so")
        else:
            tokens = _tokens(checkpoint.target_tokenizer, target, "target")
            target_ids = checkpoint.target_ids(tokens)
            labels = checkpoint.target_vocab.tokens_of(target_ids)
            warnings += _unknown_warning(checkpoint.target_vocab, tokens, "target")
            decoder_input = _batch([BOS_ID, *target_ids], torch_device)  # (1, T)
            target_labels = [BOS, *labels]
        output = checkpoint.model(source, decoder_input)
    maps = AttentionMaps(
        source_tokens=source_labels,
        target_tokens=target_labels,
        encoder_self=_numpy(output.encoder_self[0]),
        decoder_self=_numpy(output.decoder_self[0]),
        cross=_numpy(output.cross[0]),
    )
    return Result(maps, _default_layers(checkpoint), warnings, generated)


def _require_text(text: str, what: str) -> None:
    if not text or not text.strip():
        raise AttnvizError(f"the {what} is empty; give a sentence in quotes, for example "
                           '"the black cat sees the red car"')


def _tokens(tokenizer: Tokenizer, text: str, side: str) -> list[str]:
    tokens = tokenizer.split(text)
    if not tokens:
        raise AttnvizError(f"the {side} text {text!r} has no tokens; give some words")
    return tokens


def _source(checkpoint: Checkpoint, text: str) -> tuple[list[int], list[str], list[str]]:
    """Source ids (ending with <eos>), their labels (<unk> for unknown ones), and warnings."""
    tokens = _tokens(checkpoint.source_tokenizer, text, "source")
    ids = checkpoint.source_ids(tokens)
    return ids, checkpoint.source_vocab.tokens_of(ids), _unknown_warning(
        checkpoint.source_vocab, tokens, "source")


def _unknown_warning(vocab: Vocabulary, tokens: list[str], side: str) -> list[str]:
    unknown = vocab.unknown(tokens)
    if not unknown:
        return []
    shown = ", ".join(repr(t) for t in unknown)
    return [f"{len(unknown)} {side} token(s) are not in this model's vocabulary and are shown "
            f"as <unk>: {shown}"]


def _batch(ids: list[int], device: torch.device) -> torch.Tensor:
    return torch.tensor([ids], dtype=torch.long, device=device)  # (1, N)


def _numpy(weights: torch.Tensor):
    return weights.float().cpu().numpy()  # (L, H, Q, K)


def _default_layers(checkpoint: Checkpoint) -> dict[str, int]:
    """The last layer of each kind, unless the model names a better one to look at."""
    config = checkpoint.config
    layers = {"encoder_self": config.n_encoder_layers - 1,
              "decoder_self": config.n_decoder_layers - 1,
              "cross": config.n_decoder_layers - 1}
    chosen = checkpoint.info.get("default_layers", {})
    if isinstance(chosen, dict):
        for kind in KINDS:
            value = chosen.get(kind)
            if isinstance(value, int) and 0 <= value <= layers[kind]:
                layers[kind] = value
    return layers
