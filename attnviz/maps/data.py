"""The attention of one forward pass as plain numpy data: what every source gives and every
renderer draws.

Every map has the layout ``[layer, head, query, key]``; layers and heads count from 0. A map
of one kind may be absent: an encoder-only model has no decoder, a decoder-only model no
encoder. This module needs numpy only, so reading saved maps never imports torch.

(Just past 450 lines: the maps, their numbering, and their file format, which is theirs.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.maps.budget import MAX_MAP_BYTES
from attnviz.maps.kinds import FILE_FORMATS as FORMATS
from attnviz.maps.kinds import KINDS, WEIGHTS

PROVENANCE = "provenance"  # the key of the provenance in saved files
KEPT = "kept"  # the key of the layers and heads the maps hold, when not all of them
KEYS = ("source_tokens", "target_tokens", *KINDS, PROVENANCE, KEPT)  # the keys of saved files
MAX_FILE_BYTES = MAX_MAP_BYTES + 64 * 1024**2  # a saved file's maps, and room for its tokens
JSON_BYTES_PER_WEIGHT = 12  # "0.123456789, ": a float32 written as JSON, and its comma
ROW_SUM_TOLERANCE = 1e-3  # a row of weights sums to 1 within this, or is all 0 (saw no key)
REPR_TEXT_CHARS = 48  # of a text quoted in a repr


class MapsError(AttnvizError, ValueError):
    """Maps, or their provenance, that do not fit together or are not of the types they take:
    the library's one error (:class:`AttnvizError`, which the README promises), and a
    ValueError, as it was before."""


_TEXTS = ("attnviz_version", "model", "model_sha256", "source_text", "target_text",
          "next_token")  # the Provenance fields that are a str or None


@dataclass(frozen=True)
class Provenance:
    """Where maps come from: saved with them, and written on what is drawn from them.

    Raises:
        MapsError: a field of another type than it takes (``source_text=5``), or options
            that cannot be saved as JSON.
    """

    attnviz_version: str | None = None  # the attnviz that computed them
    model: str | None = None  # as the user named it: "translate", a path, "hf:NAME", "random"
    model_sha256: str | None = None  # of the model's file(s); None for the random model
    source_text: str | None = None  # the encoder's input text (a decoder-only model: None)
    target_text: str | None = None  # the decoder's input text, without its begin token
    target_generated: bool = False  # the model wrote the target itself (greedy decoding)
    options: dict[str, Any] = field(default_factory=dict)  # what else decided them (seed, ...)
    default_layers: dict[str, int] = field(default_factory=dict)  # layer drawn by default
    # The token after the decoder's last input, the one its last row predicts (the end token
    # the model wrote or was given); None when the maps do not say (a decoder-only model).
    next_token: str | None = None
    # Words the vocabulary lacked, as written, by their position in source_tokens and
    # target_tokens (where the maps say <unk>).
    source_written: dict[int, str] = field(default_factory=dict)
    target_written: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _TEXTS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise MapsError(f"Provenance {name} must be a str or None, not "
                                f"{type(value).__name__}")
        if not isinstance(self.target_generated, bool):
            raise MapsError("Provenance target_generated must be a bool, not "
                            f"{type(self.target_generated).__name__}")
        for name in ("options", "default_layers", "source_written", "target_written"):
            if not isinstance(getattr(self, name), dict):
                raise MapsError(f"Provenance {name} must be a dict, not "
                                f"{type(getattr(self, name)).__name__}")
        if not all(_is_int(layer) for layer in self.default_layers.values()):
            raise MapsError("Provenance default_layers must give each kind an int layer")
        for name in ("source_written", "target_written"):
            if not all(_is_position(k) and isinstance(v, str)
                       for k, v in getattr(self, name).items()):
                raise MapsError(f"Provenance {name} must map token positions to words (str)")
        try:
            json.dumps(self.options)  # saved with the maps, as JSON
        except (TypeError, ValueError, RecursionError) as exc:
            raise MapsError(f"Provenance options must be what JSON can hold (str, numbers, "
                            f"bools, None, lists and dicts of them): {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Provenance:
        """Read saved provenance, keeping what has the expected type and dropping the rest
        (another tool's file may hold other facts, or none)."""
        if not isinstance(data, dict):
            return cls()
        kept: dict[str, Any] = {}
        for spec in fields(cls):
            value = data.get(spec.name)
            if spec.name in ("options", "default_layers"):
                if isinstance(value, dict):
                    kept[spec.name] = {str(k): v for k, v in value.items()
                                       if spec.name == "options" or _is_int(v)}
            elif spec.name == "target_generated":
                kept[spec.name] = value is True
            elif spec.name in ("source_written", "target_written"):
                if isinstance(value, dict):
                    kept[spec.name] = {int(k): v for k, v in value.items()
                                       if _is_position(k) and isinstance(v, str)}
            elif isinstance(value, str):
                kept[spec.name] = value
        return cls(**kept)


@dataclass(frozen=True, eq=False, repr=False)
class AttentionMaps:
    """The attention weights of one source/target pair, per kind, layer and head.

    Args:
        source_tokens: S labels, the encoder's input (empty for a decoder-only model).
        target_tokens: T labels, the decoder's input (empty when no decoder ran).
        encoder_self: encoder self-attention, or None.
        decoder_self: masked decoder self-attention, or None.
        cross: cross-attention (queries from the decoder, keys from the encoder), or None.
        provenance: where they come from.
        kept: for a kind whose maps hold some of the model's layers or heads only (a
            Hugging Face model traced for one layer), the model's numbers of the layers and
            heads they hold: ``{"encoder_self": {"layers": [5], "heads": [0, 1, ...]}}``.
            A kind absent from it holds layers and heads 0, 1, ... in order.

    Shape:
        - encoder_self: ``[L_enc, H, S, S]``
        - decoder_self: ``[L_dec, H, T, T]``
        - cross: ``[L_dec, H, T, S]``

    Raises:
        MapsError: (an AttnvizError and a ValueError) when the tokens are not lists of str, a
            map is not an array of numbers or its shape disagrees with the tokens or another
            map, or the provenance is not a :class:`Provenance`.
    """

    source_tokens: list[str]
    target_tokens: list[str]
    encoder_self: np.ndarray | None = None
    decoder_self: np.ndarray | None = None
    cross: np.ndarray | None = None
    provenance: Provenance = field(default_factory=Provenance)
    kept: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("source_tokens", "target_tokens"):
            tokens = getattr(self, name)
            if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str)
                                                                for t in tokens):
                raise MapsError(f"{name} must be a list of str (one label per token), not "
                                f"{type(tokens).__name__}" + (
                                    " holding other things" if isinstance(tokens, (list, tuple))
                                    else ""))
            object.__setattr__(self, name, list(tokens))
        if not isinstance(self.provenance, Provenance):
            raise MapsError(f"provenance must be an attnviz.Provenance, not "
                            f"{type(self.provenance).__name__}; leave it out for none")
        s, t = len(self.source_tokens), len(self.target_tokens)
        expected = {"encoder_self": ("S", "S", s, s), "decoder_self": ("T", "T", t, t),
                    "cross": ("T", "S", t, s)}
        for kind in KINDS:
            array = getattr(self, kind)
            if array is None:
                continue
            rows, cols, q, k = expected[kind]
            if not isinstance(array, np.ndarray):
                raise MapsError(f"{kind} must be a numpy array, not {type(array).__name__}")
            if array.dtype.kind not in "fiu":
                raise MapsError(f"{kind} must be an array of numbers (float32), not of "
                                f"{array.dtype}")
            if array.ndim != 4 or array.shape[2:] != (q, k):
                raise MapsError(f"{kind} must have shape [layers, heads, {rows}={q}, {cols}={k}] "
                                f"to match the tokens, got {list(array.shape)}")
            if array.shape[0] < 1 or array.shape[1] < 1:
                raise MapsError(f"{kind} has no layer or no head: shape {list(array.shape)}")
        decoder, cross = self.decoder_self, self.cross
        if decoder is not None and cross is not None and decoder.shape[:2] != cross.shape[:2]:
            raise MapsError("decoder_self and cross must have the same layers and heads, got "
                            f"{list(decoder.shape[:2])} and {list(cross.shape[:2])}")
        if not self.kinds:
            raise MapsError("there are no maps: give encoder_self, decoder_self or cross")
        for kind, numbers in self.kept.items():
            array = getattr(self, kind) if kind in KINDS else None
            if array is None or not isinstance(numbers, dict):
                raise MapsError(f"kept names {kind!r}, which these maps do not hold")
            for axis, name in ((0, "layers"), (1, "heads")):
                held = numbers.get(name, list(range(array.shape[axis])))
                if not isinstance(held, list) or len(held) != array.shape[axis] or not all(
                        _is_int(n) and n >= 0 for n in held) or len(set(held)) != len(held):
                    raise MapsError(f"kept {name} of {kind} must be {array.shape[axis]} "
                                    f"distinct indices, one per {name[:-1]} of the map")

    def __repr__(self) -> str:
        """What the maps are, in a few lines, never their weights: the kinds, layers and heads,
        the lengths, the texts (shortened) and the model."""
        sizes = {kind: self.stack(kind).shape[:2] for kind in self.kinds}
        layers, heads = ({kind: size[axis] for kind, size in sizes.items()} for axis in (0, 1))
        facts = self.provenance
        texts = [f"{name}={short_text(text)!r}"
                 for name, text in (("source", facts.source_text), ("target", facts.target_text))
                 if text is not None]
        return (f"AttentionMaps(kinds={self.kinds!r}, layers={_one_or_each(layers)}, "
                f"heads={_one_or_each(heads)},\n"
                f"              source_tokens={len(self.source_tokens)}, "
                f"target_tokens={len(self.target_tokens)}, model={short_text(facts.model)!r}"
                + "".join(f",\n              {text}" for text in texts) + ")")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of attention these maps hold, in the order of :data:`KINDS`."""
        return tuple(kind for kind in KINDS if getattr(self, kind) is not None)

    @property
    def measure(self) -> str:
        """What the maps hold, as their provenance says (``options["weights"]``): the softmax
        weights, ``"attention"``, or ``"norm"``, the norm-based weights (see
        :data:`attnviz.maps.kinds.WEIGHTS`)."""
        value = self.provenance.options.get("weights")
        return value if value in WEIGHTS else "attention"

    def stack(self, kind: str) -> np.ndarray:
        """The maps of one kind. Shape: ``[L, H, Q, K]``. Raises KeyError for an absent kind."""
        array = getattr(self, kind) if kind in KINDS else None
        if array is None:
            raise KeyError(kind)
        return array

    def default_layer(self, kind: str) -> int:
        """The layer drawn when none is asked for: the model's recommendation, else the last
        (of those the maps hold), by the model's numbering."""
        layers = self.layers_of(kind)
        chosen = self.provenance.default_layers.get(kind)
        return chosen if _is_int(chosen) and chosen in layers else layers[-1]

    def layers_of(self, kind: str) -> list[int]:
        """The model's numbers of the layers the maps of ``kind`` hold, in their order."""
        count = self.stack(kind).shape[0]
        return list(self.kept.get(kind, {}).get("layers", range(count)))

    def heads_of(self, kind: str) -> list[int]:
        """The model's numbers of the heads the maps of ``kind`` hold, in their order."""
        count = self.stack(kind).shape[1]
        return list(self.kept.get(kind, {}).get("heads", range(count)))

    def layer_position(self, kind: str, layer: int) -> int:
        """Where the model's layer ``layer`` is in the maps of ``kind`` (their first axis).
        Raises AttnvizError (``⟨layer⟩``) for a layer they do not hold."""
        return _position(self.layers_of(kind), layer, "layer", kind,
                         self.stack(kind).shape[0], kind in self.kept)

    def head_position(self, kind: str, head: int) -> int:
        """Where the model's head ``head`` is in the maps of ``kind`` (their second axis)."""
        return _position(self.heads_of(kind), head, "head", kind, self.stack(kind).shape[1],
                         kind in self.kept)

    def check_weights(self) -> None:
        """Raise ValueError unless every map holds attention weights: finite, at least 0, and
        each row summing to 1 (or all 0: a query that saw no key). Saved files are checked
        with this; the models' own maps are weights by construction."""
        for kind in self.kinds:
            array = self.stack(kind)
            if not np.isfinite(array).all():
                raise ValueError(f"{kind} holds NaN or infinite values")
            if array.size and float(array.min()) < -ROW_SUM_TOLERANCE:
                raise ValueError(f"{kind} holds negative weights ({float(array.min()):.3g})")
            sums = array.sum(axis=-1, dtype=np.float64)  # (L, H, Q)
            empty = (sums == 0.0).all(axis=-1)  # (L, H): a map with no weight at all
            if array.shape[2] and empty.any():
                layer, head = (int(i) for i in np.argwhere(empty)[0])
                raise ValueError(f"{kind} at layer {layer}, head {head} holds no weight at all "
                                 "(every row is 0): not attention weights")
            bad = ~((np.abs(sums - 1.0) <= ROW_SUM_TOLERANCE) | (sums == 0.0))
            if bad.any():
                layer, head, row = (int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{kind} is not attention weights: its row {row} at layer "
                                 f"{layer}, head {head} sums to {sums[layer, head, row]:.4g}, "
                                 "not 1 (a softmax row sums to 1)")

    # The file format: the keys below, in an npz (arrays) or a json (lists) file.
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The maps as the arrays of an npz file: token lists as string arrays, each kind
        present as float32, and the provenance as a JSON string."""
        arrays = {"source_tokens": np.array(self.source_tokens, dtype=str),
                  "target_tokens": np.array(self.target_tokens, dtype=str)}
        for kind in self.kinds:
            stack = self.stack(kind)  # float16 stays float16: a long text's maps are large
            arrays[kind] = stack if stack.dtype in (np.float32, np.float16) else np.asarray(
                stack, dtype=np.float32)
        arrays[PROVENANCE] = np.array(json.dumps(self.provenance.to_dict(), ensure_ascii=False))
        if self.kept:
            arrays[KEPT] = np.array(json.dumps(self.kept))
        return arrays

    def to_json(self) -> dict[str, Any]:
        """The maps as a json object: the same keys, arrays as nested lists."""
        data: dict[str, Any] = {"source_tokens": list(self.source_tokens),
                                "target_tokens": list(self.target_tokens)}
        for kind in self.kinds:
            data[kind] = self.stack(kind).tolist()
        data[PROVENANCE] = self.provenance.to_dict()
        if self.kept:
            data[KEPT] = self.kept
        return data

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> AttentionMaps:
        """Maps from the keys of a saved file (arrays or nested lists); a missing token list
        is empty, an absent kind is None. Raises ValueError when they do not fit together."""
        tokens = {}
        for key in ("source_tokens", "target_tokens"):
            value = data.get(key, [])
            value = value.tolist() if isinstance(value, np.ndarray) else value
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ValueError(f"{key} must be a list of strings")
            tokens[key] = value
        s, t = len(tokens["source_tokens"]), len(tokens["target_tokens"])
        tails = {"encoder_self": (s, s), "decoder_self": (t, t), "cross": (t, s)}
        arrays: dict[str, np.ndarray | None] = {}
        for kind in KINDS:
            value = data.get(kind)
            if value is None:
                arrays[kind] = None
                continue
            try:
                given = np.asarray(value)
            except (TypeError, ValueError, OverflowError):
                given = np.asarray([], dtype=object)  # ragged nested lists
            if given.dtype.kind not in "fiub" or given.dtype == object:
                raise ValueError(f"{kind} must be a 4-dimensional array of numbers [layers, "
                                 f"heads, queries, keys], not of {given.dtype}")
            try:
                with np.errstate(over="ignore"):  # said below, in one line, not as a warning
                    array = given if given.dtype == np.float16 else np.asarray(
                        given, dtype=np.float32)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{kind} must be a 4-dimensional array of numbers "
                                 "[layers, heads, queries, keys]") from None
            if given.dtype.kind == "f" and np.isinf(array).any() and np.isfinite(given).all():
                raise ValueError(f"{kind} holds numbers too large for float32 (above 3.4e38): "
                                 "not attention weights, which lie between 0 and 1")
            if array.size == 0 and 2 <= array.ndim < 4:  # nested lists lose empty axes' sizes
                array = array.reshape(array.shape[:2] + tails[kind])
            arrays[kind] = array
        raw = data.get(PROVENANCE)
        if isinstance(raw, np.ndarray):
            try:
                raw = json.loads(str(raw))
            except (ValueError, RecursionError):  # not JSON: dropped, as another tool's facts
                raw = None
        kept = data.get(KEPT) or {}
        if isinstance(kept, np.ndarray):
            try:
                kept = json.loads(str(kept))
            except (ValueError, RecursionError):
                raise ValueError("kept must be JSON: the layers and heads each kind holds"
                                 ) from None
        if not isinstance(kept, dict):
            raise ValueError("kept must map kinds to the layers and heads they hold")
        return cls(tokens["source_tokens"], tokens["target_tokens"],
                   provenance=Provenance.from_dict(raw), kept=kept, **arrays)

    def to_bytes(self, fmt: str) -> bytes:
        """The bytes of an ``npz`` or ``json`` file of these maps."""
        from attnviz.io import arrays as array_files

        if fmt == "npz":
            return array_files.npz_bytes(self.to_arrays())
        if fmt == "json":
            weights = sum(self.stack(kind).size for kind in self.kinds)
            if weights * JSON_BYTES_PER_WEIGHT > array_files.MAX_JSON_BYTES:
                raise AttnvizError(
                    f"these maps hold {weights:,} weights, about "
                    f"{weights * JSON_BYTES_PER_WEIGHT / 1024**2:,.0f} MB of JSON, more than "
                    f"the {array_files.MAX_JSON_BYTES // 1024**2} MB attnviz reads back; save them "
                    "as .npz")
            return array_files.json_bytes(self.to_json())
        raise ValueError(f"maps are saved as npz or json, not {fmt!r}")

    def save(self, path: str | Path) -> None:
        """Write every map and the provenance to ``path`` (``.npz`` or ``.json``), whole or
        not at all. ``numpy.load(path)`` reads the npz back without pickle."""
        from attnviz.io.atomic import check_writable, write_atomically

        path = _path(path)
        fmt = _format_of(path)
        check_writable(path)  # a NUL, a missing folder: one line, before the bytes are made
        write_atomically(path, self.to_bytes(fmt))

    @classmethod
    def load(cls, path: str | Path) -> AttentionMaps:
        """Read maps saved by :meth:`save`, or by another tool with the same keys, and check
        that they are attention weights. Raises AttnvizError naming the file and the problem.
        """
        from attnviz.io import arrays as array_files
        from attnviz.io.text import printable

        path = _path(path)
        what, way_out = "attention maps file", "give maps saved by attnviz (⟨output⟩ maps.npz)"
        if _format_of(path) == "npz":
            data = array_files.read_npz(path, what, way_out, MAX_FILE_BYTES)
        else:
            data = array_files.read_json(path, what, way_out)
        name = printable(str(path))
        if not isinstance(data, dict):
            raise AttnvizError(f"{name} holds no attention maps: expected an object with the keys "
                               f"{', '.join(KEYS)}; {way_out}")
        if not any(kind in data for kind in KINDS):
            raise AttnvizError(f"{name} holds no attention maps: none of the keys "
                               f"{', '.join(KINDS)} is there; {way_out}")
        try:
            maps = cls.from_fields(data)
            maps.check_weights()
        except (ValueError, RecursionError, OverflowError, MemoryError) as exc:
            raise AttnvizError(f"{name}: {printable(str(exc))}") from None
        empty = {kind: int((maps.stack(kind).sum(axis=-1) == 0).sum()) for kind in maps.kinds}
        if any(empty.values()):
            import warnings

            counts = ", ".join(f"{count} of {kind}" for kind, count in empty.items() if count)
            warnings.warn(f"{name}: some rows hold no weight ({counts}): queries that saw no key, "
                          "such as padding", AttnvizWarning, stacklevel=2)
        return maps

    @classmethod
    def from_huggingface(
        cls,
        outputs: Any,
        *,
        source_tokens: Sequence[str] | None = None,
        target_tokens: Sequence[str] | None = None,
        provenance: Provenance | None = None,
        batch_index: int = 0,
    ) -> AttentionMaps:
        """Maps from a Hugging Face forward pass run with ``output_attentions=True``.

        An encoder-decoder model's outputs hold ``encoder_attentions``,
        ``decoder_attentions`` and ``cross_attentions``; an encoder-only or decoder-only
        model's hold ``attentions`` (give ``source_tokens`` for an encoder, ``target_tokens``
        for a decoder). Each is a tuple with one tensor per layer.

        Args:
            outputs: the model's output object (or a dict with those keys).
            source_tokens: labels of the encoder's input tokens.
            target_tokens: labels of the decoder's input tokens.
            provenance: where the maps come from.
            batch_index: which sequence of the batch to take.

        Shape:
            each layer's tensor: ``[batch, H, query, key]`` -> maps ``[L, H, query, key]``

        Raises:
            AttnvizError: outputs without attention weights, weights that do not fit the
                tokens, a batch index out of range, an argument of the wrong type.
        """
        from attnviz.maps.output_attentions import attention_arrays

        for name, tokens in (("source_tokens", source_tokens),
                             ("target_tokens", target_tokens)):
            if tokens is not None and (isinstance(tokens, str) or not isinstance(
                    tokens, Sequence) or not all(isinstance(t, str) for t in tokens)):
                raise AttnvizError(f"{name} must be a list of str (one label per token), not "
                                   f"{type(tokens).__name__}")
        if provenance is not None and not isinstance(provenance, Provenance):
            raise AttnvizError(f"provenance must be a Provenance or None, not "
                               f"{type(provenance).__name__}")
        if not _is_int(batch_index):
            raise AttnvizError(f"batch_index must be an int, not {type(batch_index).__name__}")
        maps = attention_arrays(outputs, source_given=source_tokens is not None,
                                target_given=target_tokens is not None, batch_index=batch_index)
        try:
            return cls(list(source_tokens or []), list(target_tokens or []),
                       provenance=provenance or Provenance(), **maps)
        except ValueError as exc:  # the weights do not fit the tokens
            raise AttnvizError(str(exc)) from None

def _position(held: list[int], number: int, name: str, kind: str, count: int, kept: bool
              ) -> int:
    """The place of the model's ``number`` among the ``held`` layers (heads) of ``kind``."""
    from attnviz.maps.kinds import TITLES

    if number in held:
        return held.index(number)
    if not kept:
        if name == "layer":
            raise AttnvizError(f"layer {number} is out of range: the {TITLES[kind].lower()} "
                               f"has layers 0 to {count - 1}", setting="layer")
        raise AttnvizError(f"head {number} is out of range: these maps have heads 0 to "
                           f"{count - 1}, or the mean of all", setting="head")
    shown = ", ".join(str(n) for n in held[:8]) + (", ..." if len(held) > 8 else "")
    raise AttnvizError(f"{name} {number} is not in these maps: the {TITLES[kind].lower()} was "
                       f"traced keeping {name}(s) {shown} only; choose one of them, or trace "
                       f"again keeping ⟨{name}⟩ {number}", setting=name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def short_text(text: str | None) -> str | None:
    """A text as a repr quotes it: at most :data:`REPR_TEXT_CHARS` characters, then ``…``."""
    if text is None or len(text) <= REPR_TEXT_CHARS:
        return text
    return text[:REPR_TEXT_CHARS - 1] + "…"


def _one_or_each(counts: dict[str, int]) -> str:
    """``2`` when every kind has 2, else ``{'encoder_self': 6, 'cross': 12, ...}``."""
    values = set(counts.values())
    return str(values.pop()) if len(values) == 1 else repr(counts)


def _is_position(key: Any) -> bool:
    """A position as a dict key: an int, or its digits (JSON keys are strings)."""
    return (_is_int(key) and key >= 0) or (isinstance(key, str) and key.isascii()
                                           and key.isdigit() and len(key) < 10)


def expect_maps(value: Any) -> AttentionMaps:
    """``value``, when it is AttentionMaps; else AttnvizError saying where maps come from."""
    if isinstance(value, AttentionMaps):
        return value
    raise AttnvizError(f"maps must be AttentionMaps, not {type(value).__name__}: what "
                       "attnviz.trace gives, or AttentionMaps.load(path) of a saved file")


def _path(path: Any) -> Path:
    """A file's path as the library takes it: a str or a ``pathlib.Path``."""
    if isinstance(path, (str, Path)):
        return Path(path)
    raise AttnvizError(f"a path must be a str or a pathlib.Path, not {type(path).__name__}")


def _format_of(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        from attnviz.io.text import printable

        raise AttnvizError(f"{printable(str(path))}: attention maps are saved as .npz or .json")
    return fmt
