"""timm -> tritonvision: ViT, DeiT (plain and distilled) and ViT-hybrid (R50 + ViT) checkpoints.

The mapping itself is pure: `detect_variant` recognises the family from telltale tensor names and
`convert_state_dict` renames a timm state dict with the declarative tables below (fused qkv split into
query/key/value, `pre_logits` into the pooler, a missing or all-zero head meaning a feature extractor).
`convert` builds the timm model, derives our config from the model's attributes and the processor from its
`pretrained_cfg`, then hands both models to `folder_writer.verify_then_write`, which writes nothing unless
our model reproduces timm's outputs.

Subcommand: `tritonvision-convert timm <timm-model-name> <output-dir> [--checkpoint FILE] [--no-verify]
[--image-size N] [--timm-kwargs JSON] [--card NAME] [--overwrite]`.
"""

import json
import math
import re
from pathlib import Path

import torch
from torch import nn

from ..modeling.bit_backbone import make_divisible
from .checkpoint_io import random_pixels, rename
from .folder_writer import DEFAULT_TOLERANCE, ConversionError, add_output_arguments, output_options, verify_then_write

SOURCE = "timm"
HELP = "convert a timm ViT / DeiT / ViT-hybrid checkpoint (verified against timm before writing)"

VIT, DEIT, DEIT_DISTILLED, VIT_HYBRID = "vit", "deit", "deit-distilled", "vit-hybrid"
VARIANTS = (VIT, DEIT, DEIT_DISTILLED, VIT_HYBRID)

# Transformer body, common to every variant: (timm name pattern, our name without the base-model prefix).
BODY_RENAMES = (
    (r"cls_token", "embeddings.cls_token"),
    (r"pos_embed", "embeddings.position_embeddings"),
    (r"patch_embed\.proj\.(weight|bias)", r"embeddings.patch_embeddings.projection.\1"),
    (r"blocks\.(\d+)\.norm1\.(weight|bias)", r"encoder.layer.\1.layernorm_before.\2"),
    (r"blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"encoder.layer.\1.attention.output.dense.\2"),
    (r"blocks\.(\d+)\.norm2\.(weight|bias)", r"encoder.layer.\1.layernorm_after.\2"),
    (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"encoder.layer.\1.intermediate.dense.\2"),
    (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"encoder.layer.\1.output.dense.\2"),
    (r"norm\.(weight|bias)", r"layernorm.\1"),
    (r"pre_logits\.fc\.(weight|bias)", r"pooler.dense.\1"),
)
# The fused projection `blocks.N.attn.qkv` is split in three, in this order.
QKV_PATTERN = r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)"
QKV_TARGETS = ("query", "key", "value")

_BIT = "embeddings.patch_embeddings.backbone.bit"
VARIANT_RENAMES = {
    VIT: (),
    DEIT: (),
    DEIT_DISTILLED: ((r"dist_token", "embeddings.distillation_token"),),
    VIT_HYBRID: (
        (r"patch_embed\.backbone\.stem\.conv\.weight", f"{_BIT}.embedder.convolution.weight"),
        (r"patch_embed\.backbone\.stem\.norm\.(weight|bias)", rf"{_BIT}.embedder.norm.\1"),
        (
            (
                r"patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\."
                r"(conv[123]\.weight|norm[123]\.(?:weight|bias)|downsample\.(?:conv\.weight|norm\.(?:weight|bias)))"
            ),
            rf"{_BIT}.encoder.stages.\1.layers.\2.\3",
        ),
        (r"patch_embed\.backbone\.norm\.(weight|bias)", rf"{_BIT}.norm.\1"),
    ),
}
# Classification heads (top-level names, outside the base model).
HEAD_RENAMES = {
    VIT: ((r"head\.(weight|bias)", r"classifier.\1"),),
    DEIT: ((r"head\.(weight|bias)", r"classifier.\1"),),
    DEIT_DISTILLED: (
        (r"head\.(weight|bias)", r"cls_classifier.\1"),
        (r"head_dist\.(weight|bias)", r"distillation_classifier.\1"),
    ),
    VIT_HYBRID: ((r"head\.(weight|bias)", r"classifier.\1"),),
}
# timm's plain DeiT has no distillation token, so it is a ViT (the Hub stores facebook/deit-*-patch16-224 as ViT).
BASE_PREFIX = {VIT: "vit.", DEIT: "vit.", DEIT_DISTILLED: "deit.", VIT_HYBRID: "vit."}
HEAD_KEYS = {VIT: ("head",), DEIT: ("head",), DEIT_DISTILLED: ("head", "head_dist"), VIT_HYBRID: ("head",)}

