"""The one attention door: implementations agree, padding is honoured, stock Transformers can use "triton"."""

import pytest
import torch
import transformers

import tritonvision  # noqa: F401  (registers "triton" with Transformers)
from tritonvision.kernels import attention as attention_module
from tritonvision.kernels.attention import attention, key_padding_from_attention_mask

from helpers import TINY_VIT


def _reference(q, k, v, mask, scale):
    scores = (q.double() @ k.double().transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a fully padded row attends to nothing
    return probs @ v.double(), probs


@pytest.mark.parametrize("implementation", ["eager", "sdpa", "triton"])
def test_implementations_match_float64_reference_with_padding(implementation):
    q, k, v = torch.randn(3, 2, 5, 8), torch.randn(3, 2, 7, 8), torch.randn(3, 2, 7, 8)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, 4:] = True
    mask[2, :] = True  # every key padded: the output must be zero, not NaN
    out, _ = attention(q, k, v, mask, scale=0.3, implementation=implementation)
    expected, _ = _reference(q, k, v, mask, 0.3)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)
    assert torch.equal(out[2], torch.zeros_like(out[2]))


def test_output_attentions_returns_probabilities_for_any_implementation():
    q, k, v = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    mask = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    _, expected = _reference(q, k, v, mask, 8**-0.5)
    for implementation in ("sdpa", "triton"):
        _, probs = attention(q, k, v, mask, implementation=implementation, output_attentions=True)
        torch.testing.assert_close(probs.double(), expected, atol=1e-6, rtol=0)


def test_bad_arguments_raise():
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(ValueError, match="implementation"):
        attention(q, q, q, implementation="flash")
    with pytest.raises(ValueError, match="bool"):
        attention(q, q, q, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="shape"):
        attention(q, q, q, torch.zeros(1, 3, dtype=torch.bool))


def test_key_padding_from_transformers_masks():
    additive = torch.zeros(2, 1, 1, 5)
    additive[1, ..., 3:] = torch.finfo(torch.float32).min
    expected = [[False] * 5, [False] * 3 + [True] * 2]
    assert key_padding_from_attention_mask(additive, 5).tolist() == expected
    broadcast = (additive == 0).expand(2, 1, 3, 5)  # bool, True = attend, the same row for every query
    assert key_padding_from_attention_mask(broadcast, 5).tolist() == expected
    causal = torch.ones(1, 1, 3, 3, dtype=torch.bool).tril()
    assert key_padding_from_attention_mask(causal, 3) is None  # varies over queries: the general path


def test_stock_transformers_vit_runs_with_triton_attention(monkeypatch):
    calls = []
    door = attention_module.attention
    monkeypatch.setattr(attention_module, "attention", lambda *a, **kw: calls.append(kw) or door(*a, **kw))
    config = transformers.ViTConfig(**TINY_VIT)
    stock = transformers.ViTModel(config).eval()
    pixel_values = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = stock(pixel_values).last_hidden_state
        stock.set_attn_implementation("triton")
        assert stock.config._attn_implementation == "triton"
        actual = stock(pixel_values).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert [call["implementation"] for call in calls] == ["triton"] * TINY_VIT["num_hidden_layers"]
