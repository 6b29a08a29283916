"""The Python API refuses arguments of the wrong type or range with one AttnvizError line
(what the README promises), never a deep AttributeError, TypeError, IndexError or ValueError.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnviz
from attnviz.api import png
from attnviz.errors import AttnvizError
from attnviz.maps.data import AttentionMaps
from attnviz.model.checkpoint import save_checkpoint

SENTENCE = "the cat sees a car"


@pytest.fixture(scope="module")
def maps() -> AttentionMaps:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return attnviz.trace(SENTENCE, model="random", cache=False)


def _refused(call, *fragments: str) -> str:
    """The one line ``call`` raises as an AttnvizError, holding each fragment."""
    with pytest.raises(AttnvizError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    return message


def _trace(**changes):
    arguments = dict(source=SENTENCE, model="random", cache=False)
    arguments.update(changes)
    return lambda: attnviz.trace(**arguments)


@pytest.mark.parametrize("changes, fragments", [
    ({"source": b"the cat"}, ["the source text must be a str, not bytes", ".decode("]),
    ({"source": 5}, ["the source text must be a str, not int"]),
    ({"source": ["the", "cat"]}, ["the source text must be a str, not list"]),
    ({"source": None}, ["the source text is empty"]),  # a saved file's own text, else refused
    ({"target": b"le chat"}, ["target must be a str or None, not bytes"]),
    ({"target": 5}, ["target must be a str or None, not int"]),
    ({"model": 5}, ["model must be a name or a path, not int"]),
    ({"model": b"random"}, ["model must be a name or a path, not bytes"]),
    ({"seed": -1}, ["seed -1 is out of range", "0 to 4294967295"]),
    ({"seed": 2**63 + 1}, ["seed 9223372036854775809 is out of range"]),
    ({"seed": 1.5}, ["seed must be an int, not float"]),
    ({"seed": "3"}, ["seed must be an int, not str"]),
    ({"seed": True}, ["seed must be an int, not bool"]),
    ({"seed": None}, ["seed must be an int, not NoneType"]),
    ({"device": None}, ["device None is unknown; use cpu, cuda or auto"]),
    ({"device": b"cpu"}, ["device b'cpu' is unknown"]),
    ({"part": "x"}, ["part 'x' is not a part: use 'encoder', 'decoder' or None"]),
    ({"part": 5}, ["part 5 is not a part"]),
])
def test_trace_refuses_wrong_arguments_in_one_line(changes, fragments):
    _refused(_trace(**changes), *fragments)


def test_a_model_given_as_a_path_is_read(tmp_path, checkpoint):
    path = tmp_path / "model.safetensors"
    save_checkpoint(checkpoint, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_path = attnviz.trace(SENTENCE, model=path, cache=False)
        by_name = attnviz.trace(SENTENCE, model=str(path), cache=False)
        explained = attnviz.explain(SENTENCE, model=path, kind="encoder")
    assert np.array_equal(by_path.encoder_self, by_name.encoder_self)
    assert by_path.provenance.model == str(path)
    assert np.array_equal(explained.weights, by_name.encoder_self[-1, 0])


@pytest.mark.parametrize("changes, fragments", [
    ({"layer": 1.0}, ["layer '1.0' is not a layer"]),
    ({"layer": True}, ["layer 'True' is not a layer"]),
    ({"layer": "last"}, ["layer 'last' is not a layer"]),
    ({"head": 0.0}, ["head '0.0' is not a head"]),
    ({"head": False}, ["head 'False' is not a head"]),
    ({"head": "max"}, ["head 'max' is not a head"]),
    ({"kind": ["cross"]}, ["kind ['cross'] is not a kind of attention"]),
    ({"kind": None}, ["kind None is not a kind of attention"]),
])
def test_plot_refuses_wrong_arguments_in_one_line(maps, changes, fragments):
    _refused(lambda: attnviz.plot(maps, **changes), *fragments)


@pytest.mark.parametrize("changes, fragments", [
    ({"layer": 1.0}, ["layer '1.0' is not a layer: give an index"]),
    ({"layer": True}, ["layer 'True' is not a layer"]),
    ({"layer": "all"}, ["layer 'all' is not a layer", "a page opens on one layer"]),
    ({"head": 1.0}, ["head '1.0' is not a head: give an index"]),
    ({"head": True}, ["head 'True' is not a head"]),
    ({"head": "all"}, ["head 'all' is not a head", "a page opens on one head"]),
    ({"kind": "both"}, ["kind 'both' is not a kind of attention"]),
    ({"kind": 5}, ["kind 5 is not a kind of attention"]),
    ({"kind": ["cross"]}, ["kind ['cross'] is not a kind of attention"]),
    ({"scale": "global"}, ["scale 'global' is not a scale: use one of panel, shared, unit, "
                           "row"]),
    ({"scale": 5}, ["scale '5' is not a scale"]),
])
def test_page_refuses_wrong_arguments_in_one_line(maps, changes, fragments):
    _refused(lambda: attnviz.page(maps, **changes), *fragments)


@pytest.mark.parametrize("changes, fragments", [
    ({"kind": "both"}, ["kind 'both' is not a kind of attention"]),
    ({"kind": None}, ["kind None is not a kind of attention"]),
    ({"layer": 1.0}, ["layer '1.0' is not a layer: give an index"]),
    ({"layer": True}, ["layer 'True' is not a layer"]),
    ({"layer": "all"}, ["layer 'all' is not a layer", "explain shows one layer"]),
    ({"head": 1.0}, ["head '1.0' is not a head: give an index"]),
    ({"head": None}, ["head 'None' is not a head"]),
    ({"head": "mean"}, ["head 'mean' is not a head", "explain shows one head"]),
    ({"source": b"the cat"}, ["the source text must be a str, not bytes"]),
    ({"seed": -1}, ["seed -1 is out of range"]),
    ({"device": 5}, ["device 5 is unknown"]),
    ({"model": 5}, ["model must be a name or a path, not int"]),
])
def test_explain_refuses_wrong_arguments_in_one_line(changes, fragments):
    arguments = dict(source=SENTENCE, model="random")
    arguments.update(changes)
    _refused(lambda: attnviz.explain(**arguments), *fragments)


@pytest.mark.parametrize("call", [attnviz.plot, attnviz.page, attnviz.rollout, png])
@pytest.mark.parametrize("given", [None, "maps.npz", Path("maps.npz"), {"cross": []}])
def test_what_is_not_maps_is_refused_by_what_draws_them(call, given):
    _refused(lambda: call(given), "must be AttentionMaps",
             f"not {type(given).__name__}", "AttentionMaps.load")


# --- AttentionMaps: saving, loading, from Hugging Face outputs ---------------------------------

@pytest.mark.parametrize("name, fragments", [
    ("a\0b.npz", ["a NUL character"]),
    ("maps.txt", ["attention maps are saved as .npz or .json"]),
    ("maps", ["attention maps are saved as .npz or .json"]),
    ("missing/maps.npz", ["folder", "does not exist"]),
])
def test_save_refuses_a_path_it_cannot_write_and_writes_nothing(maps, tmp_path, name,
                                                                 fragments):
    _refused(lambda: maps.save(tmp_path / name), *fragments)
    _refused(lambda: maps.save(str(tmp_path / name)), *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", [5, None, b"maps.npz", ["maps.npz"]])
def test_save_and_load_refuse_what_is_not_a_path(maps, tmp_path, path):
    _refused(lambda: maps.save(path), "path must be a str or a pathlib.Path",
             f"not {type(path).__name__}")
    _refused(lambda: AttentionMaps.load(path), "path must be a str or a pathlib.Path")


def _outputs(batch: int = 2) -> dict:
    rng = np.random.default_rng(0)
    weights = rng.random((batch, 2, 3, 3)).astype(np.float32)
    return {"encoder_attentions": (weights / weights.sum(-1, keepdims=True),)}


@pytest.mark.parametrize("index, fragments", [
    (2, ["batch_index 2 is out of range: the batch holds 2 sequences, 0 to 1"]),
    (-3, ["batch_index -3 is out of range"]),
    (2**70, ["is out of range"]),
    (1.0, ["batch_index must be an int, not float"]),
    (True, ["batch_index must be an int, not bool"]),
    ("0", ["batch_index must be an int, not str"]),
    (None, ["batch_index must be an int, not NoneType"]),
])
def test_from_huggingface_refuses_a_batch_index_it_cannot_take(index, fragments):
    _refused(lambda: AttentionMaps.from_huggingface(_outputs(), source_tokens=list("abc"),
                                                    batch_index=index), *fragments)


def test_from_huggingface_takes_a_batch_index_from_the_end():
    outputs = _outputs()
    last = AttentionMaps.from_huggingface(outputs, source_tokens=list("abc"), batch_index=-1)
    assert np.array_equal(last.encoder_self[0], outputs["encoder_attentions"][0][1])


@pytest.mark.parametrize("outputs, tokens, fragments", [
    (None, list("abc"), ["the outputs hold no attention weights"]),
    (_outputs(), list("ab"), ["encoder_self must have shape"]),
    ({"encoder_attentions": ("x",)}, list("abc"), ["encoder_attentions", "not a tensor"]),
    ({"encoder_attentions": 5}, list("abc"), ["encoder_attentions", "one tensor per layer"]),
    ({"encoder_attentions": (np.zeros((2, 3)),)}, list("abc"),
     ["encoder_attentions", "[batch, heads, queries, keys]"]),
    (_outputs(), "abc", ["source_tokens must be a list of str"]),
    (_outputs(), [1, 2, 3], ["source_tokens must be a list of str"]),
])
def test_from_huggingface_refuses_outputs_it_cannot_read(outputs, tokens, fragments):
    _refused(lambda: AttentionMaps.from_huggingface(outputs, source_tokens=tokens), *fragments)


def test_from_huggingface_refuses_provenance_that_is_not_provenance():
    _refused(lambda: AttentionMaps.from_huggingface(_outputs(), source_tokens=list("abc"),
                                                    provenance={"model": "x"}),
             "provenance must be a Provenance or None, not dict")


# --- any object for any argument: it works, or it is one AttnvizError ----------------------------

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2, max_value=3),
    st.floats(allow_nan=True), st.text(max_size=12), st.binary(max_size=8),
    st.sampled_from(["all", "mean", "encoder", "self", "cross", "decoder", "cpu", "auto",
                     "cuda", "random", "panel", "row", "0:2", "x.npz", "hf:x", "a\0b"]),
    st.lists(st.integers(min_value=-1, max_value=3), max_size=3),
    st.tuples(st.integers(min_value=-3, max_value=3), st.integers(min_value=-3, max_value=3)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.builds(object), st.builds(Path, st.text(max_size=8)),
)

CALLS = {
    "trace": (lambda maps, **a: attnviz.trace(**{"source": SENTENCE, "model": "random",
                                                 "cache": False, **a}),
              ["source", "target", "model", "part", "seed", "device"]),
    "plot": (lambda maps, **a: attnviz.plot(maps, **a),
             ["kind", "layer", "head", "cmap", "scale", "window", "window_query", "window_key"]),
    "page": (lambda maps, **a: attnviz.page(maps, **a),
             ["kind", "layer", "head", "scale", "cmap"]),
    "explain": (lambda maps, **a: attnviz.explain(**{"source": SENTENCE, "model": "random", **a}),
                ["source", "target", "model", "kind", "layer", "head", "seed", "device"]),
    "save": (lambda maps, **a: maps.save(**a), ["path"]),
    "load": (lambda maps, **a: AttentionMaps.load(**a), ["path"]),
    "from_huggingface": (lambda maps, **a: AttentionMaps.from_huggingface(
        **{"outputs": _outputs(), "source_tokens": list("abc"), **a}),
        ["outputs", "source_tokens", "target_tokens", "provenance", "batch_index"]),
}


@pytest.mark.parametrize("name, argument", [(name, argument) for name, (_, arguments)
                                            in CALLS.items() for argument in arguments])
def test_any_object_for_any_argument_works_or_is_one_attnviz_error(maps, tmp_path, monkeypatch,
                                                                    name, argument):
    call = CALLS[name][0]
    monkeypatch.chdir(tmp_path)  # a path that works is written here

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(value=ANYTHING)
    def works_or_refuses(value):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                call(maps, **{argument: value})
            except AttnvizError as exc:
                assert "\n" not in str(exc)

    works_or_refuses()


ONE = np.full((1, 1, 2, 2), 0.5, np.float32)
NAN = np.full((1, 1, 2, 2), np.nan, np.float32)


@pytest.mark.parametrize("make, fragments", [
    (lambda: AttentionMaps(["a", "b"], [], encoder_self=ONE, provenance={}),
     ["provenance must be an attnviz.Provenance, not dict"]),
    (lambda: AttentionMaps(["a", "b"], [], encoder_self=ONE, provenance=None),
     ["provenance must be an attnviz.Provenance, not NoneType"]),
    (lambda: AttentionMaps(["a", "b"], [], encoder_self=np.full((1, 1, 2, 2), "x")),
     ["encoder_self must be an array of numbers"]),
    (lambda: AttentionMaps(None, [], encoder_self=ONE),
     ["source_tokens must be a list of str", "not NoneType"]),
    (lambda: AttentionMaps(["a", 2], [], encoder_self=ONE), ["source_tokens must be a list"]),
    (lambda: AttentionMaps(["a"], [], encoder_self=ONE), ["encoder_self must have shape"]),
    (lambda: attnviz.Provenance(source_text=5), ["source_text must be a str or None"]),
    (lambda: attnviz.Provenance(options={"x": object()}), ["options must be what JSON"]),
    (lambda: attnviz.Provenance(target_written={"one": "zebra"}), ["target_written"]),
])
def test_maps_and_provenance_of_the_wrong_types_are_one_attnviz_error(make, fragments):
    """Each raised a plain Python error where the README says AttnvizError: an
    AttributeError when drawn (provenance={} or None), numpy's TypeError (a map of strings),
    a TypeError (AttentionMaps(None, ...), Provenance(source_text=5)), a non-JSON option
    on save. Still ValueErrors, as they were."""
    _refused(make, *fragments)
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("call", [attnviz.page, attnviz.plot, png])
def test_maps_that_are_not_weights_are_refused_by_what_draws_them(call):
    """page() of NaN maps gave a ValueError (with numpy's RuntimeWarnings); plot() drew
    nothing, silently."""
    maps = AttentionMaps(["a", "b"], [], encoder_self=NAN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning on the way
        _refused(lambda: call(maps), "these maps are not attention weights",
                 "encoder_self holds NaN")


def test_numpy_integers_are_taken_wherever_an_index_or_a_seed_is(maps):
    attnviz.plot(maps, layer=np.int64(0), head=np.int32(1), window=(np.int64(0), 2))
    attnviz.page(maps, layer=np.int64(0), head=np.int64(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = attnviz.trace(SENTENCE, model="random", seed=np.int64(0), cache=False)
    assert np.array_equal(again.cross, maps.cross)


def test_dir_shows_the_public_names_and_not_the_packages_helpers():
    names = dir(attnviz)
    assert {"trace", "plot", "page", "AttentionMaps", "AttnvizError"} <= set(names)
    assert not {"TYPE_CHECKING", "annotations", "sys"} & set(names)