# timm names whose Hub counterpart has a model card here (`model_cards/<repo-name>.md`).
HUB_REPO_NAMES = {
    "vit_base_patch16_224": "vit-base-patch16-224",
    "vit_base_patch16_224.augreg_in21k": "vit-base-patch16-224-in21k",
    "vit_base_patch16_224.orig_in21k": "vit-base-patch16-224-in21k",
    "vit_base_patch16_384": "vit-base-patch16-384",
    "vit_base_patch32_224": "vit-base-patch32-224-in21k",
    "vit_base_patch32_384": "vit-base-patch32-384",
    "vit_large_patch16_224": "vit-large-patch16-224",
    "vit_large_patch16_384": "vit-large-patch16-384",
    "deit_tiny_patch16_224": "deit-tiny-patch16-224",
    "deit_small_patch16_224": "deit-small-patch16-224",
    "deit_base_patch16_224": "deit-base-patch16-224",
    "deit_base_patch16_384": "deit-base-patch16-384",
    "deit_tiny_distilled_patch16_224": "deit-tiny-distilled-patch16-224",
    "deit_small_distilled_patch16_224": "deit-small-distilled-patch16-224",
    "deit_base_distilled_patch16_224": "deit-base-distilled-patch16-224",
    "deit_base_distilled_patch16_384": "deit-base-distilled-patch16-384",
    "vit_base_r50_s16_384": "vit-hybrid-base-bit-384",
}

RESAMPLE_NAMES = {
    "bicubic": "BICUBIC",
    "bilinear": "BILINEAR",
    "nearest": "NEAREST",
    "lanczos": "LANCZOS",
    "random": "BICUBIC",
}


def detect_variant(state_dict: dict, model_name: str | None = None) -> str:
    """The family of a timm state dict, from telltale tensors (DeiT without distillation only by name)."""
    if "patch_embed.backbone.stem.conv.weight" in state_dict:
        return VIT_HYBRID
    if "dist_token" in state_dict:
        return DEIT_DISTILLED
    if "cls_token" in state_dict and "patch_embed.proj.weight" in state_dict:
        return DEIT if model_name and model_name.split("/")[-1].startswith("deit") else VIT
    raise ConversionError(
        "not a timm ViT / DeiT / ViT-hybrid state dict (no cls_token + patch_embed.proj, dist_token or "
        "patch_embed.backbone.stem)"
    )


def has_classifier(state_dict: dict, variant: str) -> bool:
    """A head is present and not all zeros (the in21k feature extractors ship a zeroed head, or none)."""
    weights = [state_dict.get(f"{name}.weight") for name in HEAD_KEYS[variant]]
    return any(w is not None and w.numel() > 0 and (w.is_meta or bool(torch.any(w != 0))) for w in weights)


