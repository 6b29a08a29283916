"""attnviz's own attention function inside Hugging Face models (transformers' attention
interface): tiny random models of six kinds, built and saved here, never downloaded.

Every kind's maps equal transformers' own eager ``output_attentions`` within 1e-6, the calls
of attnviz's function are counted, and what is kept (layer, head, precision), explain, the
memory budget, the fallback for models that do not use the interface, and failures inside
transformers are checked through the library and the command line.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import attnviz
from attnviz.cli.app import app
from attnviz.errors import AttnvizError
from attnviz.maps.data import AttentionMaps
from attnviz.maps.keep import Keep
from attnviz.sources import Request, open_source

transformers = pytest.importorskip("transformers", reason='needs the hf extra: pip install '
                                   '-e ".[hf]"')
import torch  # noqa: E402 - after the skip: transformers brings torch

from attnviz.sources.huggingface import interface, passes  # noqa: E402

SOURCE = "the black cat sees the red car"
TARGET = "le chat noir voit la voiture rouge"
TOLERANCE = dict(rtol=0, atol=1e-6)
runner = CliRunner()

# kind -> (config class, model class, config sizes, what it is)
SIZES = dict(vocab_size=300)
MODELS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64), "decoder-only"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=8, n_layer=2, n_head=2,
                                                  n_positions=64), "decoder-only"),
    "bert": ("BertConfig", "BertForMaskedLM", dict(
        hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=64), "encoder-only"),
    "marian": ("MarianConfig", "MarianMTModel", dict(
        d_model=8, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16,
        max_position_embeddings=64, pad_token_id=0, eos_token_id=0, decoder_start_token_id=0),
        "encoder-decoder"),
    "bart": ("BartConfig", "BartForConditionalGeneration", dict(
        d_model=8, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16,
        max_position_embeddings=64, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        decoder_start_token_id=0, forced_bos_token_id=None, forced_eos_token_id=None),
        "encoder-decoder"),
    "t5": ("T5Config", "T5ForConditionalGeneration", dict(
        d_model=8, d_kv=4, d_ff=16, num_layers=2, num_decoder_layers=2, num_heads=2,
        decoder_start_token_id=0, eos_token_id=0, pad_token_id=0), "encoder-decoder"),
}
ENCODER_DECODERS = [name for name, spec in MODELS.items() if spec[3] == "encoder-decoder"]


def _tokenizer(folder: Path) -> None:
    """A byte-level BPE tokenizer of the test's words; id 0 is its one special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([SOURCE, TARGET] * 3, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                            bos_token="<|endoftext|>", pad_token="<|endoftext|>"
                            ).save_pretrained(folder)


def build(folder: Path, name: str, **changes) -> Path:
    config_class, model_class, sizes, _ = MODELS[name]
    config = getattr(transformers, config_class)(**{**SIZES, **sizes, **changes})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(transformers, model_class)(config).save_pretrained(folder)
    _tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {name: build(tmp_path_factory.mktemp(name), name) for name in MODELS}


def reference(folder: Path, name: str):
    """The saved model loaded by transformers alone, with its own eager attention."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(transformers, MODELS[name][1]).from_pretrained(
            folder, attn_implementation="eager").eval()


def ids_of(folder: Path, text: str, target: bool = False) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return list((tokenizer(text_target=text) if target else tokenizer(text))["input_ids"])


def stacked(layers) -> np.ndarray:
    return np.stack([layer[0].detach().float().numpy() for layer in layers])  # (L, H, Q, K)


def eager_maps(folder: Path, name: str, maps: AttentionMaps) -> dict[str, np.ndarray]:
    """transformers' own eager output_attentions on the tokens attnviz's maps show."""
    model = reference(folder, name)
    kind = MODELS[name][3]
    source = torch.tensor([ids_of(folder, maps.provenance.source_text)]) \
        if maps.provenance.source_text is not None else None
    with torch.no_grad():
        if kind == "encoder-only":
            out = model(input_ids=source, output_attentions=True)
            return {"encoder_self": stacked(out.attentions)}
        if kind == "decoder-only":
            ids = torch.tensor([ids_of(folder, maps.provenance.target_text)])
            out = model(input_ids=ids, output_attentions=True)
            return {"decoder_self": stacked(out.attentions)}
        if not maps.target_tokens:  # the encoder alone
            out = model.get_encoder()(input_ids=source, output_attentions=True)
            return {"encoder_self": stacked(out.attentions)}
        decoder = decoder_ids(folder, maps)
        out = model(input_ids=source, decoder_input_ids=torch.tensor([decoder]),
                    output_attentions=True)
        return {"encoder_self": stacked(out.encoder_attentions),
                "decoder_self": stacked(out.decoder_attentions),
                "cross": stacked(out.cross_attentions)}


def decoder_ids(folder: Path, maps: AttentionMaps) -> list[int]:
    """The decoder's input ids: the start token and the target given, or what the eager
    model writes greedily (without its final end token), as attnviz reads them."""
    model = reference(folder, _name_of(folder))
    start = model.config.decoder_start_token_id
    if not maps.provenance.target_generated:
        return [start, *ids_of(folder, maps.provenance.target_text, target=True)]
    source = torch.tensor([ids_of(folder, maps.provenance.source_text)])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = model.generate(input_ids=source, do_sample=False, num_beams=1)[0].tolist()
    return written[:-1] if len(written) > 1 and written[-1] == model.config.eos_token_id \
        else written


def _name_of(folder: Path) -> str:
    return next(name for name in MODELS if folder.name.startswith(name))


@pytest.fixture
def counted(monkeypatch):
    """The calls of attnviz's attention function, counted where the interface calls it."""
    import attnviz.model.attention as attention

    calls = []
    real = attention.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(attention, "scaled_dot_product_attention", counting)
    return calls


