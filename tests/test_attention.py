"""The one attention function against torch's own reference, and its invariants."""

from __future__ import annotations

import ast
from pathlib import Path

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from attnviz.model.attention import causal_mask, padding_mask, scaled_dot_product_attention

SHAPES = [  # (batch dims, T, S, d_k, d_v)
    ((), 1, 1, 1, 1),
    ((2,), 5, 5, 8, 8),
    ((2, 3), 4, 7, 16, 5),  # T != S, d_v != d_k
    ((1, 4), 9, 3, 32, 32),
    ((3, 2), 12, 12, 64, 16),
]


def _inputs(shape, dtype, seed=0):
    batch, t, s, d_k, d_v = shape
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, t, d_k, generator=gen, dtype=dtype)
    k = torch.randn(*batch, s, d_k, generator=gen, dtype=dtype)
    v = torch.randn(*batch, s, d_v, generator=gen, dtype=dtype)
    return q, k, v, gen


def _explicit(q, k, v, mask=None):
    """softmax(Q Kᵀ / √d_k + M) V, written out the long way."""
    scores = q @ k.transpose(-2, -1) / q.size(-1) ** 0.5
    if mask is not None:
        scores = scores + torch.zeros_like(scores).masked_fill(~mask, float("-inf"))
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    weights = weights / weights.sum(-1, keepdim=True)
    return weights @ v, weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_without_mask(shape, dtype):
    q, k, v, _ = _inputs(shape, dtype)
    output, weights = scaled_dot_product_attention(q, k, v)
    assert output.shape == (*shape[0], shape[1], shape[4])
    assert weights.shape == (*shape[0], shape[1], shape[2])
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v),
                               atol=1e-6, rtol=0)
    _, expected_weights = _explicit(q, k, v)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_with_a_mask(shape, dtype):
    q, k, v, gen = _inputs(shape, dtype, seed=1)
    batch, t, s = shape[0], shape[1], shape[2]
    mask = torch.rand(*batch, t, s, generator=gen) < 0.6
    mask[..., 0] = True  # every query sees a key here; fully masked rows are tested below
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               atol=1e-6, rtol=0)
    _, expected_weights = _explicit(q, k, v, mask)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=0)
    assert (weights[~mask.expand_as(weights)] == 0.0).all()


@pytest.mark.parametrize("t,s", [(1, 1), (4, 4), (6, 6)])
def test_causal_mask_matches_torch_is_causal(t, s):
    q, k, v, _ = _inputs(((2, 2), t, s, 8, 8), torch.float32)
    output, weights = scaled_dot_product_attention(q, k, v, causal_mask(t))
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-6, rtol=0)
    assert (weights.triu(diagonal=1) == 0.0).all()


def test_causal_mask_is_true_on_and_below_the_diagonal():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False],
                                       [True, True, True]]


def test_padding_mask_hides_padding_keys_only():
    mask = padding_mask(torch.tensor([[5, 6, 0, 0], [5, 6, 7, 8]]))
    assert mask.shape == (2, 1, 1, 4)
    assert mask[:, 0, 0].tolist() == [[True, True, False, False], [True, True, True, True]]
    q, k, v, _ = _inputs(((2, 3), 5, 4, 8, 8), torch.float32)
    _, weights = scaled_dot_product_attention(q, k, v, mask)
    assert (weights[0, :, :, 2:] == 0.0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))


def test_a_query_with_no_visible_key_gets_zeros_not_nan():
    q, k, v, _ = _inputs(((2,), 3, 4, 8, 8), torch.float32)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    assert not output.isnan().any() and not weights.isnan().any()
    assert (weights[:, 1] == 0.0).all() and (output[:, 1] == 0.0).all()
    torch.testing.assert_close(weights[:, [0, 2]].sum(-1), torch.ones(2, 2))


def test_mask_must_be_boolean():
    q, k, v, _ = _inputs(((1,), 2, 2, 4, 4), torch.float32)
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.zeros(2, 2))


@st.composite
def attention_case(draw):
    batch = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 3))
    t, s = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    d = draw(st.integers(1, 16))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.01, 1.0, 10.0, 100.0]))  # large scale: peaked softmax
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, t, d, generator=gen) * scale
    k = torch.randn(batch, heads, s, d, generator=gen) * scale
    v = torch.randn(batch, heads, s, d, generator=gen)
    mask = None
    if draw(st.booleans()):
        mask = torch.rand(batch, 1, t, s, generator=gen) < draw(st.floats(0.0, 1.0))
    return q, k, v, mask


