"""`tritonvision-convert timm`: converted folders reproduce timm, and nothing is written when they would not.

Tiny timm models (the real architectures with small widths) get random weights, are saved as local
checkpoints and converted through the CLI function; the folders are reloaded with
`Auto*.from_pretrained(folder, trust_remote_code=True)` and compared with timm on fresh inputs.
"""

import json

import pytest
import torch
from safetensors.torch import save_file

timm = pytest.importorskip("timm")

from timm.models import register_model  # noqa: E402
from timm.models.vision_transformer_hybrid import _create_vision_transformer_hybrid  # noqa: E402
from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification  # noqa: E402
from transformers.dynamic_module_utils import get_class_from_dynamic_module  # noqa: E402

from tritonvision.conversion import VerificationError, verify_then_write  # noqa: E402
from tritonvision.conversion import timm_to_tritonvision as timm_conversion  # noqa: E402
from tritonvision.conversion.__main__ import main  # noqa: E402

from helpers import tiny_timm_resnetv2  # noqa: E402

TOLERANCE = 1e-4
TINY_VIT = dict(embed_dim=32, depth=2, num_heads=2, img_size=32, patch_size=8)
TINY_HYBRID = "tritonvision_test_tiny_r_s16_384"

if not timm.is_model(TINY_HYBRID):

    @register_model
    def tritonvision_test_tiny_r_s16_384(pretrained=False, **kwargs):
        """`vit_base_r50_s16_384`'s structure (same-padded StdConv ResNetV2 stages 1-3, 1x1 patches, 384 px)."""
        backbone = tiny_timm_resnetv2((2, 1, 2), (32, 64, 128), 16, 8)
        model_args = dict(embed_dim=32, depth=2, num_heads=2, img_size=384)
        return _create_vision_transformer_hybrid(
            "vit_base_r50_s16_384", backbone=backbone, pretrained=pretrained, **dict(model_args, **kwargs)
        )


