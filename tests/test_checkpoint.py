"""Model files: round trips, and every way a file can be missing, damaged or hostile."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save

from attnviz.checkpoint import load_checkpoint, save_checkpoint
from attnviz.errors import AttnvizError
from tests.conftest import tiny_config


def _outputs(checkpoint):
    source = torch.tensor([[4, 5, 6, 4]])
    target = torch.tensor([[1, 4, 5]])
    with torch.no_grad():
        return checkpoint.model(source, target)


def test_a_saved_model_loads_back_to_identical_outputs(checkpoint, model_file):
    loaded = load_checkpoint(model_file)
    assert loaded.config == checkpoint.config
    assert loaded.source_vocab.tokens == checkpoint.source_vocab.tokens
    assert loaded.target_vocab.tokens == checkpoint.target_vocab.tokens
    assert loaded.source_tokenizer == checkpoint.source_tokenizer
    assert loaded.info == {"task": "test"}
    expected, actual = _outputs(checkpoint), _outputs(loaded)
    for field in ("logits", "encoder_self", "decoder_self", "cross"):
        assert torch.equal(getattr(expected, field), getattr(actual, field))


def test_saving_leaves_no_temporary_file(tmp_path, checkpoint):
    save_checkpoint(checkpoint, tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def _metadata(checkpoint, **changes):
    meta = {
        "format": "attnviz-model", "schema_version": "1",
        "config": json.dumps(checkpoint.config.to_dict()),
        "source_tokenizer": json.dumps(checkpoint.source_tokenizer.to_dict()),
        "target_tokenizer": json.dumps(checkpoint.target_tokenizer.to_dict()),
        "source_vocab": json.dumps(checkpoint.source_vocab.tokens),
        "target_vocab": json.dumps(checkpoint.target_vocab.tokens),
        "info": "{}",
    }
    meta.update(changes)
    return meta


def _state(checkpoint):
    return {k: v.contiguous() for k, v in checkpoint.model.state_dict().items()}


def test_missing_file_names_the_path_and_the_way_out(tmp_path):
    with pytest.raises(AttnvizError, match=r"does not exist.*attnviz train"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_a_directory_is_not_a_model(tmp_path):
    with pytest.raises(AttnvizError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage", b"\xff" * 100, b"\x10\x00\x00\x00\x00\x00"
                                     b"\x00\x00{not json}......"])
def test_garbage_is_not_a_model(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(AttnvizError, match="not a usable attnviz model file"):
        load_checkpoint(path)


def test_a_truncated_file_is_refused(tmp_path, model_file):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(model_file.read_bytes()[:-100])
    with pytest.raises(AttnvizError, match="not a usable attnviz model file"):
        load_checkpoint(path)


def test_a_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Exploit()))
    torch_file = tmp_path / "evil.pt"
    torch.save({"x": Exploit()}, torch_file)
    for candidate in (path, torch_file):
        with pytest.raises(AttnvizError, match="not a usable attnviz model file"):
            load_checkpoint(candidate)
    assert not marker.exists()


def test_a_safetensors_file_without_our_metadata_is_refused(tmp_path, checkpoint):
    path = tmp_path / "other.safetensors"
    path.write_bytes(save(_state(checkpoint)))
    with pytest.raises(AttnvizError, match="no attnviz metadata"):
        load_checkpoint(path)


def test_a_newer_schema_asks_for_a_retrain(tmp_path, checkpoint):
    path = tmp_path / "new.safetensors"
    path.write_bytes(save(_state(checkpoint), metadata=_metadata(checkpoint,
                                                                  schema_version="9")))
    with pytest.raises(AttnvizError, match="schema version '9'"):
        load_checkpoint(path)


def test_a_config_claiming_huge_sizes_allocates_nothing_and_is_refused(tmp_path, checkpoint):
    huge = tiny_config(d_model=2**20, n_heads=2, d_ff=2**20).to_dict()
    huge.update(source_vocab_size=len(checkpoint.source_vocab),
                target_vocab_size=len(checkpoint.target_vocab))
    path = tmp_path / "huge.safetensors"
    path.write_bytes(save(_state(checkpoint),
                          metadata=_metadata(checkpoint, config=json.dumps(huge))))
    with pytest.raises(AttnvizError, match="weights do not fit its config"):
        load_checkpoint(path)


@pytest.mark.parametrize("field, value, message", [
    ("config", '{"d_model": 7}', "source_vocab_size"),
    ("config", "[1, 2]", "JSON object"),
    ("source_vocab", '["a"]', "vocabulary must start"),
    ("target_tokenizer", '{"kind": "bpe", "lowercase": true}', "tokenizer kind"),
    ("info", "[]", "info must be"),
    ("info", "{broken", "metadata is damaged"),
])
def test_damaged_metadata_is_refused_with_the_reason(tmp_path, checkpoint, field, value,
                                                     message):
    path = tmp_path / "damaged.safetensors"
    path.write_bytes(save(_state(checkpoint), metadata=_metadata(checkpoint, **{field: value})))
    with pytest.raises(AttnvizError, match=message):
        load_checkpoint(path)


def test_weights_of_the_wrong_type_or_set_are_refused(tmp_path, checkpoint):
    state = _state(checkpoint)
    path = tmp_path / "half.safetensors"
    path.write_bytes(save({k: v.half() for k, v in state.items()},
                          metadata=_metadata(checkpoint)))
    with pytest.raises(AttnvizError, match="float32"):
        load_checkpoint(path)
    state.pop("output.bias")
    path.write_bytes(save(state, metadata=_metadata(checkpoint)))
    with pytest.raises(AttnvizError, match="do not fit"):
        load_checkpoint(path)


def test_a_deeply_nested_header_is_refused_not_a_traceback(tmp_path):
    header = b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(AttnvizError, match="no attnviz metadata"):
        load_checkpoint(path)


def test_deeply_nested_metadata_is_refused(tmp_path, checkpoint):
    path = tmp_path / "deep-info.safetensors"
    path.write_bytes(save(_state(checkpoint), metadata=_metadata(
        checkpoint, info="[" * 100_000 + "]" * 100_000)))
    with pytest.raises(AttnvizError, match="metadata is damaged"):
        load_checkpoint(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused(tmp_path, checkpoint, bad):
    state = _state(checkpoint)
    state["output.bias"] = state["output.bias"].clone()
    state["output.bias"][0] = bad
    path = tmp_path / "nan.safetensors"
    path.write_bytes(save(state, metadata=_metadata(checkpoint)))
    with pytest.raises(AttnvizError, match="NaN or infinite"):
        load_checkpoint(path)


def test_a_config_asking_for_endless_decoding_is_refused(tmp_path, checkpoint):
    config = {**checkpoint.config.to_dict(), "max_target_length": 10**9}
    path = tmp_path / "endless.safetensors"
    path.write_bytes(save(_state(checkpoint), metadata=_metadata(checkpoint,
                                                                  config=json.dumps(config))))
    with pytest.raises(AttnvizError, match="max_target_length must be at most 1024"):
        load_checkpoint(path)


def test_the_same_model_gives_the_same_bytes_even_with_accented_tokens(tmp_path, checkpoint):
    from attnviz.tokenize import Vocabulary

    accented = Vocabulary([*checkpoint.target_vocab.tokens[:-2], "à", "bientôt"])
    checkpoint.target_vocab = accented
    checkpoint.info["note"] = "ça va, élève"
    files = []
    for index in range(4):  # safetensors' own header order changes from run to run
        path = tmp_path / f"m{index}.safetensors"
        save_checkpoint(checkpoint, path)
        files.append(path.read_bytes())
    assert len(set(files)) == 1
    assert load_checkpoint(tmp_path / "m0.safetensors").target_vocab.tokens[-1] == "bientôt"
