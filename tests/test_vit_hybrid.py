"""ViT-hybrid: BiT backbone parity with Transformers' `BitBackbone`, the 4.x checkpoint layout, timm parity
(outputs and gradients), preprocessing as timm's `vit_base_r50_s16_384`, and loading as remote code."""

import json
import subprocess
import sys
from functools import partial

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BitBackbone as StockBitBackbone
from transformers import BitConfig
from transformers import ViTConfig as StockViTConfig
from transformers import ViTForImageClassification as StockViTForImageClassification

from tritonvision.modeling.bit_backbone import BitBackbone, BitSettings
from tritonvision.modeling.configuration_vit_hybrid import ViTHybridConfig
from tritonvision.modeling.image_processing_vit_hybrid import ViTHybridImageProcessor
from tritonvision.modeling.modeling_vit_hybrid import ViTHybridForImageClassification, ViTHybridModel

from helpers import TINY_BIT_BACKBONE, tiny_hybrid_config, tiny_timm_resnetv2

# google/vit-hybrid-base-bit-384's backbone, as Transformers 4.x's conversion script configured it.
HUB_BACKBONE = dict(
    global_padding="same",
    layer_type="bottleneck",
    depths=[3, 4, 9],
    out_features=["stage3"],
    embedding_dynamic_padding=True,
)


def randomize_(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3 + (1.0 if parameter.dim() == 1 else 0.0))
    return module.eval()


@pytest.mark.parametrize("layer_type, dynamic", [("bottleneck", True), ("preactivation", False)])
def test_bit_backbone_matches_transformers(layer_type, dynamic):
    settings = dict(TINY_BIT_BACKBONE, layer_type=layer_type, embedding_dynamic_padding=dynamic)
    stock = randomize_(StockBitBackbone(BitConfig(**settings)))
    ours = BitBackbone(BitSettings.from_dict(settings)).eval()
    ours.load_state_dict(stock.state_dict(), strict=True)  # same tensor names, nothing left over
    pixels = torch.randn(2, 3, 45, 37)  # odd sizes exercise the dynamic "SAME" padding
    with torch.no_grad():
        expected = stock(pixels).feature_maps[-1]
        got = ours(pixels)[-1]
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4


def _saved_tensor_names(model, tmp_path) -> set[str]:
    model.save_pretrained(tmp_path)
    return set(load_file(str(tmp_path / "model.safetensors")))


def test_tensor_names_are_those_of_the_hub_checkpoint(tmp_path):
    """Transformers 4.x built google/vit-hybrid-base-bit-384 as ViT + `load_backbone` (a `BitBackbone`) under
    `vit.embeddings.patch_embeddings.backbone`; both stock pieces still exist in Transformers 5, so the real
    key list is rebuilt from them (the checkpoint's own index is not reachable offline)."""
    stock_vit = StockViTForImageClassification(
        StockViTConfig(
            hidden_size=8,
            num_hidden_layers=12,
            num_attention_heads=2,
            intermediate_size=8,
            image_size=16,
            patch_size=16,
            num_labels=3,
        )
    )
    vit_names = _saved_tensor_names(stock_vit, tmp_path / "vit")
    bit_names = _saved_tensor_names(StockBitBackbone(BitConfig(**HUB_BACKBONE)), tmp_path / "bit")
    expected = vit_names | {f"vit.embeddings.patch_embeddings.backbone.{name}" for name in bit_names}
    with torch.device("meta"):
        ours = ViTHybridForImageClassification(ViTHybridConfig(image_size=384, backbone_config=HUB_BACKBONE))
    names = set(ours.state_dict())
    assert names == expected
    assert "vit.embeddings.patch_embeddings.backbone.bit.encoder.stages.2.layers.8.conv3.weight" in names
    assert ours.vit.embeddings.position_embeddings.shape == (1, 577, 768)


