"""`tritonvision-convert jax|detr|deit|hf`: original checkpoints become folders that reproduce their reference.

Every checkpoint is synthetic and tiny, written here in its original layout from the documented names (the
google-research `.npz` arrays, torchvision ResNet + `nn.Transformer*Layer` tensors for DETR, timm's DeiT for
facebookresearch/deit, stock `save_pretrained` for Transformers). The written folders are reloaded with
remote code and compared with the reference (timm's own `.npz` loader, timm, stock Transformers) on fresh
inputs. Broken inputs must end with a one-line error and no output folder.
"""

import argparse
import json

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from timm.models.vision_transformer_hybrid import _create_vision_transformer_hybrid  # noqa: E402
from transformers import AutoModel, AutoModelForImageClassification, AutoModelForObjectDetection  # noqa: E402
from transformers.dynamic_module_utils import get_class_from_dynamic_module  # noqa: E402

from tritonvision.conversion import detr_to_tritonvision, timm_to_tritonvision  # noqa: E402
from tritonvision.conversion.__main__ import main  # noqa: E402

from helpers import tiny_timm_resnetv2  # noqa: E402

TOLERANCE = 1e-4
HIDDEN, HEADS, LAYERS, MLP = 32, 2, 2, 64
TINY_VIT = dict(hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS, mlp_dim=MLP, patch_size=8)
TINY_HYBRID = dict(
    hidden_size=HIDDEN,
    num_layers=LAYERS,
    num_heads=HEADS,
    mlp_dim=MLP,
    patch_size=1,
    resnet_depths=[2, 1],
    resnet_width=8,
    resnet_groups=4,
)


def max_diff(reference, ours) -> float:
    assert reference.shape == ours.shape
    assert torch.isfinite(ours).all() and torch.isfinite(reference).all()
    return (reference - ours).abs().max().item()


# ---------------------------------------------------------------- google-research/vision_transformer .npz


def jax_arrays(seed=0, patch=8, grid=4, classes=5, pre_logits=None, zero_head=False, resnet=None):
    """Random arrays under the original Flax names and layouts (HWIO convs, per-head attention kernels)."""
    rng = np.random.default_rng(seed)

    def r(*shape, offset=0.0):
        return (offset + 0.2 * rng.standard_normal(shape)).astype(np.float32)

    arrays, channels = {}, 3
    if resnet:
        width, depths = resnet
        arrays |= {"conv_root/kernel": r(7, 7, 3, width), "gn_root/scale": r(width, offset=1), "gn_root/bias": r(width)}
        channels = width
        for block, depth in enumerate(depths):
            mid = width * 2**block
            for unit in range(depth):
                p = f"block{block + 1}/unit{unit + 1}/"
                arrays |= {
                    p + "conv1/kernel": r(1, 1, channels, mid),
                    p + "conv2/kernel": r(3, 3, mid, mid),
                    p + "conv3/kernel": r(1, 1, mid, 4 * mid),
                }
                for norm, size in (("gn1", mid), ("gn2", mid), ("gn3", 4 * mid)):
                    arrays |= {p + norm + "/scale": r(size, offset=1), p + norm + "/bias": r(size)}
                if unit == 0:
                    arrays |= {
                        p + "conv_proj/kernel": r(1, 1, channels, 4 * mid),
                        p + "gn_proj/scale": r(4 * mid, offset=1),
                        p + "gn_proj/bias": r(4 * mid),
                    }
                channels = 4 * mid
    head_dim = HIDDEN // HEADS
    arrays |= {
        "embedding/kernel": r(patch, patch, channels, HIDDEN),
        "embedding/bias": r(HIDDEN),
        "cls": r(1, 1, HIDDEN),
        "Transformer/posembed_input/pos_embedding": r(1, 1 + grid * grid, HIDDEN),
    }
    for layer in range(LAYERS):
        p = f"Transformer/encoderblock_{layer}/"
        attention = p + "MultiHeadDotProductAttention_1/"
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            arrays |= {f"{p}{norm}/scale": r(HIDDEN, offset=1), f"{p}{norm}/bias": r(HIDDEN)}
        for name in ("query", "key", "value"):
            arrays |= {
                f"{attention}{name}/kernel": r(HIDDEN, HEADS, head_dim),
                f"{attention}{name}/bias": r(HEADS, head_dim),
            }
        arrays |= {
            attention + "out/kernel": r(HEADS, head_dim, HIDDEN),
            attention + "out/bias": r(HIDDEN),
            p + "MlpBlock_3/Dense_0/kernel": r(HIDDEN, MLP),
            p + "MlpBlock_3/Dense_0/bias": r(MLP),
            p + "MlpBlock_3/Dense_1/kernel": r(MLP, HIDDEN),
            p + "MlpBlock_3/Dense_1/bias": r(HIDDEN),
        }
    arrays |= {"Transformer/encoder_norm/scale": r(HIDDEN, offset=1), "Transformer/encoder_norm/bias": r(HIDDEN)}
    if pre_logits:
        arrays |= {"pre_logits/kernel": r(HIDDEN, pre_logits), "pre_logits/bias": r(pre_logits)}
    if classes:
        width = pre_logits or HIDDEN
        zero = np.zeros
        arrays |= {
            "head/kernel": zero((width, classes), np.float32) if zero_head else r(width, classes),
            "head/bias": zero(classes, np.float32) if zero_head else r(classes),
        }
    return arrays


