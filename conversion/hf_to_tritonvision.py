"""Stock Transformers checkpoints (ViT, DeiT, DETR, and the 4.x ViT-hybrid) -> self-contained tritonvision folders.

Our classes read the stock on-disk layout directly, so converting means: load the folder with our class
(every tensor must be used and none missing), check it against the stock class on one random batch, and
save it with our code files (`trust_remote_code` folder, loadable without tritonvision installed).
Transformers 5 has no ViT-hybrid; a hybrid is checked against timm's VisionTransformer + ResNetV2 built
from the config and given our tensors through `timm_state_dict_from_hybrid` (the reverse of timm's names).

Subcommand: `tritonvision-convert hf <folder-or-repo-id> <output-dir> [--no-verify] [--card NAME]
[--overwrite]`.
"""

import json
import re
from pathlib import Path

import torch

from .checkpoint_io import listing, random_pixels, rename
from .folder_writer import DEFAULT_TOLERANCE, ConversionError, add_output_arguments, output_options, verify_then_write
from .timm_to_tritonvision import comparison_for, timm_hybrid_backbone

SOURCE = "hf"
HELP = "convert a stock Transformers ViT / DeiT / DETR / ViT-hybrid folder or Hub repo (verified before writing)"

# architecture -> (our module, our processor class, the reference: "transformers" or "timm")
ARCHITECTURES = {
    "ViTModel": ("modeling_vit", "image_processing_vit.ViTImageProcessor", "transformers"),
    "ViTForImageClassification": ("modeling_vit", "image_processing_vit.ViTImageProcessor", "transformers"),
    "DeiTModel": ("modeling_deit", "image_processing_deit.DeiTImageProcessor", "transformers"),
    "DeiTForImageClassification": ("modeling_deit", "image_processing_deit.DeiTImageProcessor", "transformers"),
    "DeiTForImageClassificationWithTeacher": (
        "modeling_deit",
        "image_processing_deit.DeiTImageProcessor",
        "transformers",
    ),
    "DetrModel": ("modeling_detr", "image_processing_detr.DetrImageProcessor", "transformers"),
    "DetrForObjectDetection": ("modeling_detr", "image_processing_detr.DetrImageProcessor", "transformers"),
    "ViTHybridModel": ("modeling_vit_hybrid", "image_processing_vit_hybrid.ViTHybridImageProcessor", "timm"),
    "ViTHybridForImageClassification": (
        "modeling_vit_hybrid",
        "image_processing_vit_hybrid.ViTHybridImageProcessor",
        "timm",
    ),
}
DOWNLOAD_PATTERNS = [
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model.bin",
    "preprocessor_config.json",
    "README.md",
]

# Our ViT-hybrid names (without the `vit.` prefix) -> timm's VisionTransformer + HybridEmbed(ResNetV2) names.
_BIT = r"embeddings\.patch_embeddings\.backbone\.bit\."
HYBRID_TO_TIMM = (
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (_BIT + r"embedder\.convolution\.weight", "patch_embed.backbone.stem.conv.weight"),
    (_BIT + r"embedder\.norm\.(weight|bias)", r"patch_embed.backbone.stem.norm.\1"),
    (_BIT + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)", r"patch_embed.backbone.stages.\1.blocks.\2.\3"),
    (r"encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
    (r"classifier\.(weight|bias)", r"head.\1"),
)
HYBRID_QKV = r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)"


def resolve_source(source: str) -> Path:
    """A local folder as is; anything else is taken as a Hub repo id and downloaded (weights and configs only)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise ConversionError(f"{source} is a file; pass the checkpoint folder (with config.json)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=DOWNLOAD_PATTERNS))
    except Exception as error:  # offline, unknown repo, invalid id: all end the same way for the user
        raise ConversionError(f"{source} is neither a local folder nor a downloadable Hub repo: {error}") from error


def read_config(folder: Path) -> tuple[dict, str]:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConversionError(f"{folder} has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as error:
        raise ConversionError(f"{config_path} is not valid JSON: {error}") from error
    architectures = config.get("architectures") or []
    supported = [name for name in architectures if name in ARCHITECTURES]
    if not supported:
        raise ConversionError(
            f"architectures {architectures} (model_type {config.get('model_type')!r}) are not supported; expected "
            f"one of {', '.join(ARCHITECTURES)}"
        )
    return config, supported[0]


def _import(path: str):
    import importlib

    module_name, _, attribute = path.rpartition(".")
    module = importlib.import_module(f"..modeling.{module_name}" if module_name else "..modeling", __package__)
    return getattr(module, attribute)


def load_ours(folder: Path, architecture: str):
    """Our class on the stock folder; every stock tensor must find its place and none may be missing."""
    model_class = _import(f"{ARCHITECTURES[architecture][0]}.{architecture}")
    try:
        model, info = model_class.from_pretrained(folder, output_loading_info=True)
    except (OSError, ValueError, TypeError, RuntimeError) as error:
        raise ConversionError(f"{folder} does not load as {architecture}: {error}") from error
    problems = {
        kind: info.get(kind) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(kind)
    }
    if problems:
        raise ConversionError(
            f"{folder} does not fit {architecture}: "
            + "; ".join(
                f"{kind.replace('_', ' ')}: {listing([str(k) for k in names])}" for kind, names in problems.items()
            )
        )
    return model.eval().float()


def load_processor(folder: Path, architecture: str):
    processor_class = _import(ARCHITECTURES[architecture][1])
    if not (folder / "preprocessor_config.json").is_file():
        return processor_class()
    try:
        return processor_class.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as error:
        raise ConversionError(f"{folder}/preprocessor_config.json is not understood: {error}") from error


def _image_size(config) -> tuple[int, int]:
    size = config.image_size
    return (size, size) if isinstance(size, int) else tuple(size)


def transformers_comparison(folder: Path, architecture: str, model):
    """Stock Transformers' class on the same folder, both run on one random batch."""
    import transformers

    from . import detr_to_tritonvision

    reference = getattr(transformers, architecture).from_pretrained(folder, attn_implementation="eager").eval()

    def compare():
        if architecture.startswith("Detr"):
            pixel_values, pixel_mask = detr_to_tritonvision.verification_batch()
            inputs = dict(pixel_values=pixel_values, pixel_mask=pixel_mask)
        else:
            height, width = _image_size(model.config)
            inputs = dict(pixel_values=random_pixels(2, model.config.num_channels, height, width))
        expected, ours = reference(**inputs), model(**inputs)
        names = (
            "logits",
            "cls_logits",
            "distillation_logits",
            "pred_boxes",
            "last_hidden_state",
            "pooler_output",
            "encoder_last_hidden_state",
        )
        return [
            (name, getattr(expected, name), getattr(ours, name))
            for name in names
            if getattr(expected, name, None) is not None
        ]

    return compare


