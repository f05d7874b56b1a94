"""ViT and DeiT against stock Transformers on the same random weights: Hub layout, outputs, gradients."""

import pytest
import safetensors.torch
import torch
import transformers

import tritonvision

from helpers import TINY_VIT

# (stock class, our class, stock config class)
PAIRS = [
    (transformers.ViTModel, tritonvision.ViTModel, transformers.ViTConfig),
    (transformers.ViTForImageClassification, tritonvision.ViTForImageClassification, transformers.ViTConfig),
    (transformers.DeiTModel, tritonvision.DeiTModel, transformers.DeiTConfig),
    (transformers.DeiTForImageClassification, tritonvision.DeiTForImageClassification, transformers.DeiTConfig),
    (
        transformers.DeiTForImageClassificationWithTeacher,
        tritonvision.DeiTForImageClassificationWithTeacher,
        transformers.DeiTConfig,
    ),
]
IDS = [pair[1].__name__ for pair in PAIRS]


def _stock_and_ours(tmp_path, stock_cls, our_cls, config_cls, attn_implementation="eager"):
    stock = stock_cls(config_cls(**TINY_VIT, num_labels=5, attn_implementation="eager")).eval()
    with torch.no_grad():  # zero-initialised tokens and biases would leave parts of the model untested
        for parameter in stock.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.02)
    stock.save_pretrained(tmp_path)
    ours, info = our_cls.from_pretrained(tmp_path, output_loading_info=True, attn_implementation=attn_implementation)
    assert all(not keys for keys in info.values()), info
    return stock, ours.eval()


def _assert_outputs_close(expected, actual, atol=1e-4):
    for name in expected.keys():
        want, got = expected[name], actual[name]
        if isinstance(want, tuple):
            assert len(want) == len(got) > 0, name
            for w, g in zip(want, got):
                torch.testing.assert_close(g, w, atol=atol, rtol=0, msg=name)
        else:
            torch.testing.assert_close(got, want, atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("stock_cls, our_cls, config_cls", PAIRS, ids=IDS)
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa", "triton"])
def test_outputs_match_stock(tmp_path, stock_cls, our_cls, config_cls, attn_implementation):
    stock, ours = _stock_and_ours(tmp_path, stock_cls, our_cls, config_cls, attn_implementation)
    pixel_values = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = stock(pixel_values, output_hidden_states=True, output_attentions=True)
        actual = ours(pixel_values, output_hidden_states=True, output_attentions=True)
    assert set(actual.keys()) == set(expected.keys())
    _assert_outputs_close(expected, actual)


def _gradients_by_hub_name(model, tmp_path) -> dict[str, torch.Tensor]:
    """Gradients keyed by on-disk tensor name: save the model with its gradients in place of its weights.

    Stock Transformers 5 holds other names in memory than on disk; its own save maps them back.
    """
    for parameter in model.parameters():
        parameter.data = parameter.grad.clone()
    model.save_pretrained(tmp_path)
    return safetensors.torch.load_file(tmp_path / "model.safetensors")


@pytest.mark.parametrize("stock_cls, our_cls, config_cls", PAIRS[1:2] + PAIRS[3:], ids=IDS[1:2] + IDS[3:])
def test_gradients_match_stock(tmp_path, stock_cls, our_cls, config_cls):
    stock, ours = _stock_and_ours(tmp_path / "stock", stock_cls, our_cls, config_cls, "sdpa")
    pixel_values = torch.randn(2, 3, 32, 32)
    weights = torch.randn(2, 5)
    inputs = {}
    for name, model in (("stock", stock), ("ours", ours)):
        inputs[name] = pixel_values.clone().requires_grad_(True)
        (model(inputs[name]).logits * weights).sum().backward()
    torch.testing.assert_close(inputs["ours"].grad, inputs["stock"].grad, atol=1e-4, rtol=0)
    stock_grads = _gradients_by_hub_name(stock, tmp_path / "stock_grads")
    our_grads = _gradients_by_hub_name(ours, tmp_path / "our_grads")
    assert stock_grads.keys() == our_grads.keys()
    for name in stock_grads:
        torch.testing.assert_close(our_grads[name], stock_grads[name], atol=1e-4, rtol=0, msg=name)


def test_classification_loss_matches_stock(tmp_path):
    stock, ours = _stock_and_ours(tmp_path, *PAIRS[1])
    pixel_values, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 4, 2, 2])
    torch.testing.assert_close(
        ours(pixel_values, labels=labels).loss, stock(pixel_values, labels=labels).loss, atol=1e-5, rtol=0
    )


