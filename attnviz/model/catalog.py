"""Which model a ``--model`` value means: a shipped model's name, ``random``, or a file path.

Needs no torch, so the render cache can tell which file a run would use without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnviz.errors import AttnvizError

RANDOM = "random"  # a randomly initialised model, vocabulary built from the given text
DEFAULT_MODEL = "translate"  # shipped in samples/models, trained by `attnviz train`
SHIPPED_DIRS = (
    Path(__file__).parents[1] / "samples" / "models",  # attnviz/samples: an installed wheel
    Path(__file__).parents[2] / "samples" / "models",  # beside attnviz/: a source checkout
)


def shipped_models() -> dict[str, Path]:
    """The models shipped with attnviz, by name."""
    found: dict[str, Path] = {}
    for folder in SHIPPED_DIRS:
        if folder.is_dir():
            for path in sorted(folder.glob("*.safetensors")):
                found.setdefault(path.stem, path)
    return found


def resolve(spec: str | None) -> Path | None:
    """The model file ``spec`` names, or None for the random model.

    A bare word that is neither a shipped name nor an existing file is an unknown name;
    anything else is a path, checked when it is loaded.
    """
    spec = spec or DEFAULT_MODEL
    if spec == RANDOM:
        return None
    shipped = shipped_models()
    if spec in shipped:
        return shipped[spec]
    path = Path(spec)
    if not path.exists() and path.suffix == "" and "/" not in spec:
        import difflib

        from attnviz.io.text import printable

        names = ", ".join([RANDOM, *shipped])
        close = difflib.get_close_matches(spec, [RANDOM, *shipped], n=1)
        meant = f" (did you mean {close[0]}?)" if close else ""
        raise AttnvizError(f"unknown model {printable(spec)!r}{meant}; use one of {names}, the "
                           "path of a model file or of saved maps (.npz, .json), or hf:NAME for "
                           "a Hugging Face model")
    return path


@dataclass(frozen=True)
class ModelSummary:
    """What ``attnviz models`` says of one model, read from its file without loading it."""

    name: str
    description: str
    tokens: str  # "word" or "char"
    layers: int
    heads: int
    width: int
    size_bytes: int | None  # None: nothing on disk (the random model)
    exact_match: float | None
    alignment: list[float] | None  # per decoder layer


def describe() -> list[ModelSummary]:
    """The random model, then every shipped model with its sizes and measured accuracy."""
    from attnviz.model.config import ModelConfig
    from attnviz.model.modelfile import read_metadata

    summaries = [ModelSummary(RANDOM, "random weights, any words", "word",
                              ModelConfig.n_encoder_layers, ModelConfig.n_heads,
                              ModelConfig.d_model, None, None, None)]
    for name, path in shipped_models().items():
        data = path.read_bytes()
        meta = read_metadata(data, str(path))
        config, info = meta["config"], meta["info"]
        metrics = info.get("metrics") or {}
        summaries.append(ModelSummary(
            name, info.get("description", info.get("task", "?")),
            meta["source_tokenizer"]["kind"], config["n_encoder_layers"], config["n_heads"],
            config["d_model"], len(data), metrics.get("exact_match"), metrics.get("alignment")))
    return summaries


@dataclass(frozen=True)
class ModelVocabulary:
    """The tokens a model knows, read from its file; ids are positions."""

    name: str
    source: list[str]
    target: list[str]
    source_kind: str  # "word" or "char": how text is split into these tokens
    target_kind: str


def vocabulary(name: str) -> ModelVocabulary:
    """The source and target vocabulary of a shipped model or a model file, without torch.

    Raises AttnvizError for the random model (whose vocabulary is the words it is given),
    saved maps and Hugging Face models (whose vocabulary is their tokenizer's).
    """
    from attnviz.io.text import printable
    from attnviz.model.modelfile import read_metadata, read_model_file

    if name.startswith("hf:") or name.lower().endswith((".npz", ".json")):
        raise AttnvizError(f"{printable(name)} is not an attnviz model: only attnviz's own "
                           "models (shipped ones and files from `attnviz train`) have a "
                           "vocabulary to list")
    path = resolve(name)
    if path is None:
        raise AttnvizError("the random model has no vocabulary of its own: it is made of the "
                           "words of the sentences it is given, so no word is unknown to it")
    meta = read_metadata(read_model_file(path), printable(str(path)))
    return ModelVocabulary(name, list(meta["source_vocab"]), list(meta["target_vocab"]),
                           meta["source_tokenizer"]["kind"], meta["target_tokenizer"]["kind"])