def timm_from_npz(npz_path, image_size, num_classes, hybrid=False):
    """What timm itself makes of the file: its model of the same shape + `load_pretrained` (timm's .npz loader)."""
    sizes = dict(
        embed_dim=HIDDEN,
        depth=LAYERS,
        num_heads=HEADS,
        mlp_ratio=MLP / HIDDEN,
        img_size=image_size,
        num_classes=num_classes,
    )
    if hybrid:
        backbone = tiny_timm_resnetv2((2, 1), (32, 64), 8, 4)
        model = _create_vision_transformer_hybrid("vit_base_r50_s16_224", backbone=backbone, **sizes)
    else:
        model = timm.create_model("vit_base_patch16_224", patch_size=8, **sizes)
    model.load_pretrained(str(npz_path))
    return model.eval()


def run_jax(npz_path, output, variant, *extra):
    return main(["jax", str(npz_path), str(output), "--variant-json", json.dumps(variant), *extra])


@pytest.mark.parametrize("hybrid", [False, True], ids=["ViT-B_16-like", "R50+ViT-B_16-like"])
def test_jax_classifier_matches_timm_npz_loader(tmp_path, hybrid):
    npz_path = tmp_path / "checkpoint.npz"
    arrays = jax_arrays(patch=1 if hybrid else 8, resnet=(8, (2, 1)) if hybrid else None)
    np.savez(npz_path, **arrays)
    # 48 px: the checkpoint's 4x4 position grid is resized to 6x6 on both sides.
    assert run_jax(npz_path, tmp_path / "out", TINY_HYBRID if hybrid else TINY_VIT, "--image-size", "48") == 0
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert type(model).__name__ == ("ViTHybridForImageClassification" if hybrid else "ViTForImageClassification")
    reference = timm_from_npz(npz_path, 48, 5, hybrid)
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert max_diff(reference(pixels), model(pixels).logits) < TOLERANCE
    # the classifier is the checkpoint's head, transposed
    assert torch.equal(model.classifier.weight, torch.from_numpy(arrays["head/kernel"]).t())


def test_jax_in21k_zero_head_becomes_feature_extractor_with_pre_logits_pooler(tmp_path):
    npz_path = tmp_path / "in21k.npz"
    arrays = jax_arrays(seed=1, classes=7, pre_logits=HIDDEN, zero_head=True)
    np.savez(npz_path, **arrays)
    assert run_jax(npz_path, tmp_path / "out", TINY_VIT) == 0
    model = AutoModel.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert type(model).__name__ == "ViTModel" and model.config.image_size == 32
    reference = timm_from_npz(npz_path, 32, 0)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = reference.forward_features(pixels)
        outputs = model(pixels)
    assert max_diff(features, outputs.last_hidden_state) < TOLERANCE
    # the original model's representation layer: Dense then tanh on the class token
    pooled = torch.tanh(
        features[:, 0] @ torch.from_numpy(arrays["pre_logits/kernel"]) + torch.from_numpy(arrays["pre_logits/bias"])
    )
    assert max_diff(pooled, outputs.pooler_output) < TOLERANCE


