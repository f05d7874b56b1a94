"""DETR: weight layout and numerics against stock Transformers, the set loss, remote code and the Triton paths.

The reference is `transformers.DetrForObjectDetection` with a timm ResNet backbone (the Hub layout), built tiny
and saved to a temporary folder; our classes load that folder. Frozen batch-norm statistics and layer norms
are randomised before saving so that they are really exercised.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers

from tritonvision.modeling import detr_loss as detr_loss_module
from tritonvision.modeling.configuration_detr import DetrConfig
from tritonvision.modeling.detr_loss import detr_loss, labels_to_padded
from tritonvision.modeling.modeling_detr import DetrForObjectDetection, DetrModel

TINY = {
    "d_model": 32,
    "encoder_layers": 1,
    "decoder_layers": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "num_queries": 10,
    "num_labels": 5,
    "use_pretrained_backbone": False,
    "dropout": 0.0,
}


def _randomise(model: torch.nn.Module) -> None:
    """Give frozen batch norms and layer norms non-trivial values (stock init leaves them at identity)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith(("running_mean", "bias")):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith(("running_var", "weight")):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))


def _save_stock(folder, **overrides):
    torch.manual_seed(0)
    config = transformers.DetrConfig(**{**TINY, "backbone": "resnet26", **overrides})
    stock = transformers.DetrForObjectDetection(config)
    _randomise(stock)
    stock.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def stock_folder(tmp_path_factory):
    return str(_save_stock(tmp_path_factory.mktemp("stock_detr"), auxiliary_loss=True))


def _load_pair(folder):
    stock = transformers.DetrForObjectDetection.from_pretrained(folder, attn_implementation="eager").eval()
    ours, info = DetrForObjectDetection.from_pretrained(folder, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return stock, ours.eval()


def _batch():
    """Two images of different sizes, padded to one batch with the second one's padding in the mask."""
    generator = torch.Generator().manual_seed(2)
    pixel_values = torch.zeros(2, 3, 72, 96)
    pixel_values[0] = torch.randn(3, 72, 96, generator=generator)
    pixel_values[1, :, :56, :64] = torch.randn(3, 56, 64, generator=generator)
    pixel_mask = torch.zeros(2, 72, 96, dtype=torch.long)
    pixel_mask[0] = 1
    pixel_mask[1, :56, :64] = 1
    return pixel_values, pixel_mask


LABELS = [
    {
        "class_labels": torch.tensor([1, 3, 0]),
        "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.6, 0.6, 0.3, 0.2], [0.5, 0.5, 0.9, 0.9]]),
    },
    {"class_labels": torch.tensor([4]), "boxes": torch.tensor([[0.2, 0.7, 0.1, 0.1]])},
]


def _stock_name(name: str) -> str:
    """Our (Hub) parameter name -> stock Transformers 5's in-memory name."""
    name = name.replace("backbone.conv_encoder.model", "backbone.model").replace("out_proj", "o_proj")
    return name.replace(".fc1.", ".mlp.fc1.").replace(".fc2.", ".mlp.fc2.")


def _close(a, b, tol=1e-4):
    assert torch.isfinite(a).all() and torch.isfinite(b).all()
    diff = (a - b).abs().max().item()
    assert diff <= tol * max(1.0, b.abs().max().item()), diff


def test_forward_matches_stock_on_padded_batch(stock_folder):
    stock, ours = _load_pair(stock_folder)
    pixel_values, pixel_mask = _batch()
    with torch.no_grad():
        expected = stock(pixel_values, pixel_mask=pixel_mask, output_hidden_states=True, output_attentions=True)
        actual = ours(pixel_values, pixel_mask=pixel_mask, output_hidden_states=True, output_attentions=True)
    for key in ("logits", "pred_boxes", "last_hidden_state", "encoder_last_hidden_state"):
        _close(actual[key], expected[key])
    for key in (
        "encoder_hidden_states",
        "decoder_hidden_states",
        "encoder_attentions",
        "decoder_attentions",
        "cross_attentions",
    ):
        assert len(actual[key]) == len(expected[key]) > 0, key
        for a, b in zip(actual[key], expected[key]):
            _close(a, b)
    # The mask is honoured: dropping it changes the padded image's outputs only.
    with torch.no_grad():
        unmasked = ours(pixel_values).logits
    _close(unmasked[0], actual.logits[0])
    assert (unmasked[1] - actual.logits[1]).abs().max() > 1e-3


def test_base_model_and_tuple_outputs(stock_folder):
    model = DetrModel.from_pretrained(stock_folder).eval()
    pixel_values, pixel_mask = _batch()
    with torch.no_grad():
        output = model(pixel_values, pixel_mask=pixel_mask)
        as_tuple = model(pixel_values, pixel_mask=pixel_mask, return_dict=False)
    assert output.last_hidden_state.shape == (2, 10, 32)
    assert output.intermediate_hidden_states.shape == (2, 2, 10, 32)
    assert torch.equal(as_tuple[0], output.last_hidden_state)
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="pixel_mask"):
        model(pixel_values, pixel_mask=pixel_mask[:, :10])