def test_interpolated_position_embeddings_match_stock(tmp_path):
    stock, ours = _stock_and_ours(tmp_path, *PAIRS[2])
    pixel_values = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        expected = stock(pixel_values, interpolate_pos_encoding=True).last_hidden_state
        actual = ours(pixel_values, interpolate_pos_encoding=True).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        ours(pixel_values)


def test_token_attention_mask_matches_stock(tmp_path):
    """A `(B, N)` token mask becomes key padding; stock turns it into a 4-D mask."""
    stock, ours = _stock_and_ours(tmp_path, *PAIRS[0])
    pixel_values = torch.randn(2, 3, 32, 32)
    mask = torch.ones(2, 17, dtype=torch.long)
    mask[1, 9:] = 0
    with torch.no_grad():
        expected = stock(pixel_values, attention_mask=mask).last_hidden_state
        actual = ours(pixel_values, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_deit_hub_layout_stored_as_vit_loads(tmp_path):
    """facebook/deit-small-patch16-224 is stored with `model_type: vit` and ViT tensor names."""
    stock = transformers.ViTForImageClassification(transformers.ViTConfig(**TINY_VIT, num_labels=3)).eval()
    stock.save_pretrained(tmp_path)
    config = tritonvision.DeiTConfig.from_pretrained(tmp_path)
    assert config.model_type == "tritonvision-deit"
    ours = tritonvision.ViTForImageClassification.from_pretrained(tmp_path).eval()
    pixel_values = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(ours(pixel_values).logits, stock(pixel_values).logits, atol=1e-4, rtol=0)


def test_bad_inputs_raise(tmp_path):
    model = tritonvision.ViTModel(tritonvision.ViTConfig(**TINY_VIT)).eval()
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="pixel_values"):
        model(None)
    with pytest.raises(ValueError, match="attn_implementation"):
        tritonvision.ViTModel(tritonvision.ViTConfig(**TINY_VIT, attn_implementation="flash_attention_2"))
    with pytest.raises(ValueError, match="multiple"):
        tritonvision.ViTConfig(hidden_size=30, num_attention_heads=4)


def test_default_attention_is_triton_and_return_dict_false():
    model = tritonvision.ViTForImageClassification(tritonvision.ViTConfig(**TINY_VIT, num_labels=2)).eval()
    assert model.config._attn_implementation == "triton"
    out = model(torch.randn(1, 3, 32, 32), return_dict=False)
    assert isinstance(out, tuple) and out[0].shape == (1, 2)


@pytest.mark.interpret
@pytest.mark.parametrize("model_cls", [tritonvision.ViTForImageClassification, tritonvision.DeiTForImageClassification])
def test_forced_triton_kernel_matches_sdpa_outputs_and_gradients(monkeypatch, model_cls):
    """With the kernel forced on the CPU (Triton's interpreter), the model equals its SDPA path in float32."""
    from tritonvision.kernels import triton_attention

    if not triton_attention.HAS_TRITON:
        pytest.fail("triton is a runtime dependency and must be importable here")
    launches = []
    for name in ("_triton_forward", "_triton_backward"):
        real = getattr(triton_attention, name)
        monkeypatch.setattr(triton_attention, name, lambda *a, real=real, name=name: launches.append(name) or real(*a))
    model = model_cls(model_cls.config_class(**TINY_VIT, num_labels=5)).train()
    pixel_values, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 3])
    results = {}
    for implementation, force in (("sdpa", "0"), ("triton", "1")):
        monkeypatch.setenv("TRITONVISION_FORCE_TRITON", force)
        model.config._attn_implementation = implementation
        model.zero_grad()
        loss = model(pixel_values, labels=labels).loss
        loss.backward()
        results[implementation] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    layers = TINY_VIT["num_hidden_layers"]
    assert sorted(launches) == ["_triton_backward"] * layers + ["_triton_forward"] * layers
    torch.testing.assert_close(results["triton"][0], results["sdpa"][0], atol=1e-5, rtol=0)
    for name, grad in results["sdpa"][1].items():
        torch.testing.assert_close(results["triton"][1][name], grad, atol=1e-4, rtol=1e-4, msg=name)