@settings(max_examples=200, deadline=None)
@given(attention_case())
def test_attention_invariants(case):
    q, k, v, mask = case
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    assert not weights.isnan().any() and not output.isnan().any()
    assert (weights >= 0).all()
    visible = torch.ones_like(weights, dtype=torch.bool) if mask is None else mask.expand_as(
        weights)
    assert (weights[~visible] == 0.0).all()  # exactly zero, not merely small
    has_key = visible.any(-1)
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
    assert (sums[~has_key] == 0.0).all()
    assert (output[~has_key] == 0.0).all()


def test_no_other_module_computes_softmax():
    """Every attention weight in the package comes from attention.py: no other module calls
    softmax (in any spelling), and none but attention.py fills scores with -inf."""
    package = Path(__file__).parent.parent / "attnviz"
    softmax_users, inf_users = set(), set()
    for path in package.rglob("*.py"):
        name = path.relative_to(package).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                    node.func, "id", "")
                if "softmax" in called:
                    softmax_users.add(name)
                minus_inf = any(isinstance(arg, ast.Constant) and arg.value == "-inf"
                                for arg in ast.walk(node))
                if called in ("masked_fill", "masked_fill_") and minus_inf:
                    inf_users.add(name)
    assert softmax_users == {"model/attention.py"}
    assert inf_users == {"model/attention.py"}


def test_gradients_match_torch_when_training():
    """With autograd the function works out of place; its gradients are torch's."""
    q, k, v, gen = _inputs(((2, 3), 5, 6, 8, 4), torch.float64, seed=4)
    mask = torch.rand(5, 6, generator=gen) < 0.7
    mask[:, 0] = True
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    theirs = [t.clone().requires_grad_() for t in (q, k, v)]
    output, weights = scaled_dot_product_attention(*ours, mask)
    (output.square().sum() + weights.sum()).backward()
    expected = F.scaled_dot_product_attention(*theirs, attn_mask=mask)
    _, expected_weights = _explicit(*theirs, mask)
    (expected.square().sum() + expected_weights.sum()).backward()
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.grad, reference.grad)
    assert ours[0].grad.abs().sum() > 0


def test_inputs_are_never_changed_in_place():
    q, k, v, _ = _inputs(((2,), 4, 4, 8, 8), torch.float32)
    copies = [t.clone() for t in (q, k, v)]
    scaled_dot_product_attention(q, k, v, causal_mask(4))
    for before, after in zip(copies, (q, k, v), strict=True):
        assert torch.equal(before, after)


# --- A scale, an additive bias, grouped key/value heads -------------------------------------

def _repeat(tensor, groups):
    """transformers' repeat_kv: each key/value head repeated for the query heads sharing it."""
    return tensor.repeat_interleave(groups, dim=1)


@st.composite
def grouped_case(draw):
    kv_heads = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 4))
    t, s, d = draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn(2, kv_heads * groups, t, d, generator=gen)
    k = torch.randn(2, kv_heads, s, d, generator=gen)
    v = torch.randn(2, kv_heads, s, d + 1, generator=gen)
    bias = torch.randn(2, kv_heads * groups, t, s, generator=gen) if draw(st.booleans()) \
        else None
    mask = torch.rand(2, 1, t, s, generator=gen) < 0.7 if draw(st.booleans()) else None
    scale = draw(st.sampled_from([None, 1.0, 0.3]))
    return q, k, v, mask, bias, scale, groups


@settings(max_examples=150, deadline=None)
@given(grouped_case())
def test_grouped_heads_bias_and_scale_match_the_long_way(case):
    """With H query heads sharing H_kv key/value heads, a bias and a scale, the function
    equals softmax(s Q Kᵀ + B + M) V on keys and values repeated per query head, as
    transformers' eager attention computes it."""
    q, k, v, mask, bias, scale, groups = case
    output, weights = scaled_dot_product_attention(q, k, v, mask, scale=scale, bias=bias)
    keys, values = _repeat(k, groups), _repeat(v, groups)
    s = q.size(-1) ** -0.5 if scale is None else scale
    scores = q @ keys.transpose(-2, -1) * s + (0 if bias is None else bias)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    expected = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(output, expected @ values, atol=1e-5, rtol=1e-5)
    assert weights.shape == (q.size(0), q.size(1), q.size(2), k.size(2))
    if mask is not None:
        assert (weights[~mask.expand_as(weights)] == 0.0).all()


def test_key_value_head_is_the_one_a_query_head_reads():
    from attnviz.model.attention import key_value_head

    assert [key_value_head(h, 9, 3) for h in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [key_value_head(h, 4, 4) for h in range(4)] == [0, 1, 2, 3]


def test_heads_that_cannot_share_evenly_are_refused():
    q, k, v, _ = _inputs(((1, 3), 2, 2, 4, 4), torch.float32)
    with pytest.raises(ValueError, match="evenly"):
        scaled_dot_product_attention(q, k[:, :2], v[:, :2])
