"""The model: shapes and masks of its maps, one attention function, and its wiring."""

from __future__ import annotations

import pytest
import torch

from attnviz.model import attention
from attnviz.model.config import ModelConfig
from attnviz.model.tokenize import BOS_ID, EOS_ID, PAD_ID
from attnviz.model.transformer import DecoderBlock, EncoderBlock, MultiHeadAttention, Transformer
from tests.conftest import tiny_config, tiny_model


def _batch(seed=0, batch=2, s=6, t=5, config=None):
    config = config or tiny_config()
    gen = torch.Generator().manual_seed(seed)
    source = torch.randint(4, config.source_vocab_size, (batch, s), generator=gen)
    target = torch.randint(4, config.target_vocab_size, (batch, t), generator=gen)
    target[:, 0] = BOS_ID
    return source, target


def test_forward_returns_every_map_with_its_shape(model):
    source, target = _batch(s=6, t=5)
    out = model(source, target)
    config = model.config
    h = config.n_heads
    assert out.logits.shape == (2, 5, config.target_vocab_size)
    assert out.attention.weights("encoder_self").shape == (2, config.n_encoder_layers, h, 6, 6)
    assert out.attention.weights("decoder_self").shape == (2, config.n_decoder_layers, h, 5, 5)
    assert out.attention.weights("cross").shape == (2, config.n_decoder_layers, h, 5, 6)


def test_decoder_self_attention_never_sees_the_future(model):
    source, target = _batch(s=4, t=7)
    weights = model(source, target).attention.weights("decoder_self")
    upper = torch.ones(7, 7, dtype=torch.bool).triu(diagonal=1)
    assert (weights[..., upper] == 0.0).all()  # every batch item, layer and head
    assert (weights[..., ~upper] > 0.0).all()


def test_every_row_of_every_map_sums_to_one(model):
    out = model(*_batch(s=8, t=3))
    for kind in ("encoder_self", "decoder_self", "cross"):
        weights = out.attention.weights(kind)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_all_attention_goes_through_the_one_function(monkeypatch, model):
    calls = []
    original = attention.scaled_dot_product_attention

    def counting(q, k, v, mask=None):
        calls.append((q.shape[-2], k.shape[-2], mask))
        return original(q, k, v, mask)

    monkeypatch.setattr(attention, "scaled_dot_product_attention", counting)
    source, target = _batch(s=6, t=5)
    model(source, target)
    config = model.config
    assert len(calls) == config.n_encoder_layers + 2 * config.n_decoder_layers
    encoder, decoder = calls[:config.n_encoder_layers], calls[config.n_encoder_layers:]
    assert all((t, s, m) == (6, 6, None) for t, s, m in encoder)  # no mask: nothing padded
    for self_call, cross_call in zip(decoder[0::2], decoder[1::2], strict=True):
        assert self_call[:2] == (5, 5) and torch.equal(self_call[2], attention.causal_mask(5))
        assert cross_call[:2] == (5, 6) and cross_call[2] is None


def test_one_attention_layer_per_encoder_block_and_two_per_decoder_block(model):
    for block in model.encoder_blocks:
        assert isinstance(block, EncoderBlock)
        assert [type(m) for m in block.children() if isinstance(m, MultiHeadAttention)] == [
            MultiHeadAttention]
    for block in model.decoder_blocks:
        assert isinstance(block, DecoderBlock)
        layers = [m for m in block.children() if isinstance(m, MultiHeadAttention)]
        assert layers == [block.self_attention, block.cross_attention]


def test_decoder_runs_masked_self_attention_then_cross_attention(model):
    order = []
    for index, block in enumerate(model.decoder_blocks):
        block.self_attention.register_forward_hook(
            lambda *_, i=index: order.append((i, "self")))
        block.cross_attention.register_forward_hook(
            lambda *_, i=index: order.append((i, "cross")))
    model(*_batch())
    assert order == [(i, kind) for i in range(model.config.n_decoder_layers)
                     for kind in ("self", "cross")]


