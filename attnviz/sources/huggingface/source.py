"""Hugging Face models as a source: ``hf:NAME_OR_PATH``, a hub name or a folder written by
``save_pretrained``.

The maps are computed by attnviz's own attention function, which transformers' attention
interface calls in every attention layer (:mod:`.interface`), and kept layer by layer as they
are computed, only the kinds, layers and heads asked for, in the precision asked for
(:mod:`.recorder`). A model whose attention does not come through the interface is run with
its own eager attention and ``output_attentions``; the provenance says which path drew the
maps. A GGUF file (``model.gguf``) loads through transformers' own GGUF reader. Three kinds of
model:

- encoder-decoder (Marian, BART, T5...): the encoder alone, or all three kinds, the target
  given (teacher forcing) or written greedily by ``generate`` and then read back in one
  teacher-forced pass, whose causal rows are the attention of each generation step;
- encoder-only (BERT...): encoder self-attention;
- decoder-only (GPT-2...): masked self-attention over the text, the decoder's input.

Safety: weights load only from safetensors files (never a pickle), and a model whose config
asks for its own Python code (``trust_remote_code``) is refused, never run.

Opening a source imports nothing heavy: transformers (and torch) are imported when maps are
computed, so the render cache can answer a local folder's request without them.

A repeated random sequence (``Request.repeated``, what the induction score reads) is read
in place of the text by the same pass (:mod:`.repeated`); norm-based weights
(``Request.weights == "norm"``) are kept by the same recorder, from each layer's values and
output projection (:mod:`.projections`).

(Past 450 lines: the one class a request goes through, from the name to the maps and the
explanation, with its loading checks; the pass itself, the recorder, the checks before it,
the repeated sequence's ids, the output projections and the explanation's words are modules
of their own beside it.)
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import printable, shorten
from attnviz.maps.choice import check_head, check_layer
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.maps.keep import Keep
from attnviz.sources.base import REPEATED, Request, digest, require_text
from attnviz.sources.huggingface.config import (
    DECODER_ONLY,
    ENCODER_DECODER,
    ENCODER_ONLY,
    architecture,
    decoder_start,
    drop_end,
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
from attnviz.sources.huggingface.interface import IMPLEMENTATION, register
from attnviz.sources.huggingface.labels import source_labels, token_labels
from attnviz.sources.huggingface.loading import (
    INSTALL,
    import_transformers,
    loading,
    quiet,
)
from attnviz.sources.huggingface.passes import (
    THROUGH_INTERFACE,
    THROUGH_OUTPUTS,
    NotThroughInterface,
    forward,
    kept_numbers,
    library_failure,
    outputs_maps,
    recorded,
)
from attnviz.sources.huggingface.prepared import (
    CROSS,
    DECODER_SELF,
    ENCODER_SELF,
    Prepared,
    check_keep,
    check_memory,
    file_digest,
    quiet_gguf,
)
from attnviz.sources.huggingface.repeated import repeated_ids
from attnviz.version import __version__, installed_version

if TYPE_CHECKING:
    import torch

    from attnviz.maps.explanation import Explanation
    from attnviz.sources.huggingface.recorder import Recorder

PREFIX = "hf:"
# A hub name: "name" or "owner/name", letters, digits and - _ . (the hub's own rule).
HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")
LIBRARIES = ("transformers", "tokenizers", "sentencepiece", "gguf")  # versions key the cache
GGUF = ".gguf"  # a llama.cpp model file, read by transformers' own GGUF reader


def open(name: str) -> HuggingFaceModel:  # noqa: A001 - every source module has open()
    """The model ``name`` (``hf:`` and a hub name or a folder) names; reads no file yet.

    Raises:
        AttnvizError: transformers is not installed, the name is empty, or it is a path
            with no folder there.
    """
    if importlib.util.find_spec("transformers") is None:
        raise AttnvizError(INSTALL)
    location = (name[len(PREFIX):] if name.startswith(PREFIX) else name).strip()
    if location.lower().endswith(GGUF):
        return _gguf(name, location)
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


def _gguf(name: str, location: str) -> HuggingFaceModel:
    """A GGUF file (llama.cpp's format): read by transformers' own GGUF reader, which needs
    the ``gguf`` package, with the tokenizer the file holds."""
    path = Path(location).expanduser()
    if not path.is_file():
        raise AttnvizError(f"there is no GGUF file {printable(location)}; give the path of a "
                           ".gguf model file")
    if importlib.util.find_spec("gguf") is None:
        raise AttnvizError('GGUF files need the gguf package: pip install "attnviz[hf]"')
    return HuggingFaceModel(name, str(path.parent), path.parent, gguf=path.name)


@dataclass
class HuggingFaceModel:
    """A Hugging Face model: a local folder (its files name its bytes) or a hub name."""

    name: str  # as the person named it, "hf:..."
    location: str  # what transformers is given: the folder's path or the hub name
    folder: Path | None  # None: a hub name, resolved by transformers (cache or download)
    gguf: str | None = None  # the GGUF file's name in the folder, when the model is one
    _digest: str | None = field(default=None, repr=False)
    # What trace() loaded (config, tokenizer, models by kind and device), kept for the next
    # trace: a source that traces many texts (an export's worker) loads each once.
    _loaded: dict[Any, Any] = field(default_factory=dict, repr=False)

    def fingerprint(self, request: Request) -> str | None:
        """The digest of the folder's files and of the request; None for a hub name (the
        hub may serve other files tomorrow, and asking it needs the network)."""
        if self.folder is None:
            return None
        return digest(request, self._folder_digest(), seed=None, keep=asdict(request.keep),
                      libraries=[installed_version(name) for name in LIBRARIES])

    def maps(self, request: Request) -> AttentionMaps:
        """The maps of ``request``: see the module's docstring for what each kind of model
        gives; of a repeated random sequence instead of the text, for ``request.repeated``
        (see :mod:`.repeated`); the norm-based weights of the same pass instead of the
        attention weights, for ``request.weights == "norm"`` (see :mod:`.projections`).
        Raises AttnvizError when the request does not fit the model."""
        prepared = self._prepare(request, None)
        maps = self._run(prepared, request)
        # Said here, outside quiet, which silences every warning of transformers' own code.
        if getattr(prepared.config, "auto_map", None):
            _warn(f"{self.name} comes with its own code, which attnviz never runs: its maps are "
                  f"those of transformers' {architecture(prepared.config)}")
        written = maps.provenance.target_text
        if maps.provenance.target_generated and not (written or "").strip():
            _warn("the model wrote nothing but special tokens; the maps show the steps that "
                  "decided so")
        return maps

    def explain(self, request: Request, kind: str, layer: int | None, head: int
                ) -> Explanation:
        """One head of one attention layer, step by step, from the forward pass that
        :meth:`maps` runs: the queries, keys and values attnviz's attention function took
        (after the model's projections and position code), its scale, bias and mask, and the
        weights it gave. Raises AttnvizError for a layer or head the model lacks, and for a
        model whose attention does not run through transformers' attention interface."""
        from attnviz.sources.huggingface.explaining import explanation

        part = "encoder" if kind == "encoder_self" else "decoder"
        asked = replace(request, part=part, keep=Keep(kinds=()))
        prepared = self._prepare(asked, kind)
        layers = prepared.layers.get(kind)
        if layers is None:
            from attnviz.maps.kinds import TITLES

            raise AttnvizError(f"{printable(self.name)} has no {TITLES[kind].lower()}: choose "
                               "another \u27e8kind\u27e9", setting="kind")
        layer = check_layer(layers - 1 if layer is None else layer, layers, kind)
        check_head(head, prepared.heads, "this model has", "; explain shows one head")
        try:
            recorder = self._record(prepared, asked, (kind, layer, head))
        except NotThroughInterface:
            raise AttnvizError(f"{printable(self.name)} computes its attention in its own code, "
                               "not through transformers' attention interface, so attnviz "
                               "sees only its weights: explain cannot show its queries and "
                               "keys; draw its maps with encode or decode") from None
        return explanation(recorder.explained, prepared, kind, layer, head,
                           self._provenance(prepared, request, THROUGH_INTERFACE))

    def _prepare(self, request: Request, explained: str | None) -> Prepared:
        """What the forward pass of ``request`` needs: the model, its inputs (the target
        written by ``generate`` first, where none was given) and their labels, and the
        layers and heads of each kind; for ``request.repeated``, the repeated random sequence
        in place of the text (and the target). Refuses a layer or head the model lacks, and
        maps that would not fit in memory, before the pass."""
        from attnviz.model.runtime import choose_threads, resolve_device

        text = require_text(request.text)
        import_transformers()
        device = resolve_device(request.device)
        threads = choose_threads(request.threads) if request.threads else None
        with self._computing(threads):
            config = self._kept("config", self._config)
            kind = model_kind(config)
            _check_request(self.name, kind, architecture(config), request)
            tokenizer = self._kept("tokenizer", self._tokenizer)
            ids = _text_ids(tokenizer, text, position_limit(config), None)  # (S,) or (T,)
            encoder_layers, decoder_layers, heads = sizes(config, kind)
            stack = DECODER_SELF if kind == DECODER_ONLY else ENCODER_SELF if (
                kind == ENCODER_ONLY or request.part == "encoder") else ENCODER_DECODER
            repeated = None
            if request.repeated is not None:  # read in place of the text, which it replaces
                repeated = repeated_ids(config, tokenizer, text, ids, request.repeated, stack,
                                        decoder_start(config, self.name)
                                        if stack == ENCODER_DECODER else None)
                ids, text = repeated.ids, None
            model = self._model(config, kind, device, IMPLEMENTATION)
            if stack == DECODER_SELF:
                prepared = Prepared(config, model, DECODER_SELF, {"input_ids": _batch(
                    ids, device)}, [], token_labels(tokenizer, ids), None, text, False, None,
                    {DECODER_SELF: decoder_layers}, heads, threads, device)
            elif stack == ENCODER_SELF:
                module = model.get_encoder() if kind == ENCODER_DECODER else model
                prepared = Prepared(config, module, ENCODER_SELF, {"input_ids": _batch(
                    ids, device)}, source_labels(tokenizer, ids), [], text, None, False, None,
                    {ENCODER_SELF: encoder_layers}, heads, threads, device)
            else:
                prepared = self._encoder_decoder(config, model, tokenizer, ids, text, request,
                                                 (encoder_layers, decoder_layers, heads),
                                                 threads, device, None if repeated is None
                                                 else repeated.decoder_ids)
            if repeated is not None:
                prepared = replace(prepared, starts=repeated.starts)
        check_keep(prepared, request.keep)
        check_memory(prepared, request, explained)
        return prepared

    def _encoder_decoder(self, config: Any, model: Any, tokenizer: Any, ids: list[int],
                         text: str | None, request: Request, shape: tuple[int, int, int],
                         threads: int | None, device: torch.device,
                         decoder_ids: list[int] | None = None) -> Prepared:
        """All three kinds: ``request.target`` read by teacher forcing, or (None) the text
        the model writes greedily, read back in one teacher-forced pass whose causal rows
        are the attention of each generation step, as ``generate`` computed it; or, given
        ``decoder_ids`` (a repeated sequence's, start token first), those."""
        import torch

        start = decoder_start(config, self.name)
        target, written = request.target, None
        if decoder_ids is not None:
            target, full = None, decoder_ids
        elif target is not None:
            target = require_text(target, "target")
            labels = _text_ids(tokenizer, target, position_limit(config), "target")
            full = [start, *labels]
        source = _batch(ids, device)  # (1, S)
        if target is None and decoder_ids is None:
            with torch.inference_mode(), library_failure(self.name):
                generated = model.generate(input_ids=source, do_sample=False, num_beams=1)
            full = generated[0].tolist()
            written = tokenizer.decode(generated[0], skip_special_tokens=True)
        decoder_ids = full if decoder_ids is not None else drop_end(config, full)  # (T,)
        encoder_layers, decoder_layers, heads = shape
        return Prepared(
            config, model, ENCODER_DECODER, {"input_ids": source,
                                             "decoder_input_ids": _batch(decoder_ids, device)},
            source_labels(tokenizer, ids), token_labels(tokenizer, decoder_ids), text,
            target if written is None else written, written is not None,
            _next_token(tokenizer, full, decoder_ids),
            {ENCODER_SELF: encoder_layers, DECODER_SELF: decoder_layers,
             CROSS: decoder_layers}, heads, threads, device)

    def _run(self, prepared: Prepared, request: Request) -> AttentionMaps:
        """The maps of one forward pass: recorded through attnviz's function, or, for a
        model whose attention does not use transformers' attention interface, its own
        ``output_attentions``."""
        try:
            recorder = self._record(prepared, request, None)
        except NotThroughInterface as exc:
            if request.weights == "norm":
                raise AttnvizError(
                    f"{printable(self.name)}: norm-based weights need each attention layer's "
                    "values, which attnviz sees only through its own attention function, and "
                    f"this model's attention does not all come through it ({exc}); draw it "
                    "with \u27e8weights\u27e9 attention, which its own eager attention "
                    "gives") from None
            (maps, kept), path = self._eager(prepared, request), THROUGH_OUTPUTS
        else:
            maps, kept, path = recorder.kept, kept_numbers(recorder), THROUGH_INTERFACE
        try:
            return AttentionMaps(prepared.source_tokens, prepared.target_tokens,
                                 provenance=self._provenance(prepared, request, path),
                                 kept=kept, **maps)
        except ValueError as exc:  # the weights do not fit the tokens
            raise AttnvizError(f"{printable(self.name)}: {printable(str(exc))}") from None

    def _record(self, prepared: Prepared, request: Request,
                explain: tuple[str, int, int] | None) -> Recorder:
        """The recorder of one pass through attnviz's function, keeping what ``request``
        asks (its norm-based weights, for ``weights="norm"``). Raises NotThroughInterface
        when the model's attention does not (all) come through transformers' attention
        interface."""
        import torch

        with self._computing(prepared.threads), torch.inference_mode():
            return recorded(prepared.module, prepared.stack, prepared.inputs, request.keep,
                            prepared.layers, self.name, explain, request.weights)

    def _eager(self, prepared: Prepared, request: Request) -> tuple[dict, dict]:
        """The kept maps of the model's own eager attention, from ``output_attentions``."""
        import torch

        kind = model_kind(prepared.config)
        model = self._model(prepared.config, kind, prepared.device, "eager")
        module = model.get_encoder() if prepared.stack == ENCODER_SELF and \
            kind == ENCODER_DECODER else model
        with self._computing(prepared.threads), torch.inference_mode():
            outputs = forward(module, self.name, **prepared.inputs, output_attentions=True)
        return outputs_maps(outputs, prepared.stack, request.keep)

    def _computing(self, threads: int | None) -> Any:
        """transformers quiet, and torch on the person's thread count (where one was
        asked: models of the hub's sizes gain from threads where attnviz's own do not)."""
        from contextlib import ExitStack

        from attnviz.model.runtime import using_threads

        stack = ExitStack()
        stack.enter_context(quiet(progress=self.folder is None))
        if threads:
            stack.enter_context(using_threads(threads))
        return stack

    def _config(self) -> Any:
        from transformers import AutoConfig

        if self.folder is not None and not self.gguf and not (
                self.folder / "config.json").is_file():
            raise AttnvizError(f"{printable(str(self.folder))} is not a Hugging Face model "
                               "folder: it has no config.json; give a folder written by "
                               "save_pretrained")
        with loading(self.name, "", self.folder is None):
            return AutoConfig.from_pretrained(self.location, trust_remote_code=False,
                                              **self._gguf_file)

    def _tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        with loading(self.name, "tokenizer", self.folder is None):
            return AutoTokenizer.from_pretrained(self.location, trust_remote_code=False,
                                                 **self._gguf_file)

    @property
    def _gguf_file(self) -> dict[str, str]:
        return {"gguf_file": self.gguf} if self.gguf else {}

    def _kept(self, key: Any, load: Callable[[], Any]) -> Any:
        """``load()``, called once per source and key."""
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    def _model(self, config: Any, kind: str, device: torch.device, implementation: str
               ) -> Any:
        return self._kept(("model", kind, str(device), implementation),
                          lambda: self._load_model(config, kind, device, implementation))

    def _load_model(self, config: Any, kind: str, device: torch.device, implementation: str
                    ) -> Any:
        """The model, from safetensors (or a GGUF file) only, with ``implementation`` as its
        attention: attnviz's (:data:`IMPLEMENTATION`), or transformers' eager one."""
        from transformers import AutoModel, AutoModelForSeq2SeqLM

        if implementation == IMPLEMENTATION:
            register()
        if self.folder is not None and not self.gguf:
            self._check_weights(config, kind)
        # generate() needs the language-model head; the maps of the others need only the
        # base model (a checkpoint saved with a head loads into it without the head).
        auto = AutoModelForSeq2SeqLM if kind == ENCODER_DECODER else AutoModel
        where = {"gguf_file": self.gguf} if self.gguf else {"use_safetensors": True}
        with loading(self.name, "weights", self.folder is None), quiet_gguf(bool(self.gguf)):
            model, info = auto.from_pretrained(
                self.location, config=config, trust_remote_code=False,
                attn_implementation=implementation, output_loading_info=True, **where)
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

    def _provenance(self, prepared: Prepared, request: Request, path: str) -> Provenance:
        options: dict[str, Any] = {"attention": path}
        if request.keep.precision != "float32":
            options["precision"] = request.keep.precision
        if request.weights != "attention":  # as attnviz's own models say it
            options["weights"] = request.weights
        if request.repeated is not None:
            options[REPEATED] = request.repeated.provenance(prepared.starts or {})
        return Provenance(attnviz_version=__version__, model=self.name,
                          model_sha256=self._model_digest(), source_text=prepared.source_text,
                          target_text=prepared.target_text,
                          target_generated=prepared.generated, options=options,
                          next_token=prepared.next_token)

    def _folder_digest(self) -> str:
        """The digest of the model's files: the folder's, or the GGUF file's bytes."""
        if self._digest is None:
            self._digest = file_digest(self.folder / self.gguf) if self.gguf else \
                files_digest(self.folder)
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
