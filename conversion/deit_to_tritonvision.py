"""facebookresearch/deit `.pth` checkpoints -> tritonvision DeiT / ViT folders.

The original repository builds DeiT on timm's VisionTransformer, so its tensor names are timm's (`cls_token`,
`dist_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.attn.qkv`, `head`, `head_dist`) and the renaming is
`timm_to_tritonvision.convert_state_dict`'s. What this module adds is reading the architecture from the
tensor shapes (width, depth, MLP width, patch and image size; heads = width / 64 as in every DeiT size)
and the verification against timm's `deit_*` model loading the very same state dict.

A distilled checkpoint (with `dist_token` and `head_dist`) becomes `DeiTForImageClassificationWithTeacher`.
A plain one has no distillation token, which `DeiTForImageClassification` always carries (in Transformers
too), so it becomes `ViTForImageClassification`, as the Hub stores facebook/deit-*-patch16-224.

Subcommand: `tritonvision-convert deit <checkpoint.pth> <output-dir> [--num-heads N] [--no-verify]
[--card NAME] [--overwrite]`.
"""

import math
import re
from pathlib import Path

from . import timm_to_tritonvision as timm_conversion
from .checkpoint_io import listing, load_into, load_torch_checkpoint, random_pixels
from .folder_writer import DEFAULT_TOLERANCE, ConversionError, add_output_arguments, output_options, verify_then_write

SOURCE = "deit"
HELP = "convert a facebookresearch/deit .pth checkpoint (verified against timm's deit_* models)"

REQUIRED = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "norm.weight")
HEAD_DIM = 64  # DeiT-Ti/S/B have 3/6/12 heads of width 64
SIZE_NAMES = {192: "tiny", 384: "small", 768: "base"}
LAYER_NORM_EPS = 1e-6  # the original models use partial(nn.LayerNorm, eps=1e-6)


def read_architecture(state_dict: dict, num_heads: int | None = None) -> dict:
    """Sizes of the DeiT in `state_dict`, from tensor shapes; `ConversionError` if it is not a DeiT/ViT."""
    missing = [name for name in REQUIRED if name not in state_dict]
    if missing:
        raise ConversionError(
            f"not a facebookresearch/deit checkpoint: missing tensors {listing(missing)} "
            f"(found {listing(state_dict, 8)})"
        )
    hidden = state_dict["cls_token"].shape[-1]
    projection = state_dict["patch_embed.proj.weight"]
    if projection.dim() != 4 or projection.shape[-1] != projection.shape[-2]:
        raise ConversionError(f"patch_embed.proj.weight has shape {tuple(projection.shape)}, not square patches")
    distilled = "dist_token" in state_dict
    prefix_tokens = 2 if distilled else 1
    positions = state_dict["pos_embed"].shape[1] - prefix_tokens
    grid = math.isqrt(positions)
    if grid * grid != positions:
        raise ConversionError(f"pos_embed has {positions} patch positions, not a square grid")
    depth = len({int(m.group(1)) for name in state_dict if (m := re.match(r"blocks\.(\d+)\.", name))})
    heads = num_heads or max(1, hidden // HEAD_DIM)
    if hidden % heads:
        raise ConversionError(f"width {hidden} is not divisible by {heads} heads; pass --num-heads")
    head = state_dict.get("head.weight")
    return dict(
        hidden_size=hidden,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0]
        if "blocks.0.mlp.fc1.weight" in state_dict
        else 4 * hidden,
        patch_size=projection.shape[-1],
        image_size=grid * projection.shape[-1],
        num_channels=projection.shape[1],
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        distilled=distilled,
        num_labels=head.shape[0] if head is not None else 0,
    )


def _imagenet_labels(num_labels: int) -> dict[int, str]:
    if num_labels == 1000:
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo("imagenet-1k")
            return {index: info.index_to_description(index) for index in range(num_labels)}
        except (ImportError, KeyError, ValueError, OSError):  # names are a nicety; without timm's tables, generic
            return {index: f"LABEL_{index}" for index in range(num_labels)}
    return {index: f"LABEL_{index}" for index in range(num_labels)}


def build_processor(image_size: int):
    """DeiT's evaluation transform: shorter side to size / 0.875 (224 px models) or size (384), centre crop."""
    from ..modeling.image_processing_deit import DeiTImageProcessor

    crop_pct = 0.875 if image_size <= 224 else 1.0
    return DeiTImageProcessor(
        size={"shortest_edge": int(image_size / crop_pct)}, crop_size={"height": image_size, "width": image_size}
    )


