"""Hugging Face models (``-m hf:FOLDER``): tiny random models built here, never downloaded.

Each model is saved with ``save_pretrained`` into a temporary folder once per module, and
the maps attnviz gives are compared, value for value, with the model's own
``output_attentions``. Without the ``hf`` extra these tests are skipped; the tests of the
install message and of the token labels run without it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import attnviz
from attnviz.cli.app import app
from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.maps import views
from attnviz.maps.data import AttentionMaps
from attnviz.maps.keep import Keep
from attnviz.sources import Request, open_source
from attnviz.sources.huggingface import folder as hf_folder
from attnviz.sources.huggingface import labels as hf_labels
from attnviz.sources.huggingface import source as hf

SOURCE = "the black cat sees the red car"
TARGET = "le chat noir voit la voiture rouge"
WORDS = sorted(set(f"{SOURCE} {TARGET} a dog runs to".split()))
TOLERANCE = dict(rtol=0, atol=1e-6)
runner = CliRunner()
SKIP = 'needs the hf extra: pip install -e ".[hf]"'


def run(*args: str):
    return runner.invoke(app, list(args))


def one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- The models -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def marian(tmp_path_factory) -> Path:
    """An encoder-decoder with a SentencePiece tokenizer per side (``▁`` marks a space)."""
    pytest.importorskip("transformers", reason=SKIP)
    spm = pytest.importorskip("sentencepiece", reason=SKIP)
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    folder = tmp_path_factory.mktemp("marian")
    vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2}
    for side, text in (("source", f"{SOURCE} a dog runs"), ("target", f"{TARGET} un chien")):
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([text] * 3), model_writer=model, vocab_size=40,
            model_type="unigram", hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1)
        (folder / f"{side}.spm").write_bytes(model.getvalue())
        pieces = spm.SentencePieceProcessor(model_proto=model.getvalue())
        for i in range(pieces.get_piece_size()):
            vocab.setdefault(pieces.id_to_piece(i), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Recommended: pip install sacremoses."
        tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"),
                                    str(folder / "vocab.json"))
    config = MarianConfig(
        vocab_size=len(vocab), d_model=8, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
        decoder_ffn_dim=16, max_position_embeddings=64, pad_token_id=2, eos_token_id=0,
        decoder_start_token_id=2, forced_eos_token_id=0)
    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    """An encoder-only model with a WordPiece tokenizer ([CLS] ... [SEP], ``##`` pieces)."""
    pytest.importorskip("transformers", reason=SKIP)
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("bert")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: i for i, token in enumerate([*specials, *WORDS, "##s", "##ee"])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
                            ).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=16)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Path:
    """A decoder-only model with a byte-level BPE tokenizer (``Ġ`` is a space, ``Ċ`` a
    newline)."""
    pytest.importorskip("transformers", reason=SKIP)
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("gpt2")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([SOURCE, TARGET] * 3, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                            bos_token="<|endoftext|>").save_pretrained(folder)
    config = GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_embd=8, n_layer=2, n_head=2,
                        n_positions=32, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def reference(folder: Path, auto: str):
    """The saved model loaded by transformers alone, with the attention that gives weights."""
    import transformers

    return getattr(transformers, auto).from_pretrained(folder, attn_implementation="eager").eval()


def tokenizer_of(folder: Path):
    from transformers import AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoTokenizer.from_pretrained(folder)


def stacked(layers) -> np.ndarray:
    return np.stack([layer[0].detach().numpy() for layer in layers])  # (L, H, Q, K)


# --- Encoder-decoder: Marian ----------------------------------------------------------------