def randomize(model):
    """Random weights everywhere (timm zero-initialises tokens and heads, which would hide mistakes)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1 and "norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.1 * torch.randn_like(parameter))
            else:
                parameter.copy_(0.2 * torch.randn_like(parameter))
    return model.eval()


def make_checkpoint(tmp_path, name, **kwargs):
    model = randomize(timm.create_model(name, pretrained=False, **kwargs))
    path = tmp_path / f"{name}.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return model, path


def run_cli(name, checkpoint, output, kwargs, *extra):
    return main(
        ["timm", name, str(output), "--checkpoint", str(checkpoint), "--timm-kwargs", json.dumps(kwargs), *extra]
    )


def max_diff(a, b) -> float:
    assert a.shape == b.shape
    assert not torch.isnan(b).any()
    return (a - b).abs().max().item()


@pytest.mark.parametrize(
    "name, kwargs, expected_class",
    [
        ("vit_base_patch16_224", dict(TINY_VIT, num_classes=10), "ViTForImageClassification"),
        ("vit_large_patch16_224", dict(TINY_VIT, num_classes=10, qkv_bias=False), "ViTForImageClassification"),
        ("deit_small_patch16_224", dict(TINY_VIT, num_classes=10), "ViTForImageClassification"),
        ("deit_base_distilled_patch16_224", dict(TINY_VIT, num_classes=10), "DeiTForImageClassificationWithTeacher"),
        (TINY_HYBRID, dict(num_classes=7), "ViTHybridForImageClassification"),
    ],
)
def test_classifier_folder_reproduces_timm(tmp_path, name, kwargs, expected_class):
    timm_model, checkpoint = make_checkpoint(tmp_path, name, **kwargs)
    output = tmp_path / "converted"
    assert run_cli(name, checkpoint, output, kwargs) == 0

    config = json.loads((output / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageClassification"].endswith(expected_class)
    assert (output / "model.safetensors").is_file()
    if expected_class.endswith("WithTeacher"):
        # `import tritonvision` registers DeiTForImageClassification for DeiTConfig, and Transformers prefers a
        # registered class over the folder's auto_map: load the folder's own code, as a user without tritonvision.
        model = get_class_from_dynamic_module(config["auto_map"]["AutoModelForImageClassification"], str(output))
        model = model.from_pretrained(output).eval()
    else:
        model = AutoModelForImageClassification.from_pretrained(output, trust_remote_code=True).eval()
    assert type(model).__name__ == expected_class
    height, width = timm_model.patch_embed.img_size
    pixels = torch.randn(2, 3, height, width)
    with torch.no_grad():
        # timm in eval mode: distilled DeiT averages its cls and distillation heads, as ours does.
        assert max_diff(timm_model(pixels), model(pixels).logits) < TOLERANCE
        features = getattr(model, model.base_model_prefix)(pixels).last_hidden_state
        assert max_diff(timm_model.forward_features(pixels), features) < TOLERANCE


def test_in21k_without_head_becomes_feature_extractor(tmp_path):
    name, kwargs = "vit_base_patch16_224.augreg_in21k", dict(TINY_VIT, num_classes=0)
    timm_model, checkpoint = make_checkpoint(tmp_path, name, **kwargs)
    assert run_cli(name, checkpoint, tmp_path / "out", kwargs) == 0
    model = AutoModel.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert type(model).__name__ == "ViTModel"
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(timm_model.forward_features(pixels), model(pixels).last_hidden_state) < TOLERANCE


def test_zero_head_is_dropped_and_pre_logits_become_pooler():
    hidden = 8
    state_dict = {
        "cls_token": torch.randn(1, 1, hidden),
        "pos_embed": torch.randn(1, 5, hidden),
        "patch_embed.proj.weight": torch.randn(hidden, 3, 2, 2),
        "patch_embed.proj.bias": torch.randn(hidden),
        "blocks.0.attn.qkv.weight": torch.arange(3 * hidden * hidden, dtype=torch.float32).view(3 * hidden, hidden),
        "blocks.0.attn.qkv.bias": torch.arange(3 * hidden, dtype=torch.float32),
        "norm.weight": torch.ones(hidden),
        "norm.bias": torch.zeros(hidden),
        "pre_logits.fc.weight": torch.randn(hidden, hidden),
        "pre_logits.fc.bias": torch.randn(hidden),
        "head.weight": torch.zeros(4, hidden),
        "head.bias": torch.zeros(4),
    }
    converted = timm_conversion.convert_state_dict(state_dict)
    assert not any(key.startswith(("vit.", "classifier")) for key in converted)
    assert torch.equal(converted["pooler.dense.weight"], state_dict["pre_logits.fc.weight"])
    query = converted["encoder.layer.0.attention.attention.query.weight"]
    value_bias = converted["encoder.layer.0.attention.attention.value.bias"]
    assert torch.equal(query, state_dict["blocks.0.attn.qkv.weight"][:hidden])
    assert torch.equal(value_bias, torch.arange(2 * hidden, 3 * hidden, dtype=torch.float32))

    with pytest.raises(timm_conversion.ConversionError, match="blocks.0.ls1.gamma"):
        timm_conversion.convert_state_dict({**state_dict, "blocks.0.ls1.gamma": torch.ones(hidden)})
    with pytest.raises(timm_conversion.ConversionError):
        timm_conversion.detect_variant({"conv.weight": torch.ones(1)})


def test_processor_follows_timm_pretrained_cfg(tmp_path):
    name, kwargs = "deit_base_distilled_patch16_224", dict(TINY_VIT, num_classes=10)
    timm_model, checkpoint = make_checkpoint(tmp_path, name, **kwargs)
    assert run_cli(name, checkpoint, tmp_path / "out", kwargs) == 0
    processor = AutoImageProcessor.from_pretrained(tmp_path / "out", trust_remote_code=True)
    data = timm.data.resolve_data_config({}, model=timm_model)
    assert processor.crop_size["height"] == 32
    assert processor.size["shortest_edge"] == int(32 / data["crop_pct"])
    assert list(processor.image_mean) == pytest.approx(list(data["mean"]))
    assert list(processor.image_std) == pytest.approx(list(data["std"]))
    assert int(processor.resample) == 3  # bicubic


def test_missing_tensor_is_listed_and_nothing_written(tmp_path, capsys):
    name, kwargs = "vit_base_patch16_224", dict(TINY_VIT, num_classes=10)
    timm_model, _ = make_checkpoint(tmp_path, name, **kwargs)
    state_dict = {key: value.contiguous() for key, value in timm_model.state_dict().items()}
    del state_dict["blocks.1.mlp.fc2.bias"]
    state_dict["extra.weight"] = torch.ones(1)
    checkpoint = tmp_path / "broken.safetensors"
    save_file(state_dict, str(checkpoint))
    output = tmp_path / "out"
    assert run_cli(name, checkpoint, output, kwargs) == 1
    error = capsys.readouterr().err
    assert "blocks.1.mlp.fc2.bias" in error and "extra.weight" in error
    assert not output.exists()


def test_unknown_model_is_an_error(tmp_path, capsys):
    assert main(["timm", "no_such_model_xyz", str(tmp_path / "out")]) == 1
    assert "no_such_model_xyz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_verification_failure_writes_nothing(tmp_path, monkeypatch, capsys):
    name, kwargs = "vit_base_patch16_224", dict(TINY_VIT, num_classes=10)
    _, checkpoint = make_checkpoint(tmp_path, name, **kwargs)
    original = timm_conversion.convert_state_dict

    def off_by_a_little(*args, **kw):
        converted = original(*args, **kw)
        converted["vit.layernorm.bias"] = converted["vit.layernorm.bias"] + 1e-2
        return converted

    monkeypatch.setattr(timm_conversion, "convert_state_dict", off_by_a_little)
    output = tmp_path / "out"
    assert run_cli(name, checkpoint, output, kwargs) == 1
    assert "does not reproduce" in capsys.readouterr().err
    assert not output.exists()
    # --no-verify writes it anyway (the user asked for it).
    assert run_cli(name, checkpoint, output, kwargs, "--no-verify") == 0
    assert (output / "model.safetensors").is_file()


def test_verify_then_write_refuses_nan(tmp_path):
    def compare():
        return [("logits", torch.zeros(2), torch.tensor([0.0, float("nan")]))]

    with pytest.raises(VerificationError):
        verify_then_write(None, None, tmp_path / "out", compare)
    assert not (tmp_path / "out").exists()


def test_real_size_hybrid_names_and_config():
    """vit_base_r50_s16_384 itself (on the meta device: names and shapes only) maps onto our classes."""
    from tritonvision.modeling.modeling_vit_hybrid import ViTHybridForImageClassification

    with torch.device("meta"):
        timm_model = timm.create_model("vit_base_r50_s16_384", pretrained=False)
        state_dict = timm_model.state_dict()
        config = timm_conversion.config_from_timm(timm_model, "vit-hybrid", classify=True)
        ours = ViTHybridForImageClassification(config)
    assert config.backbone_featmap_shape == [1, 1024, 24, 24]
    assert config.backbone_config["depths"] == [3, 4, 9]
    assert (config.hidden_size, config.num_hidden_layers, config.image_size, config.patch_size) == (768, 12, 384, 1)
    assert config.layer_norm_eps == timm_model.norm.eps
    converted = timm_conversion.convert_state_dict(state_dict, "vit-hybrid")
    expected = ours.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[key].shape == expected[key].shape for key in expected)
