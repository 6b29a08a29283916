"""Hugging Face models as a source: ``hf:NAME_OR_PATH``, a hub name or a folder written by
``save_pretrained``.

The maps are the model's own ``output_attentions`` (per layer ``[batch, H, query, key]``),
converted by :meth:`AttentionMaps.from_huggingface`; the attention runs in transformers'
"eager" implementation, the one that computes the weights (sdpa and flash attention never
materialise them). Three kinds of model:

- encoder-decoder (Marian, BART, T5...): the encoder alone, or all three kinds, the target
  given (teacher forcing) or written greedily by ``generate`` and then read back in one
  teacher-forced pass, whose causal rows are the attention of each generation step;
- encoder-only (BERT...): encoder self-attention;
- decoder-only (GPT-2...): masked self-attention over the text, the decoder's input.

Safety: weights load only from safetensors files (never a pickle), and a model whose config
asks for its own Python code (``trust_remote_code``) is refused, never run.

Opening a source imports nothing heavy: transformers (and torch) are imported when maps are
computed, so the render cache can answer a local folder's request without them.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import printable, shorten
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.sources.base import Request, digest, require_text
from attnviz.sources.huggingface.config import (
    DECODER_ONLY,
    ENCODER_DECODER,
    ENCODER_ONLY,
    architecture,
    check_maps_fit,
    decoder_start,
    drop_end,
    longest_generation,
    model_kind,
    position_limit,
    sizes,
)
from attnviz.sources.huggingface.folder import (
    MAX_LAYERS,
    PICKLES,
    SAFETENSORS,
    config_weights,
    files_digest,
    layers_in_weights,
    weights_named,
)
from attnviz.sources.huggingface.labels import source_labels, token_labels
from attnviz.sources.huggingface.loading import (
    INSTALL,
    MESSAGE_CHARS,
    import_transformers,
    loading,
    quiet,
)
from attnviz.version import __version__, installed_version

if TYPE_CHECKING:
    import torch

PREFIX = "hf:"
# A hub name: "name" or "owner/name", letters, digits and - _ . (the hub's own rule).
HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")
LIBRARIES = ("transformers", "tokenizers", "sentencepiece")  # their versions key the cache


def open(name: str) -> HuggingFaceModel:  # noqa: A001 - every source module has open()
    """The model ``name`` (``hf:`` and a hub name or a folder) names; reads no file yet.

    Raises:
        AttnvizError: transformers is not installed, the name is empty, or it is a path
            with no folder there.
    """
    if importlib.util.find_spec("transformers") is None:
        raise AttnvizError(INSTALL)
    location = name[len(PREFIX):].strip()
    if not location:
        raise AttnvizError("hf: needs a model after it: a hub name such as "
                           "hf:Helsinki-NLP/opus-mt-en-fr, or a folder written by save_pretrained")
    folder = Path(location).expanduser()
    if folder.is_dir():
        return HuggingFaceModel(name, str(folder), folder)
    if folder.exists():
        raise AttnvizError(f"{printable(location)} is a file; give the folder that holds the "
                           "model, written by save_pretrained")
    if not HUB_NAME.fullmatch(location) or location.startswith("."):
        raise AttnvizError(f"there is no model folder {printable(location)}; give a folder "
                           "written by save_pretrained, or a hub name such as "
                           "Helsinki-NLP/opus-mt-en-fr")
    return HuggingFaceModel(name, location, None)


@dataclass
class HuggingFaceModel:
    """A Hugging Face model: a local folder (its files name its bytes) or a hub name."""

    name: str  # as the person named it, "hf:..."
    location: str  # what transformers is given: the folder's path or the hub name
    folder: Path | None  # None: a hub name, resolved by transformers (cache or download)
    _digest: str | None = field(default=None, repr=False)
    # What trace() loaded (config, tokenizer, models by kind and device), kept for the next
    # trace: a source that traces many texts (an export's worker) loads each once.
    _loaded: dict[Any, Any] = field(default_factory=dict, repr=False)

    def fingerprint(self, request: Request) -> str | None:
        """The digest of the folder's files and of the request; None for a hub name (the
        hub may serve other files tomorrow, and asking it needs the network)."""
        if self.folder is None:
            return None
        return digest(request, self._folder_digest(), seed=None,
                      libraries=[installed_version(name) for name in LIBRARIES])

    def maps(self, request: Request) -> AttentionMaps:
        """The maps of ``request``: see the module's docstring for what each kind of model
        gives. Raises AttnvizError when the request does not fit the model."""
        from attnviz.model.runtime import choose_threads, resolve_device, using_threads

        text = require_text(request.text)
        import_transformers()
        device = resolve_device(request.device)
        # Models of the hub's sizes gain from threads where attnviz's own do not: only the
        # person's choice (--threads, OMP_NUM_THREADS) is applied, else torch's default.
        threads = request.threads
        with quiet(progress=self.folder is None), (
                using_threads(choose_threads(threads)) if threads else nullcontext()):
            config = self._kept("config", self._config)
            kind = model_kind(config)
            _check_request(self.name, kind, architecture(config), request)
            tokenizer = self._kept("tokenizer", self._tokenizer)
            ids = _text_ids(tokenizer, text, position_limit(config), None)  # (S,) or (T,)
            if kind == DECODER_ONLY:
                maps = self._decoder_only(config, tokenizer, ids, text, device)
            elif kind == ENCODER_ONLY or request.part == "encoder":
                maps = self._encoder(config, kind, tokenizer, ids, text, device)
            else:
                maps = self._encoder_decoder(config, tokenizer, ids, text, request.target,
                                             device)
        # Said here, outside quiet, which silences every warning of transformers' own code.
        if getattr(config, "auto_map", None):
            _warn(f"{self.name} comes with its own code, which attnviz never runs: its maps are "
                  f"those of transformers' {architecture(config)}")
        written = maps.provenance.target_text
        if maps.provenance.target_generated and not (written or "").strip():
            _warn("the model wrote nothing but special tokens; the maps show the steps that "
                  "decided so")
        return maps

    def _decoder_only(self, config: Any, tokenizer: Any, ids: list[int], text: str,
                      device: torch.device) -> AttentionMaps:
        """Masked self-attention over the text, the decoder's input."""
        import torch

        model = self._model(config, DECODER_ONLY, device)
        check_maps_fit(config, DECODER_ONLY, None, len(ids))
        with torch.inference_mode():
            outputs = _forward(model, input_ids=_batch(ids, device), output_attentions=True)
        return AttentionMaps.from_huggingface(outputs, target_tokens=token_labels(tokenizer, ids),
                                              provenance=self._provenance(None, text, False))

    def _encoder(self, config: Any, kind: str, tokenizer: Any, ids: list[int], text: str,
                 device: torch.device) -> AttentionMaps:
        """The encoder's self-attention: an encoder-only model, or an encoder-decoder's
        encoder run alone."""
        import torch

        model = self._model(config, kind, device)
        check_maps_fit(config, ENCODER_ONLY, len(ids), None)
        encoder = model.get_encoder() if kind == ENCODER_DECODER else model
        with torch.inference_mode():
            outputs = _forward(encoder, input_ids=_batch(ids, device), output_attentions=True)
        return AttentionMaps.from_huggingface(outputs, source_tokens=source_labels(tokenizer, ids),
                                              provenance=self._provenance(text, None, False))

    def _encoder_decoder(self, config: Any, tokenizer: Any, ids: list[int], text: str,
                         target: str | None, device: torch.device) -> AttentionMaps:
        """All three kinds: ``target`` read by teacher forcing, or (None) the text the
        model writes greedily, read back in one teacher-forced pass whose causal rows are
        the attention of each generation step, as ``generate`` computed it."""
        import torch

        start = decoder_start(config, self.name)
        if target is not None:
            target = require_text(target, "target")
            labels = _text_ids(tokenizer, target, position_limit(config), "target")
            full = [start, *labels]
            decoder_ids = drop_end(config, full)  # (T,)
        model = self._model(config, ENCODER_DECODER, device)
        check_maps_fit(config, ENCODER_DECODER, len(ids), len(decoder_ids) if target is not None
                    else longest_generation(model.generation_config))
        source = _batch(ids, device)  # (1, S)
        written = None
        with torch.inference_mode():
            if target is None:
                generated = model.generate(input_ids=source, do_sample=False, num_beams=1)
                full = generated[0].tolist()
                decoder_ids = drop_end(config, full)  # (T,)
                written = tokenizer.decode(generated[0], skip_special_tokens=True)
            outputs = _forward(model, input_ids=source,
                               decoder_input_ids=_batch(decoder_ids, device),
                               output_attentions=True)
        maps = AttentionMaps.from_huggingface(
            outputs, source_tokens=source_labels(tokenizer, ids),
            target_tokens=token_labels(tokenizer, decoder_ids),
            provenance=self._provenance(text, target if written is None else written,
                                        written is not None,
                                        _next_token(tokenizer, full, decoder_ids)))
        return maps

    def _config(self) -> Any:
        from transformers import AutoConfig

        if self.folder is not None and not (self.folder / "config.json").is_file():
            raise AttnvizError(f"{printable(str(self.folder))} is not a Hugging Face model "
                               "folder: it has no config.json; give a folder written by "
                               "save_pretrained")
        with loading(self.name, "", self.folder is None):
            return AutoConfig.from_pretrained(self.location, trust_remote_code=False)

    def _tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        with loading(self.name, "tokenizer", self.folder is None):
            return AutoTokenizer.from_pretrained(self.location, trust_remote_code=False)

    def _kept(self, key: Any, load: Callable[[], Any]) -> Any:
        """``load()``, called once per source and key."""
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    def _model(self, config: Any, kind: str, device: torch.device) -> Any:
        return self._kept(("model", kind, str(device)),
                          lambda: self._load_model(config, kind, device))

    def _load_model(self, config: Any, kind: str, device: torch.device) -> Any:
        """The model, from safetensors only, with the eager attention that returns weights."""
        from transformers import AutoModel, AutoModelForSeq2SeqLM

        if self.folder is not None:
            self._check_weights(config, kind)
        # generate() needs the language-model head; the maps of the others need only the
        # base model (a checkpoint saved with a head loads into it without the head).
        auto = AutoModelForSeq2SeqLM if kind == ENCODER_DECODER else AutoModel
        with loading(self.name, "weights", self.folder is None):
            model, info = auto.from_pretrained(
                self.location, config=config, use_safetensors=True, trust_remote_code=False,
                attn_implementation="eager", output_loading_info=True)
        # Random weights in place of missing ones would draw made-up maps without a word.
        # A pooler (BERT's, missing from a checkpoint saved with a language-model head) comes
        # after the last layer and changes no attention.
        missing = sorted(key for key in info.get("missing_keys", ()) if "pooler" not in key)
        if missing:
            raise AttnvizError(f"{printable(self.name)} lacks {len(missing)} of its model's "
                               f"weights (such as {printable(shorten(missing[0], 60))}); its "
                               "files do not fit its config.json: save the model again with "
                               "save_pretrained")
        return model.to(device).eval()

    def _check_weights(self, config: Any, kind: str) -> None:
        """Refuse, before transformers builds anything, a folder whose weights are pickled
        (an index may name pickled files) or fewer than its config claims (a config of a
        hundred thousand layers would be built, slowly, before its weights were found
        missing)."""
        names = {path.name for path in self.folder.iterdir()}
        weights = weights_named(self.folder)
        if weights is not None and not all(name.endswith(".safetensors") for name in weights):
            raise AttnvizError(f"{printable(str(self.folder))}: its index of weights names "
                               "files that are not safetensors (pickled weights, which attnviz "
                               "never loads); save the model again with save_pretrained")
        if names & set(SAFETENSORS) or (config_weights(self.folder) or "").endswith(
                (".safetensors", ".safetensors.index.json")):
            claimed = max(sizes(config, kind)[:2])
            found = layers_in_weights(self.folder)
            if claimed > MAX_LAYERS or (found and claimed > found):
                raise AttnvizError(f"{printable(str(self.folder))}: its config.json claims "
                                   f"{claimed:,} layers, its weights hold "
                                   f"{found or 'no'} layer(s); save the model again with "
                                   "save_pretrained")
            return
        pickles = sorted(names & set(PICKLES))
        held = f" (only {pickles[0]}, pickled weights that attnviz never loads)" if pickles \
            else ""
        raise AttnvizError(f"{printable(str(self.folder))} holds no safetensors weights{held}; "
                           "load the model in Python and save it again with save_pretrained, "
                           "which writes model.safetensors")

    def _provenance(self, source_text: str | None, target_text: str | None, generated: bool,
                    next_token: str | None = None) -> Provenance:
        return Provenance(attnviz_version=__version__, model=self.name,
                          model_sha256=self._model_digest(), source_text=source_text,
                          target_text=target_text, target_generated=generated,
                          next_token=next_token)

    def _folder_digest(self) -> str:
        if self._digest is None:
            self._digest = files_digest(self.folder)
        return self._digest

    def _model_digest(self) -> str | None:
        """The local folder's digest; for a hub name, that of its cached snapshot when the
        snapshot holds the safetensors weights that were loaded, else None."""
        if self.folder is not None:
            return self._folder_digest()
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.location, "config.json")
        if not isinstance(cached, str):
            return None
        snapshot = Path(cached).parent
        if not any((snapshot / name).is_file() for name in SAFETENSORS):
            return None  # the weights came from elsewhere (the hub's safetensors conversion)
        return files_digest(snapshot)