def test_transformers_4_folder_loads_without_missing_or_unexpected(tmp_path):
    config = tiny_hybrid_config()
    source = randomize_(ViTHybridForImageClassification(config))
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "model.safetensors"))
    bit = BitConfig(**TINY_BIT_BACKBONE)
    hub_config = {
        "architectures": ["ViTHybridForImageClassification"],
        "model_type": "vit-hybrid",
        "backbone_config": {**bit.to_dict(), "global_padding": "SAME"},
        "backbone_featmap_shape": [1, 128, 4, 4],
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": config.intermediate_size,
        "hidden_act": "gelu",
        "image_size": 64,
        "patch_size": 1,
        "num_channels": 3,
        "qkv_bias": True,
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "id2label": {str(i): f"class {i}" for i in range(5)},
        "label2id": {f"class {i}": i for i in range(5)},
        "torch_dtype": "float32",
        "transformers_version": "4.40.2",
    }
    (tmp_path / "config.json").write_text(json.dumps(hub_config))
    model, info = ViTHybridForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.backbone_featmap_shape == [1, 128, 4, 4]
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.eval()(pixels).logits, source(pixels).logits, atol=1e-5)


def test_matches_timm_hybrid_outputs_and_gradients():
    timm = pytest.importorskip("timm")
    from timm.layers import HybridEmbed
    from timm.models.vision_transformer import VisionTransformer

    from tritonvision.conversion.timm_to_tritonvision import convert_timm_model

    backbone = tiny_timm_resnetv2((2, 1, 2), (32, 64, 128), 16, 8)
    reference = VisionTransformer(
        img_size=64,
        patch_size=1,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=5,
        embed_layer=partial(HybridEmbed, backbone=backbone),
    )
    randomize_(reference)
    ours, variant, _ = convert_timm_model(reference, "vit_base_r50_s16_384")
    assert isinstance(ours, ViTHybridForImageClassification) and variant == "vit-hybrid"
    pixels = torch.randn(2, 3, 64, 64)
    pixels_ref = pixels.clone().requires_grad_(True)
    pixels_ours = pixels.clone().requires_grad_(True)
    expected, got = reference(pixels_ref), ours(pixels_ours).logits
    assert (got - expected).abs().max().item() < 1e-4
    expected.square().sum().backward()
    got.square().sum().backward()
    scale = pixels_ref.grad.abs().max().item()
    assert (pixels_ours.grad - pixels_ref.grad).abs().max().item() < 1e-4 * max(1.0, scale)
    stem_ref = reference.patch_embed.backbone.stem.conv.weight.grad
    stem_ours = ours.vit.embeddings.patch_embeddings.backbone.bit.embedder.convolution.weight.grad
    assert (stem_ours - stem_ref).abs().max().item() < 1e-4 * max(1.0, stem_ref.abs().max().item())
    assert timm.__version__


def test_processor_matches_timm_eval_transform():
    timm = pytest.importorskip("timm")
    from timm.data import create_transform, resolve_data_config

    with torch.device("meta"):
        reference_model = timm.create_model("vit_base_r50_s16_384", pretrained=False)
    transform = create_transform(**resolve_data_config({}, model=reference_model))
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 450, 3), dtype=np.uint8))
    expected = transform(image)
    got = ViTHybridImageProcessor()(image, return_tensors="pt").pixel_values[0]
    assert got.shape == expected.shape == (3, 384, 384)
    assert (got - expected).abs().max().item() < 1e-4


def test_interpolated_position_embeddings_and_bare_model():
    model = randomize_(ViTHybridModel(tiny_hybrid_config()))
    with torch.no_grad():
        output = model(torch.randn(1, 3, 96, 96), interpolate_pos_encoding=True)
    assert output.last_hidden_state.shape == (1, 1 + 6 * 6, 32)
    assert output.pooler_output.shape == (1, 32)
    with pytest.raises(ValueError, match="doesn't match"):
        model(torch.randn(1, 3, 96, 96))


def test_saved_folder_loads_as_remote_code_without_tritonvision(tmp_path):
    model = randomize_(ViTHybridForImageClassification(tiny_hybrid_config()))
    model.save_pretrained(tmp_path)
    ViTHybridImageProcessor().save_pretrained(tmp_path)
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(pixels).logits
    torch.save(pixels, tmp_path / "pixels.pt")
    script = f"""
import sys
sys.modules["tritonvision"] = None  # the folder must not need the package
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
AutoImageProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
with torch.no_grad():
    logits = model(torch.load({str(tmp_path / "pixels.pt")!r})).logits
torch.save(logits, {str(tmp_path / "logits.pt")!r})
print(type(model).__name__)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ViTHybridForImageClassification" in result.stdout
    assert torch.allclose(torch.load(tmp_path / "logits.pt"), expected, atol=1e-5)