def convert_state_dict(timm_state_dict: dict, variant: str | None = None, model_name: str | None = None) -> dict:
    """Rename a timm state dict to our on-disk names; raise `ConversionError` listing tensors we cannot place.

    With a classifier the body gets the base-model prefix (`vit.` / `deit.`) and the head becomes
    `classifier` (`cls_classifier` + `distillation_classifier` for distilled DeiT); without one (absent or
    all zeros) the result is a bare base model and the head tensors are dropped.
    """
    variant = variant or detect_variant(timm_state_dict, model_name)
    if variant not in VARIANTS:
        raise ConversionError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    classify = has_classifier(timm_state_dict, variant)
    if classify and "pre_logits.fc.weight" in timm_state_dict:
        raise ConversionError("a checkpoint with both pre_logits and a classifier head has no tritonvision class")
    prefix = BASE_PREFIX[variant] if classify else ""
    body_table = BODY_RENAMES + VARIANT_RENAMES[variant]
    head_names = {f"{name}.{kind}" for name in HEAD_KEYS[variant] for kind in ("weight", "bias")}
    converted, unplaced = {}, []
    for key, tensor in timm_state_dict.items():
        qkv = re.fullmatch(QKV_PATTERN, key)
        if qkv:
            layer, kind = qkv.groups()
            if tensor.shape[0] % 3:
                raise ConversionError(f"{key} has {tensor.shape[0]} rows, not a multiple of 3")
            for target, part in zip(QKV_TARGETS, tensor.chunk(3, dim=0), strict=True):
                converted[f"{prefix}encoder.layer.{layer}.attention.attention.{target}.{kind}"] = part.clone()
            continue
        if key in head_names:
            if classify:
                converted[rename(key, HEAD_RENAMES[variant])] = tensor
            continue
        name = rename(key, body_table)
        if name is None:
            unplaced.append(key)
        else:
            converted[prefix + name] = tensor
    if unplaced:
        raise ConversionError(f"{len(unplaced)} timm tensors have no counterpart in tritonvision: {_listing(unplaced)}")
    return converted


def _listing(names, limit: int = 25) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConversionError(f"unsupported timm model option: {message}")


def _activation_name(module: nn.Module) -> str:
    if isinstance(module, nn.GELU):
        return "gelu" if module.approximate == "none" else "gelu_pytorch_tanh"
    names = {nn.ReLU: "relu", nn.SiLU: "silu", nn.Tanh: "tanh"}
    for cls, name in names.items():
        if isinstance(module, cls):
            return name
    raise ConversionError(f"unsupported timm model option: MLP activation {type(module).__name__}")


def _bit_backbone_config(backbone: nn.Module) -> dict:
    """The BiT `backbone_config` of a timm ResNetV2 (non-pre-activation, "SAME" weight-standardised convs)."""
    from timm.layers import StdConv2dSame

    stem_conv, stem_pool = backbone.stem.conv, getattr(backbone.stem, "pool", None)
    _require(isinstance(stem_conv, StdConv2dSame), "hybrid backbone without 'same' padded StdConv2dSame stem")
    _require(stem_pool is not None and "Same" in type(stem_pool).__name__, "hybrid stem pool without 'same' padding")
    blocks = [block for stage in backbone.stages for block in stage.blocks]
    _require(all(type(b).__name__ == "Bottleneck" for b in blocks), "hybrid backbone blocks other than Bottleneck")
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    _require(all(isinstance(c, StdConv2dSame) and c.eps == 1e-8 for c in convs), "backbone conv eps other than 1e-8")
    norms = [m for m in backbone.modules() if isinstance(m, nn.GroupNorm)]
    _require(
        len({n.num_groups for n in norms}) == 1 and all(n.eps == 1e-5 for n in norms),
        "backbone GroupNorms with mixed groups or eps other than 1e-5",
    )
    _require(isinstance(backbone.norm, nn.Identity), "backbone with a final norm")
    widths = [stage.blocks[0].conv3.out_channels for stage in backbone.stages]
    depths = [len(stage.blocks) for stage in backbone.stages]
    for stage in backbone.stages:
        block = stage.blocks[0]
        _require(
            block.conv1.out_channels == make_divisible(block.conv3.out_channels * 0.25),
            "bottleneck ratio other than 0.25",
        )
    strides = [stage.blocks[0].conv2.stride[0] for stage in backbone.stages]
    _require(strides == [1] + [2] * (len(strides) - 1), f"backbone stage strides {strides}")
    return {
        "model_type": "bit",
        "num_channels": stem_conv.in_channels,
        "embedding_size": stem_conv.out_channels,
        "hidden_sizes": widths,
        "depths": depths,
        "layer_type": "bottleneck",
        "hidden_act": "relu",
        "global_padding": "SAME",
        "num_groups": norms[0].num_groups,
        "embedding_dynamic_padding": True,
        "out_features": [f"stage{len(depths)}"],
    }