def test_loss_components_and_gradients_match_stock(stock_folder):
    stock, ours = _load_pair(stock_folder)
    pixel_values, pixel_mask = _batch()
    inputs = {}
    for name, model in (("stock", stock), ("ours", ours)):
        inputs[name] = pixel_values.clone().requires_grad_(True)
        output = model(inputs[name], pixel_mask=pixel_mask, labels=LABELS)
        output.loss.backward()
        inputs[name + "_out"] = output
    expected, actual = inputs["stock_out"], inputs["ours_out"]
    assert set(actual.loss_dict) == set(expected.loss_dict) and "loss_giou_0" in actual.loss_dict
    _close(actual.loss, expected.loss)
    for key, value in expected.loss_dict.items():
        _close(actual.loss_dict[key], torch.as_tensor(value))
    assert len(actual.auxiliary_outputs) == 1
    _close(actual.auxiliary_outputs[0]["pred_boxes"], expected.auxiliary_outputs[0]["pred_boxes"])
    _close(inputs["ours"].grad, inputs["stock"].grad)
    stock_params = dict(stock.named_parameters())
    checked = 0
    for name, parameter in ours.named_parameters():
        reference = stock_params[_stock_name(name)]
        assert parameter.requires_grad == reference.requires_grad, name
        if reference.grad is None:
            assert parameter.grad is None, name
            continue
        _close(parameter.grad, reference.grad)
        checked += 1
    assert checked > 50


def test_padded_labels_give_the_list_loss(stock_folder):
    model = DetrForObjectDetection.from_pretrained(stock_folder).eval()
    pixel_values, pixel_mask = _batch()
    class_labels, boxes, num_targets = labels_to_padded(LABELS)
    assert class_labels.shape == (2, 3) and num_targets.tolist() == [3, 1]
    with torch.no_grad():
        from_list = model(pixel_values, pixel_mask=pixel_mask, labels=LABELS)
        padded = {"class_labels": class_labels, "boxes": boxes.clone(), "num_targets": num_targets}
        padded["boxes"][1, 1:] = float("nan")  # garbage in padded slots is ignored
        from_padded = model(pixel_values, pixel_mask=pixel_mask, labels=padded)
    for key in from_list.loss_dict:
        torch.testing.assert_close(from_padded.loss_dict[key], from_list.loss_dict[key])
    with pytest.raises(ValueError, match="num_targets"):
        model(pixel_values, labels={"class_labels": class_labels, "boxes": boxes})


def test_all_layers_matched_in_one_call(stock_folder, monkeypatch):
    calls = []
    original = detr_loss_module.batched_linear_sum_assignment

    def counting(cost, *args, **kwargs):
        calls.append(cost.shape)
        return original(cost, *args, **kwargs)

    monkeypatch.setattr(detr_loss_module, "batched_linear_sum_assignment", counting)
    model = DetrForObjectDetection.from_pretrained(stock_folder).eval()
    pixel_values, pixel_mask = _batch()
    with torch.no_grad():
        model(pixel_values, pixel_mask=pixel_mask, labels=LABELS)
    assert calls == [torch.Size([4, 10, 3])]  # 2 decoder layers x 2 images


def test_empty_targets_and_non_finite_predictions():
    config = DetrConfig(**{**TINY, "backbone": "resnet18"})
    logits = torch.randn(2, 10, 6, requires_grad=True)
    boxes = torch.rand(2, 10, 4).clamp(0.05, 0.95)
    empty = torch.zeros(2, 0, dtype=torch.int64), torch.zeros(2, 0, 4), torch.zeros(2, dtype=torch.int64)
    loss, parts = detr_loss(logits, boxes, *empty, config)
    assert torch.isfinite(loss) and parts["loss_bbox"] == 0 and parts["loss_giou"] == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # NaN predictions: matching still succeeds, and the loss shows the NaN.
    class_labels, target_boxes, num_targets = labels_to_padded(LABELS)
    bad_boxes = boxes.clone()
    bad_boxes[0, 3] = float("nan")
    bad_logits = logits.detach().clone()
    bad_logits[1, 2, 0] = float("inf")
    loss, parts = detr_loss(bad_logits, bad_boxes, class_labels, target_boxes, num_targets, config)
    assert not torch.isfinite(loss)


def test_bf16_autocast_loss_is_float32():
    config = DetrConfig(**{**TINY, "backbone": "resnet18"})
    logits = torch.randn(2, 10, 6).bfloat16()
    boxes = torch.rand(2, 10, 4).clamp(0.05, 0.95).bfloat16()
    class_labels, target_boxes, num_targets = labels_to_padded(LABELS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = detr_loss(logits, boxes, class_labels, target_boxes, num_targets, config)
    reference, _ = detr_loss(logits.float(), boxes.float(), class_labels, target_boxes, num_targets, config)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, reference)