def test_cross_attention_reads_the_encoders_final_output_and_the_decoders_self_attention(model):
    source, target = _batch(s=6, t=5)
    seen = {}

    def remember(name):
        def hook(module, args, output):
            seen[name] = (args, output)
        return hook

    for index, block in enumerate(model.decoder_blocks):
        block.register_forward_hook(remember(f"block{index}"))
        block.self_attention.register_forward_hook(remember(f"self{index}"))
        block.cross_attention.register_forward_hook(remember(f"cross{index}"))
    for index, block in enumerate(model.encoder_blocks):
        block.register_forward_hook(remember(f"encoder{index}"))
    model(source, target)

    memory = model.encode(source).memory  # the encoder's final output
    last_block_output = seen[f"encoder{model.config.n_encoder_layers - 1}"][1][0]
    assert torch.equal(memory, model.encoder_norm(last_block_output))
    decoder_input = model._embed(model.target_embedding, target)
    for index, block in enumerate(model.decoder_blocks):
        query_input, key_value_input = seen[f"cross{index}"][0][:2]
        # Keys and values: the encoder's final output, the same for every decoder block.
        assert torch.equal(key_value_input, memory)
        for earlier in range(model.config.n_encoder_layers):
            assert not torch.allclose(key_value_input, seen[f"encoder{earlier}"][1][0])
        # Queries: the decoder stream right after its masked self-attention sublayer.
        block_input = decoder_input if index == 0 else seen[f"block{index - 1}"][1][0]
        after_self = block_input + seen[f"self{index}"][1][0]
        torch.testing.assert_close(query_input, block.cross_attention_norm(after_self))


def test_padding_does_not_change_the_maps_of_real_tokens(model):
    source, target = _batch(batch=1, s=4, t=3)
    padded_source = torch.cat([source, torch.full((1, 3), PAD_ID)], dim=1)
    padded_target = torch.cat([target, torch.full((1, 2), PAD_ID)], dim=1)
    alone = model(source, target).attention
    padded = model(padded_source, padded_target).attention
    torch.testing.assert_close(padded.weights("encoder_self")[..., :4, :4],
                               alone.weights("encoder_self"))
    torch.testing.assert_close(padded.weights("decoder_self")[..., :3, :3],
                               alone.weights("decoder_self"))
    torch.testing.assert_close(padded.weights("cross")[..., :3, :4], alone.weights("cross"))
    assert (padded.weights("cross")[..., 4:] == 0).all()
    assert (padded.weights("encoder_self")[..., :4, 4:] == 0).all()


def test_generate_stops_at_end_of_sequence():
    model = tiny_model()
    with torch.no_grad():
        model.output.bias.fill_(0.0)
        model.output.bias[EOS_ID] = 1e4
    generated = model.generate(_batch(batch=3)[0])
    assert generated.tolist() == [[BOS_ID]] * 3


def test_generate_stops_at_the_maximum_length():
    model = tiny_model(max_target_length=5)
    with torch.no_grad():
        model.output.bias.fill_(0.0)
        model.output.bias[7] = 1e4
    generated = model.generate(_batch(batch=2)[0])
    assert generated.tolist() == [[BOS_ID] + [7] * 5] * 2
    assert model.generate(_batch(batch=1)[0], max_length=2).tolist() == [[BOS_ID, 7, 7]]


def test_generate_never_writes_padding_or_begin_tokens():
    model = tiny_model()
    with torch.no_grad():
        model.output.bias.fill_(0.0)
        model.output.bias[PAD_ID] = 1e4
        model.output.bias[BOS_ID] = 1e4
        model.output.bias[EOS_ID] = 1e3
    assert model.generate(_batch(batch=2)[0]).tolist() == [[BOS_ID]] * 2


def test_generate_is_greedy_and_matches_teacher_forcing():
    model = tiny_model(seed=3)
    source = _batch(batch=1)[0]
    generated = model.generate(source)
    logits = model(source, generated).logits  # (1, T, V)
    logits[..., [PAD_ID, BOS_ID]] = float("-inf")
    predicted = logits.argmax(-1)[0]
    assert generated[0, 1:].tolist() == predicted[:-1].tolist()


@pytest.mark.parametrize("changes, message", [
    ({"d_model": 10, "n_heads": 3}, "divisible"),
    ({"n_heads": 0}, "positive"),
    ({"dropout": 1.5}, "dropout"),
    ({"n_encoder_layers": 2.5}, "positive integer"),
])
def test_invalid_sizes_raise_a_readable_value_error(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**changes)


def test_config_round_trips_through_a_dict():
    config = tiny_config()
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config fields: colour"):
        ModelConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="source_vocab_size"):
        ModelConfig.from_dict({"target_vocab_size": 4})


def test_model_accepts_any_source_length():
    model = Transformer(tiny_config()).eval()
    out = model(*_batch(batch=1, s=300, t=2))
    assert out.attention.weights("encoder_self").shape[-1] == 300