def check_equal(folder: Path, name: str, maps: AttentionMaps) -> None:
    expected = eager_maps(folder, name, maps)
    assert maps.kinds == tuple(expected)
    for kind, array in expected.items():
        np.testing.assert_allclose(maps.stack(kind), array, **TOLERANCE)
    assert maps.provenance.options["attention"] == passes.THROUGH_INTERFACE


# --- Every kind equals transformers' eager attention, through attnviz's function -------------

@pytest.mark.parametrize("name", list(MODELS))
def test_trace_equals_eager_output_attentions_and_runs_attnvizs_function(folders, name,
                                                                         counted):
    folder, kind = folders[name], MODELS[name][3]
    target = TARGET if kind == "encoder-decoder" else None
    maps = attnviz.trace(SOURCE, target, model=f"hf:{folder}", cache=False)
    check_equal(folder, name, maps)
    layers = sum(maps.stack(k).shape[0] for k in maps.kinds)
    assert len(counted) == layers  # one call per attention layer, each through the formula


@pytest.mark.parametrize("name", ENCODER_DECODERS)
def test_encode_and_decode_on_the_command_line_equal_eager(folders, name, tmp_path):
    folder = folders[name]
    for args in (["encode", SOURCE], ["decode", SOURCE], ["decode", SOURCE, "-t", TARGET]):
        result = runner.invoke(app, [*args, "-m", f"hf:{folder}", "-o", str(tmp_path / "x.npz"),
                                     "--no-cache"])
        assert result.exit_code == 0, result.stderr
        check_equal(folder, name, AttentionMaps.load(tmp_path / "x.npz"))


def test_grouped_query_heads_read_their_shared_key_value_head(folders):
    """Llama with 4 query heads sharing 2 key/value heads: explain says which one a head
    reads, and its weights are the maps' of that layer and head."""
    folder = folders["llama"]
    maps = attnviz.trace(SOURCE, model=f"hf:{folder}", cache=False)
    for head in range(4):
        explained = attnviz.explain(SOURCE, model=f"hf:{folder}", kind="self", layer=1,
                                    head=head)
        assert explained.key_value_head == head // 2 and explained.key_value_heads == 2
        np.testing.assert_allclose(explained.weights, maps.decoder_self[1, head], **TOLERANCE)
        assert "rotary" in explained.origins["queries"]
        assert "causal" in explained.mask_meaning
    result = runner.invoke(app, ["explain", SOURCE, "-m", f"hf:{folder}", "--head", "3"])
    assert result.exit_code == 0, result.stderr
    assert "4 query heads share 2 key/value heads" in " ".join(result.stdout.split())
    assert "head 3 reads key/value head 1" in " ".join(result.stdout.split())


@pytest.mark.parametrize("name", list(MODELS))
def test_explain_weights_are_the_maps_of_the_same_layer_and_head(folders, name, tmp_path):
    folder, kind = folders[name], MODELS[name][3]
    target = TARGET if kind == "encoder-decoder" else None
    maps = attnviz.trace(SOURCE, target, model=f"hf:{folder}", cache=False)
    for map_kind in maps.kinds:
        short = {"encoder_self": "encoder", "decoder_self": "self", "cross": "cross"}[map_kind]
        explained = attnviz.explain(SOURCE, target, model=f"hf:{folder}", kind=short, layer=1,
                                    head=1)
        np.testing.assert_allclose(explained.weights, maps.stack(map_kind)[1, 1], **TOLERANCE)
        visible = explained.mask
        assert (explained.weights[~visible] == 0).all()
        if name == "t5":  # the relative position bias is said, and is in the scores
            assert explained.bias is not None and "+ B" in explained.scores_name
            assert explained.scale == 1.0
    args = ["explain", SOURCE, "-m", f"hf:{folder}", "--kind",
            "encoder" if kind == "encoder-only" else "self", "-o", str(tmp_path / "e.png")]
    result = runner.invoke(app, args + (["-t", TARGET] if target else []))
    assert result.exit_code == 0, result.stderr