def convert_state_dict(state_dict: dict, num_heads: int | None = None):
    """(our model in eval mode, architecture, classify): pure conversion of a loaded state dict."""
    from ..modeling.configuration_deit import DeiTConfig
    from ..modeling.configuration_vit import ViTConfig
    from ..modeling.modeling_deit import DeiTForImageClassificationWithTeacher, DeiTModel
    from ..modeling.modeling_vit import ViTForImageClassification, ViTModel

    architecture = read_architecture(state_dict, num_heads)
    variant = timm_conversion.DEIT_DISTILLED if architecture["distilled"] else timm_conversion.DEIT
    converted = timm_conversion.convert_state_dict(state_dict, variant)
    classify = timm_conversion.has_classifier(state_dict, variant)
    fields = {key: value for key, value in architecture.items() if key not in ("distilled", "num_labels")}
    fields.update(layer_norm_eps=LAYER_NORM_EPS, hidden_act="gelu", encoder_stride=architecture["patch_size"])
    if classify:
        labels = _imagenet_labels(architecture["num_labels"])
        fields.update(id2label=labels, label2id={label: index for index, label in labels.items()})
    config = (DeiTConfig if architecture["distilled"] else ViTConfig)(**fields)
    if architecture["distilled"]:
        model_class = DeiTForImageClassificationWithTeacher if classify else DeiTModel
    else:
        model_class = ViTForImageClassification if classify else ViTModel
    model = model_class(config) if classify else model_class(config, add_pooling_layer=False)
    load_into(model, converted, "the converted DeiT checkpoint")
    return model.eval(), architecture, classify


def build_timm_reference(architecture: dict, state_dict: dict, classify: bool):
    """timm's `deit_*` VisionTransformer of the same shape, strictly loading the same state dict."""
    try:
        import timm
    except ImportError as error:
        raise ConversionError("verification needs timm (pip install timm), or pass --no-verify") from error
    name = "deit_base_distilled_patch16_224" if architecture["distilled"] else "deit_base_patch16_224"
    model = timm.create_model(
        name,
        pretrained=False,
        embed_dim=architecture["hidden_size"],
        depth=architecture["num_hidden_layers"],
        num_heads=architecture["num_attention_heads"],
        mlp_ratio=architecture["intermediate_size"] / architecture["hidden_size"],
        patch_size=architecture["patch_size"],
        img_size=architecture["image_size"],
        in_chans=architecture["num_channels"],
        qkv_bias=architecture["qkv_bias"],
        num_classes=architecture["num_labels"] if classify else 0,
    )
    reference_state = {k: v for k, v in state_dict.items() if classify or not k.startswith(("head.", "head_dist."))}
    load_into(model, reference_state, "the checkpoint")
    return model.eval()


def comparison_for(reference, model, classify: bool, image_size: int, channels: int):
    def compare():
        pixels = random_pixels(2, channels, image_size, image_size)
        reference_features = reference.forward_features(pixels)
        base = getattr(model, model.base_model_prefix) if classify else model
        pairs = [("last_hidden_state", reference_features, base(pixels).last_hidden_state)]
        if classify:
            outputs = model(pixels)
            pairs.append(("logits", reference.forward_head(reference_features), outputs.logits))
            if hasattr(outputs, "distillation_logits"):
                pairs.append(("cls_logits", reference.head(reference_features[:, 0]), outputs.cls_logits))
                pairs.append(
                    ("distillation_logits", reference.head_dist(reference_features[:, 1]), outputs.distillation_logits)
                )
        return pairs

    return compare


def card_for(architecture: dict, classify: bool) -> str | None:
    size = SIZE_NAMES.get(architecture["hidden_size"])
    if not (size and classify and architecture["patch_size"] == 16 and architecture["num_labels"] == 1000):
        return None
    distilled = "distilled-" if architecture["distilled"] else ""
    return f"deit-{size}-{distilled}patch16-{architecture['image_size']}"


def convert(
    checkpoint,
    output_dir,
    num_heads: int | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    card_name: str | None = None,
    overwrite: bool = False,
    log=print,
) -> Path:
    """Read, convert, verify against timm, write (nothing on any failure)."""
    state_dict, _ = load_torch_checkpoint(checkpoint)
    state_dict = {key: value.float() for key, value in state_dict.items()}
    model, architecture, classify = convert_state_dict(state_dict, num_heads)
    log(f"{checkpoint}: DeiT {architecture} -> {type(model).__name__}")
    processor = build_processor(architecture["image_size"])
    compare = None
    if verify:
        reference = build_timm_reference(architecture, state_dict, classify)
        compare = comparison_for(reference, model, classify, architecture["image_size"], architecture["num_channels"])
    card_name = card_name or card_for(architecture, classify)
    return verify_then_write(model, processor, output_dir, compare, tolerance, card_name, overwrite, log)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="the original .pth file (e.g. deit_base_distilled_patch16_224-df68dfff.pth)")
    add_output_arguments(parser, "timm")
    parser.add_argument("--num-heads", type=int, help="attention heads (default: width / 64, as every DeiT)")


def run(args) -> int:
    convert(
        args.checkpoint,
        args.output_dir,
        num_heads=args.num_heads,
        **output_options(args),
    )
    return 0