def timm_state_dict_from_hybrid(state_dict: dict, prefix: str) -> dict:
    """Our ViT-hybrid tensors under timm's names (query/key/value fused into `qkv`); the pooler is left out."""
    converted, fused, unplaced = {}, {}, []
    for key, tensor in state_dict.items():
        name = key.removeprefix(prefix)
        qkv = re.fullmatch(HYBRID_QKV, name)
        if qkv:
            layer, part, kind = qkv.groups()
            fused.setdefault((layer, kind), {})[part] = tensor
            continue
        if name.startswith("pooler."):
            continue
        target = rename(name, HYBRID_TO_TIMM)
        if target is None:
            unplaced.append(key)
        else:
            converted[target] = tensor
    if unplaced:
        raise ConversionError(f"ViT-hybrid tensors without a timm counterpart: {listing(unplaced)}")
    for (layer, kind), parts in fused.items():
        converted[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in ("query", "key", "value")])
    return converted


def build_timm_hybrid(config, num_classes: int):
    """timm's VisionTransformer on a ResNetV2 matching our config; `ConversionError` where timm has no equivalent."""
    from functools import partial

    from timm.models.vision_transformer_hybrid import _create_vision_transformer_hybrid

    settings = config.bit_settings()
    problems = []
    if settings.layer_type != "bottleneck" or settings.global_padding != "SAME":
        problems.append(f"layer_type {settings.layer_type!r} / global_padding {settings.global_padding!r}")
    if not settings.embedding_dynamic_padding or settings.width_factor != 1:
        problems.append("static stem padding or width_factor != 1")
    if settings.out_indices != [len(settings.depths)] or config.backbone_stride() != 4 * 2 ** (
        len(settings.depths) - 1
    ):
        problems.append(f"out_indices {settings.out_indices} / output_stride {settings.output_stride}")
    if config.hidden_act != "gelu" or not config.qkv_bias:
        problems.append(f"hidden_act {config.hidden_act!r} / qkv_bias {config.qkv_bias}")
    if problems:
        raise ConversionError("no timm reference for this ViT-hybrid (" + "; ".join(problems) + "); pass --no-verify")
    channels = settings.stage_channels()
    backbone = timm_hybrid_backbone(
        settings.depths, channels[1:], channels[0], settings.num_groups, in_chans=settings.num_channels
    )
    patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
    return _create_vision_transformer_hybrid(
        "vit_base_r50_s16_224",
        backbone=backbone,
        patch_size=patch,
        embed_dim=config.hidden_size,
        depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size / config.hidden_size,
        img_size=_image_size(config),
        num_classes=num_classes,
        norm_layer=partial(torch.nn.LayerNorm, eps=config.layer_norm_eps),
    )


def timm_hybrid_comparison(model, classify: bool):
    """timm's hybrid with our tensors, both run on one random batch (features, and logits with a head)."""
    try:
        import timm  # noqa: F401
    except ImportError as error:
        raise ConversionError("verifying a ViT-hybrid needs timm (pip install timm), or pass --no-verify") from error
    from .checkpoint_io import load_into

    reference = build_timm_hybrid(model.config, model.config.num_labels if classify else 0)
    prefix = "vit." if classify else ""
    load_into(reference, timm_state_dict_from_hybrid(model.state_dict(), prefix), "the ViT-hybrid's tensors")
    reference.eval()
    return comparison_for(reference, model, classify)


def convert(
    source: str,
    output_dir,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    card_name: str | None = None,
    overwrite: bool = False,
    log=print,
) -> Path:
    """Load with our class, verify against stock Transformers (or timm for the hybrid), write."""
    folder = resolve_source(source)
    _, architecture = read_config(folder)
    model = load_ours(folder, architecture)
    processor = load_processor(folder, architecture)
    log(f"{source}: {architecture} -> {type(model).__name__}")
    compare = None
    if verify:
        if ARCHITECTURES[architecture][2] == "timm":
            compare = timm_hybrid_comparison(model, classify=architecture.endswith("Classification"))
        else:
            compare = transformers_comparison(folder, architecture, model)
    card_name = card_name or (source.rstrip("/").split("/")[-1] if not Path(source).is_dir() else None)
    return verify_then_write(model, processor, output_dir, compare, tolerance, card_name, overwrite, log)


def add_arguments(parser) -> None:
    parser.add_argument("source", help="a local Transformers checkpoint folder or a Hub repo id (google/vit-base-...)")
    add_output_arguments(parser, "the reference", card_default="the repo name")


def run(args) -> int:
    convert(
        args.source,
        args.output_dir,
        **output_options(args),
    )
    return 0