def _warn(message: str) -> None:
    warnings.warn(message, AttnvizWarning, stacklevel=3)


def _check_request(name: str, kind: str, architecture: str, request: Request) -> None:
    """Refuse what the model cannot show: a decoder of an encoder-only model, an encoder of
    a decoder-only one, a target for a model that reads one text."""
    name = printable(name)
    if kind == ENCODER_ONLY and (request.part == "decoder" or request.target is not None):
        raise AttnvizError(f"{name} is an encoder-only model ({architecture}): it has no "
                           "decoder, so only its encoder self-attention can be drawn (⟨encode⟩)")
    if kind == DECODER_ONLY and request.part == "encoder":
        raise AttnvizError(f"{name} is a decoder-only model ({architecture}): it has no "
                           "encoder; its masked self-attention over the text is drawn by ⟨decode⟩")
    if kind == DECODER_ONLY and request.target is not None:
        raise AttnvizError(f"target: {name} is a decoder-only model ({architecture}) and reads "
                           "one text; give it all as the text, without a target",
                           setting="target")


def _text_ids(tokenizer: Any, text: str, limit: int | None, setting: str | None) -> list[int]:
    """The model's ids of ``text`` (of the target, ``setting="target"``, as its labels),
    special tokens included."""
    encoded = tokenizer(text_target=text) if setting == "target" else tokenizer(text)
    ids = list(encoded["input_ids"])
    subject = "target" if setting else "the text"
    if not ids:
        raise AttnvizError(f"{subject} has no tokens for this model; give some words",
                           setting=setting)
    if limit is not None and len(ids) > limit:
        raise AttnvizError(f"{subject} is too long for this model: {len(ids):,} tokens, and its "
                           f"positions cover at most {limit:,}; cut it to fewer words",
                           setting=setting)
    return ids


def _next_token(tokenizer: Any, full: list[int], kept: list[int]) -> str | None:
    """The label of the end token :func:`drop_end` took off ``full``: what the decoder's
    last row predicts. None when there was none (generation stopped at its length limit)."""
    return token_labels(tokenizer, full[len(kept):])[0] if len(full) > len(kept) else None


def _batch(ids: Sequence[int], device: torch.device) -> torch.Tensor:
    import torch

    return torch.tensor([list(ids)], dtype=torch.long, device=device)  # (1, N)


def _forward(module: Any, **inputs: Any) -> Any:
    """One forward pass; a model that cannot read text ids (an image model) says so."""
    try:
        return module(**inputs)
    except (TypeError, ValueError) as exc:
        raise AttnvizError(f"the model cannot be run on a text ({type(module).__name__}: "
                           f"{printable(shorten(str(exc), MESSAGE_CHARS))}); attnviz draws "
                           "text models") from None