def _size(size) -> int | list[int]:
    return size[0] if size[0] == size[1] else list(size)


def _labels(model: nn.Module) -> dict[int, str] | None:
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset is None:
            return None
        info = ImageNetInfo(subset)
        if info.num_classes() != model.num_classes:
            return None
        return {index: info.index_to_description(index) for index in range(model.num_classes)}
    except Exception:  # label names are a nicety; their absence must not stop a conversion
        return None


def config_from_timm(model: nn.Module, variant: str, classify: bool):
    """Our config, read from the timm model's attributes (sizes, eps, activation, image and patch size)."""
    from ..modeling.configuration_deit import DeiTConfig
    from ..modeling.configuration_vit import ViTConfig
    from ..modeling.configuration_vit_hybrid import ViTHybridConfig

    block = model.blocks[0]
    _require(model.cls_token is not None, "no class token")
    _require(model.global_pool == "token", f"global_pool={model.global_pool!r} (only the class token is supported)")
    _require(not getattr(model, "no_embed_class", False), "no_embed_class")
    _require(getattr(model, "num_reg_tokens", 0) == 0, "register tokens")
    for name in ("norm_pre", "fc_norm"):
        _require(isinstance(getattr(model, name, nn.Identity()), nn.Identity), name)
    for name in ("ls1", "ls2"):
        _require(isinstance(getattr(block, name, nn.Identity()), nn.Identity), "LayerScale (init_values)")
    for name in ("q_norm", "k_norm", "norm"):
        _require(isinstance(getattr(block.attn, name, nn.Identity()), nn.Identity), f"attention {name}")
    _require(isinstance(getattr(block.mlp, "norm", nn.Identity()), nn.Identity), "MLP norm")
    _require(model.patch_embed.proj.bias is not None, "patch embedding without bias")
    eps = model.norm.eps
    _require(all(b.norm1.eps == eps and b.norm2.eps == eps for b in model.blocks), "mixed layer-norm eps")
    fields = dict(
        hidden_size=model.embed_dim,
        num_hidden_layers=len(model.blocks),
        num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.fc1.out_features,
        hidden_act=_activation_name(block.mlp.act),
        layer_norm_eps=eps,
        image_size=_size(model.patch_embed.img_size),
        patch_size=model.patch_embed.patch_size[0],
        num_channels=model.patch_embed.proj.in_channels
        if variant != VIT_HYBRID
        else model.patch_embed.backbone.stem.conv.in_channels,
        qkv_bias=block.attn.qkv.bias is not None,
        encoder_stride=model.patch_embed.patch_size[0],
    )
    _require(model.patch_embed.patch_size[0] == model.patch_embed.patch_size[1], "non-square patches")
    if classify:
        labels = _labels(model) or {index: f"LABEL_{index}" for index in range(model.num_classes)}
        fields["id2label"] = labels
        fields["label2id"] = {label: index for index, label in labels.items()}
    if variant == VIT_HYBRID:
        backbone_config = _bit_backbone_config(model.patch_embed.backbone)
        feature_size = list(model.patch_embed.feature_size)
        shape = [1, model.patch_embed.feature_dim, *feature_size]
        config = ViTHybridConfig(backbone_config=backbone_config, backbone_featmap_shape=shape, **fields)
        return config
    return (DeiTConfig if variant == DEIT_DISTILLED else ViTConfig)(**fields)


