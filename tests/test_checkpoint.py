"""Model files: round trips, and every way a file can be missing, damaged or hostile."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from attnviz.errors import AttnvizError
from attnviz.io.reading import read_regular_file
from attnviz.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from attnviz.model.tokenize import SPECIALS, Tokenizer, Vocabulary
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
    assert torch.equal(expected.logits, actual.logits)
    for kind in ("encoder_self", "decoder_self", "cross"):
        assert torch.equal(expected.attention.weights(kind), actual.attention.weights(kind))


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
    from attnviz.model.tokenize import Vocabulary

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


# ---------------------------------------------------------------------------------------------
# Reading: only regular files, of bounded size. Limits: the same for writing and reading.

def _special_files(tmp_path):
    """A FIFO, a device, a socket and a directory, each with the kind its message names."""
    import os
    import socket

    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "model.sock"))
    return sock, {fifo: "is not a regular file (a FIFO)",
                  Path("/dev/zero"): "is not a regular file (a device)",
                  tmp_path / "model.sock": "is not a regular file (a socket)",
                  tmp_path: "is a directory",
                  tmp_path / "none": "does not exist"}


def test_read_regular_file_refuses_what_is_not_a_regular_file_without_reading_it(tmp_path):
    sock, cases = _special_files(tmp_path)
    try:
        for path, fragment in cases.items():
            with pytest.raises(AttnvizError, match=re.escape(fragment)) as caught:
                read_regular_file(path, 100, "model file", way_out="give a model file")
            assert str(caught.value).startswith(f"model file {path} ")
            assert str(caught.value).endswith("; give a model file")
    finally:
        sock.close()


def test_read_regular_file_reads_at_most_its_limit(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100, "pairs file") == b"x" * 100
    with pytest.raises(AttnvizError, match="pairs file .* is larger than the limit of 99 "
                                           "bytes; cut it"):
        read_regular_file(path, 99, "pairs file", too_large="cut it")
    # /proc files say they are empty and are not: the limit holds on what is read.
    with pytest.raises(AttnvizError, match="larger than the limit of 10 bytes"):
        read_regular_file(Path("/proc/self/status"), 10, "pairs file")
    with pytest.raises(AttnvizError, match="larger than the limit of 2 MiB"):
        read_regular_file(_sparse(tmp_path / "big", 2 * 2**20 + 1), 2 * 2**20, "pairs file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_one_line(tmp_path, model_file):
    model_file.chmod(0)
    with pytest.raises(AttnvizError, match="cannot read model file .*: Permission denied; "):
        load_checkpoint(model_file)


def _sparse(path, size):
    with open(path, "wb") as file:
        file.truncate(size)  # no room taken on disk, and nothing read: the size is refused
    return path


def test_model_files_are_read_only_when_regular_and_not_too_large(tmp_path):
    from attnviz.model.config import MAX_MODEL_FILE_BYTES

    sock, cases = _special_files(tmp_path)
    cases[_sparse(tmp_path / "huge.safetensors", MAX_MODEL_FILE_BYTES + 1)] = \
        "is larger than the limit of 2,048 MiB; attnviz writes no model file that large"
    try:
        for path, fragment in cases.items():
            with pytest.raises(AttnvizError, match=re.escape(fragment)):
                load_checkpoint(path)
    finally:
        sock.close()


@pytest.mark.process
def test_a_fifo_as_model_does_not_hang_a_real_process(tmp_path):
    """A real `attnviz eval`: opening a FIFO the ordinary way waits for a writer forever."""
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a\tb\n")
    result = subprocess.run([sys.executable, "-m", "attnviz", "eval", "-m", str(fifo),
                             "--data", str(pairs)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: model file {fifo} is not a regular file (a FIFO)")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_header_beyond_the_limit_names_the_limit(tmp_path):
    from attnviz.model.config import MAX_HEADER_BYTES

    path = tmp_path / "big-header.safetensors"
    with open(path, "wb") as file:
        file.write((MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b'{"__metadata__":')
        file.truncate(MAX_HEADER_BYTES + 100)
    with pytest.raises(AttnvizError, match=f"its header is {MAX_HEADER_BYTES + 1:,} bytes, more "
                                           f"than the limit of {MAX_HEADER_BYTES:,}"):
        load_checkpoint(path)


def test_a_file_that_is_no_safetensors_file_is_called_so(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("the cat\tle chat\n" * 100, encoding="utf-8")
    with pytest.raises(AttnvizError, match="is not a safetensors file"):
        load_checkpoint(path)


def _with_vocab(checkpoint, tokens):
    return _metadata(checkpoint, source_vocab=json.dumps(tokens))


@pytest.mark.parametrize("tokens, fragment", [
    ([*SPECIALS, *(f"w{i}" for i in range(65_536 - 3))],
     "its source vocabulary holds 65,537 tokens, more than the limit of 65,536"),
    ([*SPECIALS, "a" * 129], "a token of its source vocabulary is 129 characters long, more "
                             "than the limit of 128"),
])
def test_a_vocabulary_beyond_the_limits_is_refused_on_loading_and_on_saving(
        tmp_path, checkpoint, tokens, fragment):
    path = tmp_path / "vocab.safetensors"
    path.write_bytes(save(_state(checkpoint), metadata=_with_vocab(checkpoint, tokens)))
    with pytest.raises(AttnvizError, match=fragment):
        load_checkpoint(path)
    checkpoint.source_vocab = Vocabulary(tokens)
    with pytest.raises(AttnvizError, match=f"cannot save the model to .*: {fragment}"):
        save_checkpoint(checkpoint, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.safetensors"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_never_saved(tmp_path, checkpoint, bad):
    with torch.no_grad():
        checkpoint.model.output.bias[0] = bad
    with pytest.raises(AttnvizError, match="its weights contain NaN or infinite values; train "
                                           "it again with a lower learning rate"):
        save_checkpoint(checkpoint, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def _header_bytes(checkpoint, tmp_path) -> int:
    path = tmp_path / "probe.safetensors"
    save_checkpoint(checkpoint, path)
    return int.from_bytes(path.read_bytes()[:8], "little")


def test_the_header_limit_holds_any_model_within_the_other_limits(tmp_path):
    """MAX_HEADER_BYTES is derived: 4 * MAX_TOKEN_CHARS + 6 bytes at most per token, and
    1 MiB for the rest. Both parts are measured here on their worst cases: tokens of the
    characters the header spells longest, the deepest model, a long training command."""
    from attnviz.model.config import (
        MAX_HEADER_BYTES,
        MAX_LAYERS,
        MAX_TOKEN_CHARS,
        MAX_VOCABULARY_SIZE,
    )
    from attnviz.model.transformer import Transformer

    worst = '"\\\U0001F600'  # a quote and a backslash (escaped twice), a 4-byte character
    def tokens(count, side):
        return [*SPECIALS, *(f"{side}{i}" + worst * MAX_TOKEN_CHARS for i in range(count))]

    def checkpoint_with(count, layers=1, command=""):
        vocabs = [Vocabulary([t[:MAX_TOKEN_CHARS] for t in tokens(count, side)])
                  for side in "st"]
        config = tiny_config(source_vocab_size=len(vocabs[0]),
                             target_vocab_size=len(vocabs[1]), d_model=2, n_heads=1, d_ff=2,
                             n_encoder_layers=layers, n_decoder_layers=layers)
        return Checkpoint(Transformer(config), Tokenizer("word"), Tokenizer("word"), *vocabs,
                          {"command": command, "task": worst * 100})

    per_token = (_header_bytes(checkpoint_with(300), tmp_path)
                 - _header_bytes(checkpoint_with(100), tmp_path)) / (2 * 200)
    assert per_token <= 4 * MAX_TOKEN_CHARS + 6
    rest = _header_bytes(checkpoint_with(0, MAX_LAYERS, worst * 4096), tmp_path)
    assert rest <= 2**20
    assert 2 * MAX_VOCABULARY_SIZE * (4 * MAX_TOKEN_CHARS + 6) + 2**20 <= MAX_HEADER_BYTES
