"""Utilities shared by test files: tiny configs, and running code where `tritonvision` cannot be imported."""

import subprocess
import sys
import textwrap

BLOCK_TRITONVISION = textwrap.dedent(
    """
    import importlib.abc, sys
    class _BlockTritonvision(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "tritonvision" or name.startswith("tritonvision."):
                raise ImportError("tritonvision is blocked in this process")
    sys.meta_path.insert(0, _BlockTritonvision())
    """
)

TINY_VIT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8
)


def run_without_tritonvision(code: str, cwd: str, timeout: int = 240) -> str:
    """Run `code` in a fresh interpreter whose imports of `tritonvision` fail; return its stdout.

    The subprocess starts in `cwd` (a temporary folder) so nothing of the source tree is importable.
    """
    script = BLOCK_TRITONVISION + textwrap.dedent(code)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}")
    return result.stdout


TINY_BIT_BACKBONE = dict(
    embedding_size=16,
    hidden_sizes=[32, 64, 128],
    depths=[2, 1, 2],
    num_groups=8,
    global_padding="same",
    layer_type="bottleneck",
    embedding_dynamic_padding=True,
    out_features=["stage3"],
)

TINY_DETR = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    num_queries=10,
    num_labels=5,
    use_pretrained_backbone=False,
    dropout=0.0,
    backbone="resnet18",
)


def tiny_hybrid_config(**overrides):
    import tritonvision

    fields = dict(TINY_VIT, image_size=64, patch_size=1, backbone_config=TINY_BIT_BACKBONE, num_labels=5)
    return tritonvision.ViTHybridConfig(**{**fields, **overrides})


def tiny_detr_config(**overrides):
    import tritonvision

    return tritonvision.DetrConfig(**{**TINY_DETR, **overrides})


def tiny_timm_resnetv2(layers, channels, stem_chs: int, num_groups: int):
    """timm's ResNetV2 as `vit_base_r50_s16_*` builds it (same-padded StdConv, GroupNorm, no pre-activation),
    at test size: the independent reference for our BiT backbone and the hybrid converters."""
    from functools import partial

    from timm.layers import GroupNormAct, StdConv2dSame
    from timm.models.resnetv2 import ResNetV2

    return ResNetV2(
        layers=layers,
        channels=channels,
        stem_chs=stem_chs,
        num_classes=0,
        global_pool="",
        preact=False,
        stem_type="same",
        conv_layer=partial(StdConv2dSame, eps=1e-8),
        norm_layer=partial(GroupNormAct, num_groups=num_groups),
    )