def model_class_for(variant: str, classify: bool):
    from ..modeling import modeling_deit, modeling_vit, modeling_vit_hybrid

    table = {
        VIT: (modeling_vit.ViTModel, modeling_vit.ViTForImageClassification),
        DEIT: (modeling_vit.ViTModel, modeling_vit.ViTForImageClassification),
        DEIT_DISTILLED: (modeling_deit.DeiTModel, modeling_deit.DeiTForImageClassificationWithTeacher),
        VIT_HYBRID: (modeling_vit_hybrid.ViTHybridModel, modeling_vit_hybrid.ViTHybridForImageClassification),
    }
    return table[variant][1 if classify else 0]


def processor_from_timm(model: nn.Module, variant: str):
    """Our image processor with timm's evaluation transform: resize by 1/crop_pct, centre crop, mean/std."""
    from timm.data import resolve_data_config
    from transformers.image_utils import PILImageResampling

    from ..modeling.image_processing_deit import DeiTImageProcessor
    from ..modeling.image_processing_vit import ViTImageProcessor
    from ..modeling.image_processing_vit_hybrid import ViTHybridImageProcessor

    data = resolve_data_config({}, model=model)
    height, width = model.patch_embed.img_size
    interpolation = data.get("interpolation", "bicubic")
    if interpolation not in RESAMPLE_NAMES:
        raise ConversionError(f"unsupported timm interpolation {interpolation!r}")
    crop_mode, crop_pct = data.get("crop_mode", "center"), data.get("crop_pct") or 1.0
    settings = dict(
        resample=getattr(PILImageResampling, RESAMPLE_NAMES[interpolation]),
        image_mean=list(data["mean"]),
        image_std=list(data["std"]),
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
    )
    if crop_mode == "squash" or (crop_pct == 1.0 and height != width):
        settings.update(size={"height": height, "width": width}, do_center_crop=False)
    elif crop_mode == "center":
        _require(height == width, "centre crop of a non-square input")
        shortest_edge = math.floor(height / crop_pct)
        settings.update(
            size={"shortest_edge": shortest_edge}, crop_size={"height": height, "width": width}, do_center_crop=True
        )
    else:
        raise ConversionError(f"unsupported timm crop_mode {crop_mode!r}")
    processor_class = {
        VIT: ViTImageProcessor,
        DEIT: DeiTImageProcessor,
        DEIT_DISTILLED: DeiTImageProcessor,
        VIT_HYBRID: ViTHybridImageProcessor,
    }[variant]
    return processor_class(**settings)


def timm_hybrid_backbone(depths, channels, stem_channels: int, num_groups: int, in_chans: int = 3) -> nn.Module:
    """timm's ResNetV2 of the ViT-hybrid kind (`vit_base_r50_s16_*`): same-padded weight-standardised convs,
    GroupNorm, no pre-activation, no head. The reference the hybrid converters compare against."""
    from functools import partial

    from timm.layers import GroupNormAct, StdConv2dSame
    from timm.models.resnetv2 import ResNetV2

    return ResNetV2(
        layers=tuple(depths),
        channels=tuple(channels),
        stem_chs=stem_channels,
        num_classes=0,
        global_pool="",
        in_chans=in_chans,
        preact=False,
        stem_type="same",
        conv_layer=partial(StdConv2dSame, eps=1e-8),
        norm_layer=partial(GroupNormAct, num_groups=num_groups),
    )


def load_checkpoint_file(path: str | Path) -> dict:
    """A state dict from a .safetensors / .pth / .bin file (timm's reader: `state_dict`/`model` wrappers too)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    from timm.models import load_state_dict

    return load_state_dict(str(path))


def check_checkpoint_matches(model: nn.Module, state_dict: dict) -> None:
    """Raise `ConversionError` listing missing, unexpected and wrongly shaped tensors."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} (model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_listing(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {_listing(shapes)}")
    if problems:
        raise ConversionError("checkpoint does not match the timm model; " + "; ".join(problems))