# --- Norm-based weights: each architecture's output projection -----------------------------

# Each model's attention module, and where transformers keeps its output projection: in it,
# or (BERT) beside it in its parent; as (out, in), GPT-2's Conv1D turned.
PROJECTIONS = {
    "llama": ("LlamaAttention", lambda module, parent: module.o_proj.weight),
    "gpt2": ("GPT2Attention", lambda module, parent: module.c_proj.weight.T),
    "bert": ("BertSelfAttention", lambda module, parent: parent.output.dense.weight),
    "marian": ("MarianAttention", lambda module, parent: module.out_proj.weight),
    "bart": ("BartAttention", lambda module, parent: module.out_proj.weight),
    "t5": ("T5Attention", lambda module, parent: module.o.weight),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_norm_based_weights_weigh_by_each_architectures_own_output_projection(folders, name):
    from attnviz.sources.huggingface.projections import output_weight

    folder, kind = folders[name], MODELS[name][3]
    target = TARGET if kind == "encoder-decoder" else None
    maps = attnviz.trace(SOURCE, target, model=f"hf:{folder}", weights="norm", cache=False)
    plain = attnviz.trace(SOURCE, target, model=f"hf:{folder}", cache=False)
    assert maps.kinds == plain.kinds and maps.provenance.options["weights"] == "norm"
    for map_kind in maps.kinds:
        norm, alpha = maps.stack(map_kind), plain.stack(map_kind)
        np.testing.assert_allclose(norm.sum(axis=-1), 1.0, atol=1e-5)
        assert (norm[alpha == 0] == 0).all()  # what the mask hides stays hidden
    model = reference(folder, name)
    kept, where = PROJECTIONS[name]
    parents = {id(child): parent for parent in model.modules() for child in parent.children()}
    found = 0
    for module in model.modules():
        if type(module).__name__ == kept:
            expected = where(module, parents[id(module)])
            weight = output_weight(module, parents[id(module)], expected.shape[1])
            assert weight is not None and torch.equal(weight, expected)
            found += 1
    assert found == sum(plain.stack(k).shape[0] for k in plain.kinds)


# --- What is kept ----------------------------------------------------------------------------

def test_one_layer_and_head_in_float16_are_all_that_is_kept(folders, tmp_path):
    folder = folders["bart"]
    whole = attnviz.trace(SOURCE, TARGET, model=f"hf:{folder}", cache=False)
    result = runner.invoke(app, ["decode", SOURCE, "-t", TARGET, "-m", f"hf:{folder}",
                                 "--layer", "1", "--head", "0", "--precision", "float16",
                                 "-o", str(tmp_path / "x.npz"), "-o", str(tmp_path / "x.png"),
                                 "--no-cache"])
    assert result.exit_code == 0, result.stderr
    kept = AttentionMaps.load(tmp_path / "x.npz")
    for kind in whole.kinds:
        assert kept.stack(kind).shape[:2] == (1, 1) and kept.stack(kind).dtype == np.float16
        assert kept.layers_of(kind) == [1] and kept.heads_of(kind) == [0]
        np.testing.assert_allclose(kept.stack(kind)[0, 0], whole.stack(kind)[1, 0], atol=1e-3)
    assert kept.provenance.options["precision"] == "float16"
    # The other layers were computed, not stored: asking to draw one says so.
    shown = runner.invoke(app, ["show", str(tmp_path / "x.npz"), "--layer", "0"])
    assert shown.exit_code == 1 and "keeping layer(s) 1 only" in shown.stderr
    again = runner.invoke(app, ["show", str(tmp_path / "x.npz"), "--kind", "cross",
                                "-o", str(tmp_path / "y.html")])
    assert again.exit_code == 0, again.stderr


def test_a_layer_the_model_lacks_is_refused_before_it_runs(folders, monkeypatch):
    monkeypatch.setattr(passes, "forward", lambda *a, **k: pytest.fail("the model ran"))
    result = runner.invoke(app, ["decode", SOURCE, "-m", f"hf:{folders['gpt2']}", "--layer",
                                 "5", "--no-cache"])
    assert result.exit_code == 1 and "layer 5 is out of range" in result.stderr


def test_maps_above_the_memory_there_is_are_refused_with_the_ways_out(folders, monkeypatch):
    monkeypatch.setattr(passes, "forward", lambda *a, **k: pytest.fail("the model ran"))
    result = runner.invoke(app, ["decode", SOURCE, "-m", f"hf:{folders['llama']}", "--memory",
                                 "0.000001", "--no-cache"])
    assert result.exit_code == 1, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    for fragment in ("--layer N", "--head N", "--precision float16", "cut the text",
                     "--memory"):
        assert fragment in line


def test_the_budget_is_what_the_machine_has_free(monkeypatch):
    from attnviz.maps import budget

    monkeypatch.setattr(budget, "free_memory", lambda: 10 * 1024**3)
    assert abs(budget.memory_limit(None)[0] - 9 * 1024**3) < 1024
    assert budget.memory_limit(2.0) == (2 * 1024**3, "the ⟨memory⟩ given")


# --- Models outside the interface, and failures inside transformers --------------------------

def test_a_model_whose_attention_does_not_come_through_the_interface_uses_output_attentions(
        folders, monkeypatch):
    def refuse(*args, **kwargs):
        raise interface.Unsupported("softcap")

    from transformers import AttentionInterface

    monkeypatch.setitem(AttentionInterface._global_mapping, interface.IMPLEMENTATION, refuse)
    from attnviz.sources.huggingface import source

    monkeypatch.setattr(source, "register", lambda: None)
    maps = attnviz.trace(SOURCE, model=f"hf:{folders['gpt2']}", cache=False, layer=1)
    assert maps.provenance.options["attention"] == passes.THROUGH_OUTPUTS
    expected = eager_maps(folders["gpt2"], "gpt2", maps)["decoder_self"]
    np.testing.assert_allclose(maps.decoder_self, expected[1:], **TOLERANCE)
    assert maps.layers_of("decoder_self") == [1]


def test_a_t5_whose_depths_differ_fails_inside_transformers_and_is_said_so(tmp_path):
    folder = build(tmp_path / "t5", "t5", num_decoder_layers=3)
    result = runner.invoke(app, ["decode", SOURCE, "-m", f"hf:{folder}", "--no-cache"])
    assert result.exit_code == 1, result.stderr
    line = result.stderr.strip()
    assert line.startswith("error: transformers failed while running hf:") and \
        "not attnviz's" in line and "bug in attnviz" not in line
    # Given a target, no generation runs, and the three depths' maps are drawn.
    maps = attnviz.trace(SOURCE, TARGET, model=f"hf:{folder}", cache=False)
    assert maps.encoder_self.shape[0] == 2 and maps.decoder_self.shape[0] == 3
    check_equal(folder, "t5", maps)


def test_a_bug_in_attnvizs_own_recorder_stays_a_bug(folders, monkeypatch):
    from attnviz.sources.huggingface import recorder

    def broken(self, call):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(recorder.Recorder, "__call__", broken)
    result = runner.invoke(app, ["decode", SOURCE, "-m", f"hf:{folders['gpt2']}", "--no-cache"])
    assert result.exit_code == 70 and "bug in attnviz" in result.stderr


# --- GGUF files, and the GPU ---------------------------------------------------------------

def test_a_gguf_file_that_is_not_there_is_said_so(tmp_path):
    with pytest.raises(AttnvizError, match="no GGUF file"):
        open_source(str(tmp_path / "missing.gguf"))
    with pytest.raises(AttnvizError, match="no GGUF file"):
        open_source(f"hf:{tmp_path / 'missing.gguf'}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_maps_come_to_the_host_layer_by_layer(folders):
    folder = folders["llama"]
    on_gpu = open_source(f"hf:{folder}").maps(Request(SOURCE, device="cuda"))
    on_cpu = attnviz.trace(SOURCE, model=f"hf:{folder}", cache=False)
    assert isinstance(on_gpu.decoder_self, np.ndarray)
    np.testing.assert_allclose(on_gpu.decoder_self, on_cpu.decoder_self, atol=1e-4)
    kept = open_source(f"hf:{folder}").maps(Request(SOURCE, device="cuda", keep=Keep(
        layers=(1,), precision="float16")))
    assert kept.decoder_self.shape[0] == 1 and kept.decoder_self.dtype == np.float16


def test_the_copied_folder_keeps_its_own_cache_entry(folders, tmp_path, monkeypatch):
    """A kept layer is a request of its own: its maps never answer for every layer's."""
    monkeypatch.setenv("ATTNVIZ_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "gpt2"
    shutil.copytree(folders["gpt2"], folder)
    one = attnviz.trace(SOURCE, model=f"hf:{folder}", layer=0)
    every = attnviz.trace(SOURCE, model=f"hf:{folder}")
    assert one.decoder_self.shape[0] == 1 and every.decoder_self.shape[0] == 2