def test_jax_refuses_wrong_variant_and_broken_files(tmp_path, capsys):
    npz_path = tmp_path / "tiny.npz"
    np.savez(npz_path, **jax_arrays())
    assert main(["jax", str(npz_path), str(tmp_path / "a"), "--variant", "ViT-B_16"]) == 1
    assert "not a ViT-B_16" in capsys.readouterr().err
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(npz_path.read_bytes()[: npz_path.stat().st_size // 2])
    assert run_jax(truncated, tmp_path / "b", TINY_VIT) == 1
    assert "cannot read" in capsys.readouterr().err
    unknown = tmp_path / "extra.npz"
    np.savez(unknown, **jax_arrays(), **{"Transformer/encoderblock_0/LayerScale/gamma": np.ones(HIDDEN, np.float32)})
    assert run_jax(unknown, tmp_path / "c", TINY_VIT) == 1
    assert "LayerScale/gamma" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


# ---------------------------------------------------------------- facebookresearch/detr


def original_detr_state_dict(d_model=32, heads=2, encoder_layers=1, decoder_layers=2, ffn=64, queries=5, classes=4):
    """An original DETR-R50 state dict: torchvision's ResNet-50 body and PyTorch's own Transformer layers."""
    generator = torch.Generator().manual_seed(0)

    def randn(shape, scale=0.2, offset=0.0):
        return offset + scale * torch.randn(shape, generator=generator)

    state_dict = {}
    for key, value in torchvision.models.resnet50(weights=None).state_dict().items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue  # DETR's IntermediateLayerGetter drops the classifier; FrozenBatchNorm2d has no counter
        if key.endswith("running_var") or (value.dim() == 1 and key.endswith("weight")):
            value = 0.5 + torch.rand(value.shape, generator=generator)
        elif key.endswith(("running_mean", "bias")):
            value = randn(value.shape, 0.1)
        state_dict["backbone.0.body." + key] = value
    layer_kinds = (
        ("encoder", encoder_layers, torch.nn.TransformerEncoderLayer),
        ("decoder", decoder_layers, torch.nn.TransformerDecoderLayer),
    )
    for part, count, layer_class in layer_kinds:
        for index in range(count):
            for key, value in layer_class(d_model, heads, ffn).state_dict().items():
                offset = 1.0 if "norm" in key and key.endswith("weight") else 0.0
                state_dict[f"transformer.{part}.layers.{index}.{key}"] = randn(value.shape, offset=offset)
    state_dict |= {
        "transformer.decoder.norm.weight": randn(d_model, 0.1, 1.0),
        "transformer.decoder.norm.bias": randn(d_model),
        "input_proj.weight": randn((d_model, 2048, 1, 1), 0.05),
        "input_proj.bias": randn(d_model),
        "query_embed.weight": randn((queries, d_model), 1.0),
        "class_embed.weight": randn((classes + 1, d_model)),
        "class_embed.bias": randn(classes + 1),
    }
    for index, (fan_in, fan_out) in enumerate(((d_model, d_model), (d_model, d_model), (d_model, 4))):
        state_dict |= {
            f"bbox_embed.layers.{index}.weight": randn((fan_out, fan_in), 0.3),
            f"bbox_embed.layers.{index}.bias": randn(fan_out, 0.1),
        }
    return state_dict


def _detr_batch():
    pixel_values, pixel_mask = torch.randn(2, 3, 64, 96), torch.ones(2, 64, 96, dtype=torch.long)
    pixel_mask[1, 40:] = 0
    return dict(pixel_values=pixel_values, pixel_mask=pixel_mask)


def test_detr_original_checkpoint_matches_transformers(tmp_path):
    state_dict = original_detr_state_dict()
    checkpoint = tmp_path / "detr.pth"
    # the released files carry the training options as an argparse.Namespace next to the weights
    torch.save({"model": state_dict, "args": argparse.Namespace(nheads=2, dilation=False, aux_loss=False)}, checkpoint)
    assert main(["detr", str(checkpoint), str(tmp_path / "out")]) == 0
    model = AutoModelForObjectDetection.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert model.config.dilation is False and model.config.num_labels == 4
    architecture = detr_to_tritonvision.read_architecture(state_dict, argparse.Namespace(nheads=2))
    reference = detr_to_tritonvision.build_transformers_reference(state_dict, architecture)
    batch = _detr_batch()
    with torch.no_grad():
        expected, ours = reference(**batch), model(**batch)
    assert max_diff(expected.logits, ours.logits) < TOLERANCE
    assert max_diff(expected.pred_boxes, ours.pred_boxes) < TOLERANCE
    # cross-attention keys are the middle third of the fused projection
    in_proj = state_dict["transformer.decoder.layers.1.multihead_attn.in_proj_weight"]
    assert torch.equal(model.model.decoder.layers[1].encoder_attn.k_proj.weight, in_proj[32:64])


def test_detr_dc5_conversion_matches_transformers():
    """DC5 (dilated last stage) in memory: the flag changes the outputs, and both sides agree with it."""
    state_dict = original_detr_state_dict(decoder_layers=1)
    dilated, architecture = detr_to_tritonvision.convert_original(state_dict, num_heads=2, dilation=True)
    assert architecture["dilation"] and dilated.config.output_stride == 16
    reference = detr_to_tritonvision.build_transformers_reference(state_dict, architecture)
    plain, _ = detr_to_tritonvision.convert_original(state_dict, num_heads=2, dilation=False)
    batch = _detr_batch()
    with torch.no_grad():
        expected, ours, undilated = reference(**batch), dilated(**batch), plain(**batch)
    assert max_diff(expected.logits, ours.logits) < TOLERANCE
    assert max_diff(expected.pred_boxes, ours.pred_boxes) < TOLERANCE
    assert (undilated.logits - ours.logits).abs().max() > 1e-3


# ---------------------------------------------------------------- facebookresearch/deit


def deit_checkpoint(tmp_path, name="deit_base_distilled_patch16_224"):
    model = timm.create_model(
        name, embed_dim=HIDDEN, depth=LAYERS, num_heads=HEADS, img_size=32, patch_size=8, num_classes=5
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.2 * torch.randn_like(parameter))
    path = tmp_path / f"{name}.pth"
    torch.save({"model": model.state_dict(), "epoch": 299}, path)
    return model.eval(), path


def test_deit_distilled_checkpoint_matches_timm(tmp_path):
    reference, checkpoint = deit_checkpoint(tmp_path)
    assert main(["deit", str(checkpoint), str(tmp_path / "out"), "--num-heads", str(HEADS)]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    # `import tritonvision` registers DeiTForImageClassification for the config: load the folder's own class
    model_class = get_class_from_dynamic_module(config["auto_map"]["AutoModelForImageClassification"], tmp_path / "out")
    model = model_class.from_pretrained(tmp_path / "out").eval()
    assert type(model).__name__ == "DeiTForImageClassificationWithTeacher"
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = reference.forward_features(pixels)
        outputs = model(pixels)
    assert max_diff(reference(pixels), outputs.logits) < TOLERANCE
    assert max_diff(reference.head_dist(features[:, 1]), outputs.distillation_logits) < TOLERANCE


# ---------------------------------------------------------------- bad inputs of the .pth readers


class NotWeights:
    """A pickled object that is not a tensor: `weights_only=True` refuses to build it."""


@pytest.mark.parametrize("source", ["detr", "deit"])
def test_pth_readers_refuse_broken_and_foreign_checkpoints(tmp_path, capsys, source):
    _, deit_path = deit_checkpoint(tmp_path)
    detr_path = tmp_path / "detr.pth"
    torch.save({"model": original_detr_state_dict(encoder_layers=1, decoder_layers=1)}, detr_path)
    truncated = tmp_path / "truncated.pth"
    own = detr_path if source == "detr" else deit_path
    truncated.write_bytes(own.read_bytes()[: own.stat().st_size // 2])
    not_state_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_state_dict)
    strings = tmp_path / "strings.pth"
    torch.save({"model": {"conv1.weight": "not a tensor"}}, strings)
    objects = tmp_path / "objects.pth"
    torch.save({"model": NotWeights()}, objects)
    other = deit_path if source == "detr" else detr_path
    cases = [
        (truncated, "cannot read"),
        (not_state_dict, "does not hold a state dict"),
        (strings, "not a state dict of named tensors"),
        (objects, "cannot read"),
        (other, "missing tensors"),
    ]
    for index, (path, message) in enumerate(cases):
        output = tmp_path / f"out{index}"
        assert main([source, str(path), str(output)]) == 1
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error, error
        assert not output.exists()


# ---------------------------------------------------------------- stock Transformers folders

TINY_STOCK = dict(
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=MLP,
    image_size=32,
    patch_size=8,
    num_labels=3,
)


@pytest.mark.parametrize("architecture", ["ViTForImageClassification", "DeiTForImageClassificationWithTeacher"])
def test_hf_stock_folder_becomes_remote_code_folder(tmp_path, architecture):
    config_class = transformers.DeiTConfig if architecture.startswith("DeiT") else transformers.ViTConfig
    stock = getattr(transformers, architecture)(config_class(**TINY_STOCK))
    with torch.no_grad():
        for parameter in stock.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    stock.save_pretrained(tmp_path / "stock")
    assert main(["hf", str(tmp_path / "stock"), str(tmp_path / "out")]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"].startswith("tritonvision-") and "auto_map" in config
    model_class = get_class_from_dynamic_module(config["auto_map"]["AutoModelForImageClassification"], tmp_path / "out")
    model = model_class.from_pretrained(tmp_path / "out").eval()
    assert type(model).__name__ == architecture
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(stock.eval()(pixels).logits, model(pixels).logits) < TOLERANCE


def test_hf_vit_hybrid_4x_layout_is_checked_against_timm(tmp_path):
    backbone = tiny_timm_resnetv2((2, 1), (32, 64), 8, 4)
    timm_model = _create_vision_transformer_hybrid(
        "vit_base_r50_s16_224",
        backbone=backbone,
        embed_dim=HIDDEN,
        depth=LAYERS,
        num_heads=HEADS,
        mlp_ratio=2.0,
        img_size=32,
        num_classes=3,
    )
    with torch.no_grad():
        for name, parameter in timm_model.named_parameters():
            parameter.copy_(
                (1.0 if "norm" in name and name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(parameter)
            )
    timm_model.eval()
    # A Transformers 4.x ViT-hybrid folder: 4.x tensor names, `model_type: vit-hybrid`, a nested BiT config.
    folder = tmp_path / "stock_hybrid"
    folder.mkdir()
    tensors = timm_to_tritonvision.convert_state_dict(timm_model.state_dict(), timm_to_tritonvision.VIT_HYBRID)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "vit-hybrid",
                "architectures": ["ViTHybridForImageClassification"],
                "hidden_size": HIDDEN,
                "num_hidden_layers": LAYERS,
                "num_attention_heads": HEADS,
                "intermediate_size": MLP,
                "image_size": 32,
                "patch_size": 1,
                "layer_norm_eps": 1e-6,
                "backbone_featmap_shape": [1, 64, 4, 4],
                "id2label": {"0": "a", "1": "b", "2": "c"},
                "label2id": {"a": 0, "b": 1, "c": 2},
                "backbone_config": {
                    "model_type": "bit",
                    "embedding_size": 8,
                    "hidden_sizes": [32, 64],
                    "depths": [2, 1],
                    "layer_type": "bottleneck",
                    "global_padding": "same",
                    "num_groups": 4,
                    "embedding_dynamic_padding": True,
                    "out_features": ["stage2"],
                },
            }
        )
    )
    assert main(["hf", str(folder), str(tmp_path / "out")]) == 0
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(timm_model(pixels), model(pixels).logits) < TOLERANCE


def test_hf_refuses_unsupported_architecture(tmp_path, capsys):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    assert main(["hf", str(folder), str(tmp_path / "out")]) == 1
    assert "not supported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