def build_timm_model(name: str, checkpoint=None, image_size: int | None = None, timm_kwargs: dict | None = None):
    """The timm model in eval mode, float32: from `checkpoint` when given, else timm's pretrained weights."""
    try:
        import timm
    except ImportError as error:
        raise ConversionError("timm is needed to convert timm checkpoints: pip install timm") from error
    if not timm.is_model(name):
        raise ConversionError(f"unknown timm model {name!r} (see timm.list_models())")
    kwargs = dict(timm_kwargs or {})
    if image_size:
        kwargs["img_size"] = image_size
    model = timm.create_model(name, pretrained=checkpoint is None, **kwargs)
    if checkpoint is not None:
        state_dict = load_checkpoint_file(checkpoint)
        check_checkpoint_matches(model, state_dict)
        model.load_state_dict(state_dict)
    return model.eval().float()


def convert_timm_model(timm_model: nn.Module, model_name: str | None = None):
    """(our model with timm's weights, variant, classify): no I/O."""
    state_dict = timm_model.state_dict()
    variant = detect_variant(state_dict, model_name)
    classify = has_classifier(state_dict, variant)
    config = config_from_timm(timm_model, variant, classify)
    model_class = model_class_for(variant, classify)
    kwargs = {} if classify else {"add_pooling_layer": "pre_logits.fc.weight" in state_dict}
    model = model_class(config, **kwargs).eval()
    converted = convert_state_dict(state_dict, variant)
    expected = model.state_dict()
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    if missing or unexpected:
        raise ConversionError(
            f"converted tensors do not fit {model_class.__name__}: missing {_listing(missing)}; "
            f"unexpected {_listing(unexpected)}"
        )
    try:
        model.load_state_dict(converted, strict=True)
    except RuntimeError as error:
        raise ConversionError(f"converted tensors do not fit {model_class.__name__}: {error}") from error
    return model, variant, classify


def comparison_for(timm_model: nn.Module, model: nn.Module, classify: bool, batch_size: int = 2, seed: int = 0):
    """The `compare` callable of `verify_then_write`: features (and logits) of both on one random batch."""

    def compare():
        height, width = timm_model.patch_embed.img_size
        pixels = random_pixels(batch_size, model.config.num_channels, height, width, seed)
        reference_features = timm_model.forward_features(pixels)
        base = getattr(model, model.base_model_prefix) if classify else model
        pairs = [("last_hidden_state", reference_features, base(pixels).last_hidden_state)]
        if classify:
            pairs.append(("logits", timm_model.forward_head(reference_features), model(pixels).logits))
        return pairs

    return compare


def convert(
    model_name: str,
    output_dir,
    checkpoint=None,
    verify: bool = True,
    image_size: int | None = None,
    timm_kwargs: dict | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    card_name: str | None = None,
    overwrite: bool = False,
    log=print,
) -> Path:
    """Build, convert, verify against timm, write. Raises `ConversionError` (nothing written) on any failure."""
    timm_model = build_timm_model(model_name, checkpoint, image_size, timm_kwargs)
    model, variant, classify = convert_timm_model(timm_model, model_name)
    log(f"{model_name}: {variant} -> {type(model).__name__}")
    processor = processor_from_timm(timm_model, variant)
    compare = comparison_for(timm_model, model, classify) if verify else None
    card_name = card_name or HUB_REPO_NAMES.get(model_name)
    return verify_then_write(model, processor, output_dir, compare, tolerance, card_name, overwrite, log)


def add_arguments(parser) -> None:
    parser.add_argument("model_name", help="timm model name, with or without a pretrained tag (vit_base_patch16_224)")
    add_output_arguments(parser, "timm", card_default="from the timm name")
    parser.add_argument("--checkpoint", help="local timm state dict (.safetensors/.pth); without it timm downloads")
    parser.add_argument("--image-size", type=int, help="input resolution to build the model at (timm img_size)")
    parser.add_argument(
        "--timm-kwargs",
        type=json.loads,
        default=None,
        help="extra timm.create_model keyword arguments as JSON, e.g. '{\"depth\": 2}'",
    )


def run(args) -> int:
    convert(
        args.model_name,
        args.output_dir,
        checkpoint=args.checkpoint,
        image_size=args.image_size,
        timm_kwargs=args.timm_kwargs,
        **output_options(args),
    )
    return 0