def test_encode_gives_the_encoders_own_attention_and_tokens(marian, tmp_path):
    import torch

    result = run("encode", SOURCE, "-m", f"hf:{marian}", "-o", str(tmp_path / "x.npz"))
    assert result.exit_code == 0, result.stderr
    maps = AttentionMaps.load(tmp_path / "x.npz")
    tokenizer, model = tokenizer_of(marian), reference(marian, "MarianMTModel")
    ids = tokenizer(SOURCE, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model.get_encoder()(input_ids=ids, output_attentions=True).attentions
    assert maps.kinds == ("encoder_self",)
    np.testing.assert_allclose(maps.encoder_self, stacked(expected), **TOLERANCE)
    pieces = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert maps.source_tokens == [p.replace("▁", " ") for p in pieces]
    assert maps.source_tokens[-1] == "</s>" and maps.source_tokens[0].startswith(" ")
    assert "".join(maps.source_tokens[:-1]).strip() == SOURCE


def test_separate_vocabularies_label_the_source_with_the_source_vocabulary(marian, tmp_path):
    """Marian's separate_vocabs: its convert_ids_to_tokens reads the target vocabulary, so a
    source id must be read through the source one."""
    import shutil

    from transformers import MarianTokenizer

    folder = tmp_path / "separate"
    shutil.copytree(marian, folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    specials = ["</s>", "<unk>", "<pad>"]
    # The target vocabulary: the same pieces in another order, so that ids disagree.
    pieces = sorted((t for t in vocab if t not in specials), reverse=True)
    (folder / "target_vocab.json").write_text(json.dumps(
        {t: i for i, t in enumerate([*specials, *pieces])}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tokenizer = MarianTokenizer(str(folder / "source.spm"), str(folder / "target.spm"),
                                    str(folder / "vocab.json"),
                                    target_vocab_file=str(folder / "target_vocab.json"),
                                    separate_vocabs=True)
    tokenizer.save_pretrained(folder)
    maps = attnviz.trace(SOURCE, model=f"hf:{folder}", part="encoder", cache=False)
    expected = [p.replace("▁", " ") for p in tokenizer.tokenize(SOURCE)] + ["</s>"]
    assert maps.source_tokens == expected
    assert tokenizer.convert_ids_to_tokens(tokenizer(SOURCE).input_ids)[:-1] != \
        tokenizer.tokenize(SOURCE)  # the reason for it: the target vocabulary disagrees


def test_decode_with_a_target_is_the_models_teacher_forced_pass(marian):
    import torch

    maps = attnviz.trace(SOURCE, TARGET, model=f"hf:{marian}", cache=False)
    tokenizer, model = tokenizer_of(marian), reference(marian, "MarianMTModel")
    ids = tokenizer(SOURCE, return_tensors="pt").input_ids
    labels = tokenizer(text_target=TARGET).input_ids
    assert labels[-1] == model.config.eos_token_id
    decoder_input = torch.tensor([[model.config.decoder_start_token_id, *labels[:-1]]])
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=decoder_input, output_attentions=True)
    np.testing.assert_allclose(maps.encoder_self, stacked(out.encoder_attentions), **TOLERANCE)
    np.testing.assert_allclose(maps.decoder_self, stacked(out.decoder_attentions), **TOLERANCE)
    np.testing.assert_allclose(maps.cross, stacked(out.cross_attentions), **TOLERANCE)
    assert maps.target_tokens[0] == "<pad>"  # Marian's decoder starts from its pad token
    assert maps.target_tokens[1:] == [
        p.replace("▁", " ") for p in tokenizer.convert_ids_to_tokens(labels[:-1])]
    assert maps.provenance.target_text == TARGET and not maps.provenance.target_generated
    # The last decoder row predicts the end token the decoder's input leaves out.
    assert maps.provenance.next_token == hf_labels.token_labels(tokenizer, labels[-1:])[0]


def test_decode_without_a_target_shows_each_step_of_greedy_generation(marian, tmp_path):
    import torch

    result = run("decode", SOURCE, "-m", f"hf:{marian}", "-o", str(tmp_path / "x.npz"))
    assert result.exit_code == 0, result.stderr
    maps = AttentionMaps.load(tmp_path / "x.npz")
    tokenizer, model = tokenizer_of(marian), reference(marian, "MarianMTModel")
    ids = tokenizer(SOURCE, return_tensors="pt").input_ids
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny model's generation config sets no length
        out = model.generate(input_ids=ids, do_sample=False, num_beams=1,
                             output_attentions=True, return_dict_in_generate=True)
    written = tokenizer.batch_decode(out.sequences, skip_special_tokens=True)[0]
    assert written.strip()
    assert result.stdout.splitlines()[0] == written
    assert maps.provenance.target_text == written and maps.provenance.target_generated
    steps = out.sequences.shape[1] - 1  # the tokens it wrote, one a step
    ended = bool(out.sequences[0, -1] == model.config.eos_token_id)
    # The decoder's input: the start token and every token written but a final end token.
    assert len(maps.target_tokens) == steps + (0 if ended else 1) and steps > 3
    assert maps.target_tokens == hf_labels.token_labels(tokenizer, out.sequences[0, :len(
        maps.target_tokens)].tolist())
    assert maps.provenance.next_token == (hf_labels.token_labels(tokenizer, [
        model.config.eos_token_id])[0] if ended else None)
    for step in range(steps):  # generate() ran one query per step, with the cache
        for layer in range(maps.decoder_self.shape[0]):
            own = out.decoder_attentions[step][layer][0, :, -1]  # (H, step + 1)
            np.testing.assert_allclose(maps.decoder_self[layer, :, step, :step + 1], own,
                                       **TOLERANCE)
            np.testing.assert_allclose(maps.cross[layer, :, step],
                                       out.cross_attentions[step][layer][0, :, -1], **TOLERANCE)
    assert not np.triu(maps.decoder_self, k=1).any()


def test_the_maps_name_the_model_and_its_files(marian):
    maps = attnviz.trace(SOURCE, part="encoder", model=f"hf:{marian}", cache=False)
    provenance = maps.provenance
    assert provenance.model == f"hf:{marian}"
    assert provenance.model_sha256 == hf_folder.files_digest(marian)
    assert provenance.attnviz_version == attnviz.__version__
    assert provenance.source_text == SOURCE


# --- Encoder-only: BERT, decoder-only: GPT-2 ------------------------------------------------

def test_encoder_only_model_encodes_with_its_own_tokens(bert):
    import torch

    maps = attnviz.trace("the black cats sees", model=f"hf:{bert}", cache=False)
    tokenizer, model = tokenizer_of(bert), reference(bert, "BertModel")
    encoded = tokenizer("the black cats sees", return_tensors="pt")
    with torch.no_grad():
        expected = model(**encoded, output_attentions=True).attentions
    assert maps.kinds == ("encoder_self",) and maps.target_tokens == []
    np.testing.assert_allclose(maps.encoder_self, stacked(expected), **TOLERANCE)
    assert maps.source_tokens == ["[CLS]", "the", "black", "cat", "##s", "sees", "[SEP]"]


@pytest.mark.process
def test_decoder_only_model_reads_the_text_as_the_decoders_input(gpt2, tmp_path):
    import torch

    text = "the cat\nsees ü"
    done = subprocess.run(
        [sys.executable, "-m", "attnviz", "decode", text, "-m", f"hf:{gpt2}", "-o", "x.npz"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "wrote x.npz"  # no log line or progress bar of transformers
    maps = AttentionMaps.load(tmp_path / "x.npz")
    tokenizer, model = tokenizer_of(gpt2), reference(gpt2, "GPT2LMHeadModel")
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model(input_ids=ids, output_attentions=True).attentions
    assert maps.kinds == ("decoder_self",) and maps.source_tokens == []
    np.testing.assert_allclose(maps.decoder_self, stacked(expected), **TOLERANCE)
    pieces = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert len(maps.target_tokens) == len(pieces)
    assert "Ġcat" in pieces and "Ċ" in pieces
    assert " cat" in maps.target_tokens and "\n" in maps.target_tokens
    # ü is not in the tokenizer's training text: its two UTF-8 bytes are two tokens, and
    # each shows its byte, where a lone byte would show as the replacement character.
    assert "".join(maps.target_tokens) == "the cat\nsees \\xc3\\xbc"
    assert maps.provenance.target_text == text and maps.provenance.source_text is None
    assert maps.provenance.next_token is None  # what follows the text is not in the maps
    # The rows' next tokens are the text's own (teacher forcing), not the model's predictions.
    assert views.heatmap(maps, "decoder_self").query_axis.startswith(
        "query: decoder input token → the next target token")


@pytest.mark.process
@pytest.mark.parametrize("fixture", ["marian", "bert", "gpt2"])
def test_an_export_in_two_processes_matches_the_model_and_says_nothing_else(
        fixture, request, tmp_path):
    """Its workers are forked after the first line loaded transformers and the tokenizer: no
    warning of the tokenizers library about the fork, no log line; every line's maps are the
    ones one process gives."""
    folder = request.getfixturevalue(fixture)
    texts = [SOURCE, "the red car", "a dog runs", "the cat runs to the dog"]
    (tmp_path / "pairs.tsv").write_text("".join(f"{text}\n" for text in texts))
    done = subprocess.run(
        [sys.executable, "-m", "attnviz", "export", "pairs.tsv", "-d", "out", "-f", "npz",
         "-m", f"hf:{folder}", "--jobs", "2", "--no-cache"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "4/4" in lines[0], done.stderr
    assert lines[1] == "wrote out/index.html: 4 pairs drawn, 0 done before"
    for number, text in enumerate(texts, start=1):
        maps = AttentionMaps.load(tmp_path / "out" / f"{number:04d}.npz")
        alone = attnviz.trace(text, model=f"hf:{folder}", cache=False)
        assert maps.kinds == alone.kinds
        for name in maps.kinds:
            np.testing.assert_array_equal(maps.stack(name), alone.stack(name))


# --- Refusals -------------------------------------------------------------------------------

def test_decode_on_an_encoder_only_model_is_refused(bert):
    one_line_error(run("decode", SOURCE, "-m", f"hf:{bert}"), "encoder-only", "encode")


def test_encode_on_a_decoder_only_model_is_refused(gpt2):
    one_line_error(run("encode", SOURCE, "-m", f"hf:{gpt2}"), "decoder-only", "decode")


def test_a_target_for_a_decoder_only_model_is_refused(gpt2):
    line = one_line_error(run("decode", SOURCE, "-t", TARGET, "-m", f"hf:{gpt2}"),
                          "decoder-only")
    assert line.startswith("error: --target: ")


def test_a_text_longer_than_the_models_positions_is_refused(bert):
    one_line_error(run("encode", " ".join(["the cat"] * 10), "-m", f"hf:{bert}"),
                   "22 tokens", "at most 16", "cut")


def test_maps_too_big_for_memory_are_refused_before_the_model_runs(bert, monkeypatch):
    # kept: 2 layers x 2 heads x 7^2 x 4 B = 784 B; one layer's work: 2 x 2 heads x 7^2 x 4 B
    from attnviz.sources.huggingface import passes

    monkeypatch.setattr(passes, "forward", lambda *a, **k: pytest.fail("the model ran"))
    source = open_source(f"hf:{bert}")
    limit = 1000 / 1024**3  # GB: 1,000 bytes
    with pytest.raises(AttnvizError, match=r"take 784 B.*cut the text to at most 5 tokens, or "
                       r"set memory to allow more$"):
        source.maps(Request("the black cats sees", part="encoder", memory=limit))
    with pytest.raises(AttnvizError, match=r"keep one layer \(layer N\), keep one head \(head N\), "
                       r"keep them in precision float16"):
        source.maps(Request("the black cats sees", part="encoder", memory=limit))
    # One layer in float16 (196 B) and its work (784 B) fit.
    monkeypatch.undo()
    maps = source.maps(Request("the black cats sees", part="encoder", memory=limit,
                               keep=Keep(layers=(1,), precision="float16")))
    assert maps.encoder_self.shape == (1, 2, 7, 7) and maps.encoder_self.dtype == np.float16
    assert maps.layers_of("encoder_self") == [1]


def test_a_missing_folder_is_refused(tmp_path):
    pytest.importorskip("transformers", reason=SKIP)  # without it, the install message
    one_line_error(run("encode", SOURCE, "-m", f"hf:{tmp_path / 'nowhere'}"),
                   "no model folder", "save_pretrained")


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    pytest.importorskip("transformers", reason=SKIP)
    (tmp_path / "notes.txt").write_text("not a model")
    one_line_error(run("encode", SOURCE, "-m", f"hf:{tmp_path}"), "no config.json")


def test_a_hub_name_that_cannot_be_found_says_so_in_one_line(monkeypatch):
    pytest.importorskip("transformers", reason=SKIP)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never download
    one_line_error(run("encode", SOURCE, "-m", "hf:attnviz-tests/no-such-model"),
                   "cannot load hf:attnviz-tests/no-such-model", "check the name")


def test_a_model_that_asks_for_its_own_code_is_refused_and_never_run(tmp_path):
    pytest.importorskip("transformers", reason=SKIP)
    ran = tmp_path / "ran"
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "attnviz-custom",
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModel": "modeling_custom.CustomModel"}}))
    code = f"open({str(ran)!r}, 'w').close()\n"
    (tmp_path / "configuration_custom.py").write_text(code)
    (tmp_path / "modeling_custom.py").write_text(code)
    one_line_error(run("encode", SOURCE, "-m", f"hf:{tmp_path}"), "trust_remote_code",
                   "never runs")
    assert not ran.exists()


def test_built_in_code_runs_in_place_of_the_code_a_config_names(bert, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_custom.py").write_text("raise SystemExit('custom code ran')\n")
    with pytest.warns(AttnvizWarning, match="own code, which attnviz never runs"):
        maps = attnviz.trace(SOURCE, model=f"hf:{folder}", cache=False)
    expected = attnviz.trace(SOURCE, model=f"hf:{bert}", cache=False)
    np.testing.assert_array_equal(maps.encoder_self, expected.encoder_self)


def test_pickled_weights_are_never_loaded(bert, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle")
    one_line_error(run("encode", SOURCE, "-m", f"hf:{folder}"), "no safetensors weights",
                   "pytorch_model.bin", "save_pretrained")


def test_files_that_lack_weights_the_config_asks_for_are_refused(bert, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the file holds 2: the third would be random
    (folder / "config.json").write_text(json.dumps(config))
    one_line_error(run("encode", SOURCE, "-m", f"hf:{folder}"), "claims 3 layers",
                   "weights hold 2")


# --- The render cache -----------------------------------------------------------------------

def test_a_folder_is_cached_by_its_bytes_and_a_hub_name_is_not(bert, tmp_path, monkeypatch):
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    request = Request(SOURCE, part="encoder")
    before = open_source(f"hf:{folder}").fingerprint(request)
    assert before == open_source(f"hf:{folder}").fingerprint(request)
    assert before != open_source(f"hf:{folder}").fingerprint(Request("a dog", part="encoder"))
    first = attnviz.trace(SOURCE, model=f"hf:{folder}")
    monkeypatch.setattr(hf.HuggingFaceModel, "_model",
                        lambda *a: pytest.fail("the cache was not used"))
    again = attnviz.trace(SOURCE, model=f"hf:{folder}")
    np.testing.assert_array_equal(first.encoder_self, again.encoder_self)
    with (folder / "config.json").open("a") as file:
        file.write("\n")  # the same model, other bytes: no stale maps
    assert open_source(f"hf:{folder}").fingerprint(request) != before
    assert open_source("hf:attnviz-tests/no-such-model").fingerprint(request) is None


# --- Without the extra, and the cost of not using it ----------------------------------------

def test_without_the_extra_hf_models_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    line = one_line_error(run("encode", SOURCE, "-m", "hf:some/model"))
    assert line == ('error: Hugging Face models need the extra: pip install -e ".[hf]" in a '
                    'clone of attnviz, pip install "attnviz[hf]" beside an installed attnviz')


def test_attnviz_and_its_help_do_not_import_transformers():
    code = ("import sys, attnviz, attnviz.sources.huggingface\n"
            "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
    helped = subprocess.run([sys.executable, "-X", "importtime", "-m", "attnviz", "encode",
                             "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    imported = {line.split("|")[-1].strip() for line in helped.stderr.splitlines()}
    assert "transformers" not in imported and "torch" not in imported


# --- Token labels ---------------------------------------------------------------------------

def test_byte_level_tokens_are_decoded_and_specials_kept():
    tokens = ["<|endoftext|>", "the", "Ġcat", "Ċ", "ĠÃ¼", "Ã", "¼", "ĠĠ"]
    assert hf_labels.readable(tokens, byte_level=True, special={"<|endoftext|>"}) == [
        "<|endoftext|>", "the", " cat", "\n", " ü", "\\xc3", "\\xbc", "  "]


def test_sentencepiece_marks_become_spaces_and_wordpiece_stays():
    assert hf_labels.readable(["▁le", "▁▁", "chat", "</s>", "<pad>"], byte_level=False,
                              special={"</s>", "<pad>"}) == [" le", "  ", "chat", "</s>", "<pad>"]
    assert hf_labels.readable(["[CLS]", "cat", "##s", "[SEP]"], byte_level=False,
                              special={"[CLS]", "[SEP]"}) == ["[CLS]", "cat", "##s", "[SEP]"]


def test_token_labels_follow_the_tokenizers_own_kind(bert, gpt2, marian):
    gpt2_tokenizer, bert_tokenizer = tokenizer_of(gpt2), tokenizer_of(bert)
    assert hf_labels._is_byte_level(gpt2_tokenizer)
    assert not hf_labels._is_byte_level(bert_tokenizer)
    assert not hf_labels._is_byte_level(tokenizer_of(marian))
    ids = gpt2_tokenizer("the cat<|endoftext|>").input_ids
    assert hf_labels.token_labels(gpt2_tokenizer, ids) == ["the", " cat", "<|endoftext|>"]


@pytest.mark.process
def test_a_hub_name_loads_from_the_hubs_cache_and_names_its_snapshot(bert, tmp_path):
    """A hub name as transformers resolves it, offline: the hub's cache layout, filled by
    hand with the tiny BERT's files."""
    snapshot = tmp_path / "hub" / "models--attnviz-tests--tiny-bert" / "snapshots" / ("0" * 40)
    shutil.copytree(bert, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    code = ("import attnviz, json\n"
            "maps = attnviz.trace('the black cats sees', model='hf:attnviz-tests/tiny-bert')\n"
            "print(json.dumps([maps.source_tokens, maps.provenance.model_sha256]))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "ATTNVIZ_CACHE_DIR": str(tmp_path / "attnviz")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    tokens, digest = json.loads(done.stdout.splitlines()[-1])
    assert tokens == ["[CLS]", "the", "black", "cat", "##s", "sees", "[SEP]"]
    assert digest == hf_folder.files_digest(bert)
    assert not (tmp_path / "attnviz").exists()  # a hub name's maps are never cached


def test_an_index_naming_pickled_weights_is_refused(bert, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    (folder / "model.safetensors").rename(folder / "model-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight":
                                        "pytorch_model.bin"}}))
    one_line_error(run("encode", SOURCE, "-m", f"hf:{folder}"), "not safetensors")


def test_a_config_claiming_huge_sizes_is_refused_before_anything_is_built(bert, tmp_path,
                                                                          monkeypatch):
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 100_000
    (folder / "config.json").write_text(json.dumps(config))
    from transformers import AutoModel

    monkeypatch.setattr(AutoModel, "from_pretrained",
                        lambda *a, **k: pytest.fail("the model was built"))
    one_line_error(run("encode", SOURCE, "-m", f"hf:{folder}"), "claims 100,000 layers")


def test_special_and_foreign_files_in_a_folder_are_never_read(bert, tmp_path):
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    with open(folder / "README.bin", "wb") as sparse:  # a terabyte that takes no disk
        sparse.truncate(2**40)
    os.mkfifo(folder / "notes.md")
    result = run("encode", SOURCE, "-m", f"hf:{folder}")
    assert result.exit_code == 0, result.stderr
    os.mkfifo(folder / "added_tokens.json")  # a file transformers would read
    one_line_error(run("encode", SOURCE, "-m", f"hf:{folder}", "--no-cache"),
                   "not a regular file")


def test_the_decoding_gif_of_a_decoder_only_model_keeps_its_first_token_and_spells_words(
        gpt2, tmp_path):
    """`-m hf:gpt2 -o x.gif`: frame 1 said "written so far: (nothing yet)", the last frame
    lacked the text's first token, and sub-words were joined with spaces (`␣black e s t`)."""
    from attnviz.render import animation

    maps = attnviz.trace("the blackest cats", model=f"hf:{gpt2}")
    assert maps.target_tokens[0] == "the" and "e" in maps.target_tokens  # sub-words
    said = [animation.step_texts(maps, step)[1] for step in range(len(maps.target_tokens))]
    assert said[0] == "written so far: the"
    assert said[-1] == "written so far: the blackest cats"
    assert "written so far: the blacke" in said
    gif = tmp_path / "x.gif"
    result = run("decode", "the blackest cats", "-m", f"hf:{gpt2}", "-o", str(gif))
    assert result.exit_code == 0, result.stderr
    from PIL import Image

    with Image.open(gif) as picture:
        assert picture.n_frames == len(maps.target_tokens)


def test_weights_of_other_sizes_than_the_config_says_are_one_line_without_a_hidden_report(
        bert, tmp_path):
    """transformers said "For details look at the above report!", a report attnviz hides."""
    folder = tmp_path / "bert"
    shutil.copytree(bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] *= 2  # the weights on disk keep their sizes
    (folder / "config.json").write_text(json.dumps(config))
    line = one_line_error(run("encode", SOURCE, "-m", f"hf:{folder}"),
                          "its weights do not have the sizes its config.json gives")
    assert "report" not in line and "ignore_mismatched_sizes" not in line


def test_the_help_and_the_readme_give_both_ways_to_install_the_extra():
    """export --help said pip install 'attnviz[hf]', the README pip install -e ".[hf]"."""
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text("utf-8").split())
    assert 'pip install -e ".[hf]"` in a clone' in readme
    assert 'pip install "attnviz[hf]"` beside an installed attnviz' in readme
    for command in ("export", "encode", "decode"):
        shown = " ".join(CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}
                                            ).stdout.replace("│", " ").split())
        assert "pip install -e '.[hf]' in a clone of attnviz, pip install 'attnviz[hf]' " \
               "beside an installed attnviz" in shown, command