def test_dc5_resnet50_layout_matches_stock(tmp_path):
    folder = _save_stock(tmp_path, backbone="resnet50", dilation=True, auxiliary_loss=False)
    stock, ours = _load_pair(folder)
    assert ours.config.output_stride == 16
    assert {_stock_name(k) for k in ours.state_dict()} == set(stock.state_dict())
    pixel_values, pixel_mask = _batch()
    with torch.no_grad():
        _close(
            ours(pixel_values[:, :, :64, :64], pixel_mask=pixel_mask[:, :64, :64]).logits,
            stock(pixel_values[:, :, :64, :64], pixel_mask=pixel_mask[:, :64, :64]).logits,
        )


def test_hub_style_config_is_understood():
    config = DetrConfig(
        backbone="resnet50",
        use_timm_backbone=True,
        use_pretrained_backbone=True,
        dilation=True,
        backbone_config=None,
        num_labels=91,
    )
    assert config.backbone_name == "resnet50" and config.output_stride == 16 and config.hidden_size == 256
    with pytest.raises(ValueError, match="timm ResNet"):
        DetrConfig(use_timm_backbone=False)
    with pytest.raises(ValueError, match="timm ResNet"):
        DetrConfig(backbone="resnet50d")


def test_triton_paths_match_reference(stock_folder, monkeypatch):
    """Fused attention and the Triton matcher and cost (interpreted on CPU) against eager attention and SciPy."""
    pytest.importorskip("triton")
    reference = DetrForObjectDetection.from_pretrained(stock_folder, attn_implementation="eager").eval()
    reference.matcher_backend = "scipy"
    fused = DetrForObjectDetection.from_pretrained(stock_folder, attn_implementation="triton").eval()
    calls = []
    original = detr_loss_module.batched_linear_sum_assignment

    def recording(cost, *args, backend="auto", **kwargs):
        calls.append(backend)
        return original(cost, *args, backend=backend, **kwargs)

    monkeypatch.setattr(detr_loss_module, "batched_linear_sum_assignment", recording)
    from tritonvision.kernels import triton_attention

    attention_launches = []
    real_forward = triton_attention._triton_forward
    monkeypatch.setattr(
        triton_attention, "_triton_forward", lambda *a: attention_launches.append(1) or real_forward(*a)
    )
    monkeypatch.setenv("TRITONVISION_FORCE_TRITON", "1")  # "auto" and "triton" run the kernels on CPU tensors
    pixel_values, pixel_mask = _batch()
    pixel_values, pixel_mask = pixel_values[:, :, :64, :64], pixel_mask[:, :64, :64]
    with torch.no_grad():
        expected = reference(pixel_values, pixel_mask=pixel_mask, labels=LABELS)
        actual = fused(pixel_values, pixel_mask=pixel_mask, labels=LABELS)
        fused.matcher_backend = "triton"
        forced = fused(pixel_values, pixel_mask=pixel_mask, labels=LABELS)
    assert calls == ["scipy", "auto", "triton"]
    # Encoder self-attention, decoder self- and cross-attention, in each of the two fused runs.
    config = fused.config
    assert len(attention_launches) == 2 * (config.encoder_layers + 2 * config.decoder_layers)
    for output in (actual, forced):
        _close(output.logits, expected.logits)
        _close(output.pred_boxes, expected.pred_boxes)
        for key, value in expected.loss_dict.items():
            _close(output.loss_dict[key], value)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tritonvision":
                raise ImportError("tritonvision is blocked")
    sys.meta_path.insert(0, Block())
    import torch
    from transformers import AutoModelForObjectDetection
    folder, inputs_file = sys.argv[1], sys.argv[2]
    model = AutoModelForObjectDetection.from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.split(".")[0] != "tritonvision", type(model).__module__
    pixel_values, pixel_mask = torch.load(inputs_file)
    with torch.no_grad():
        out = model(pixel_values, pixel_mask=pixel_mask)
    torch.save((out.logits, out.pred_boxes), inputs_file + ".out")
    """
)


def test_remote_code_round_trip_without_package(stock_folder, tmp_path):
    model = DetrForObjectDetection.from_pretrained(stock_folder).eval()
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "detr_loss.py").is_file() and (tmp_path / "saved" / "hungarian.py").is_file()
    pixel_values, pixel_mask = _batch()
    inputs_file = str(tmp_path / "inputs.pt")
    torch.save((pixel_values, pixel_mask), inputs_file)
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "saved"), inputs_file],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    logits, boxes = torch.load(inputs_file + ".out")
    with torch.no_grad():
        expected = model(pixel_values, pixel_mask=pixel_mask)
    _close(logits, expected.logits)
    _close(boxes, expected.pred_boxes)
