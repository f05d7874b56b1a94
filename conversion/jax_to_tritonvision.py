"""google-research/vision_transformer `.npz` checkpoints -> tritonvision ViT / ViT-hybrid folders.

The archive is read directly (no JAX needed): `VARIANTS` holds the architectures as data, `NPZ_RENAMES` maps
the Flax parameter names to ours with the layout change each needs (HWIO kernels to OIHW, Dense kernels
transposed, per-head attention kernels flattened). A head of zeros (the in21k feature extractors) is dropped,
giving a `ViTModel` whose pooler is the checkpoint's `pre_logits` (Dense + tanh, as in the original model).
A different `--image-size` resizes the position grid bilinearly, as the original repository and timm's
`.npz` loader do.

Before writing, the same `.npz` is loaded by timm's own loader (`VisionTransformer.load_pretrained`) and
both models run on one random batch; the folder is written only if they agree within 1e-4.

Subcommand: `tritonvision-convert jax <file.npz> <output-dir> --variant {ViT-B_16,...,R50+ViT-B_16}
[--image-size N] [--variant-json JSON] [--no-verify] [--card NAME] [--overwrite]`.
"""

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint_io import listing, load_into, load_npz, random_pixels
from .folder_writer import DEFAULT_TOLERANCE, ConversionError, add_output_arguments, output_options, verify_then_write
from .timm_to_tritonvision import timm_hybrid_backbone

SOURCE = "jax"
HELP = "convert a google-research/vision_transformer .npz checkpoint (verified against timm's .npz loader)"


@dataclass(frozen=True)
class JaxVariant:
    """One architecture of the original repository (`configs.py`): Transformer sizes and the optional ResNet.

    `patch_size` is in input pixels for ViT and in feature-map pixels (1) for the hybrid, whose ResNet stem
    has `resnet_width` channels and whose stage i outputs `4 * resnet_width * 2**i` channels.
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    resnet_depths: tuple[int, ...] | None = None
    resnet_width: int = 64
    resnet_groups: int = 32

    @property
    def is_hybrid(self) -> bool:
        return self.resnet_depths is not None

    @property
    def token_stride(self) -> int:
        """Input pixels per token: the patch size, times the ResNet's stride (4, doubled by each later stage)."""
        return self.patch_size * (4 * 2 ** (len(self.resnet_depths) - 1) if self.is_hybrid else 1)

    @classmethod
    def from_json(cls, text: str) -> "JaxVariant":
        try:
            fields = json.loads(text)
            if "resnet_depths" in fields and fields["resnet_depths"] is not None:
                fields["resnet_depths"] = tuple(fields["resnet_depths"])
            return cls(**fields)
        except (TypeError, ValueError) as error:
            raise ConversionError(f"--variant-json is not a variant description: {error}") from error


VARIANTS = {
    "ViT-B_16": JaxVariant(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, patch_size=16),
    "ViT-B_32": JaxVariant(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, patch_size=32),
    "ViT-L_16": JaxVariant(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096, patch_size=16),
    "ViT-L_32": JaxVariant(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096, patch_size=32),
    "R50+ViT-B_16": JaxVariant(
        hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, patch_size=1, resnet_depths=(3, 4, 9)
    ),
}
# Model cards in model_cards/ for checkpoints the Hub also carries: (variant, image size, has a classifier).
CARDS = {
    ("ViT-B_16", 224, False): "vit-base-patch16-224-in21k",
    ("ViT-L_16", 224, False): "vit-large-patch16-224-in21k",
    ("ViT-B_16", 224, True): "vit-base-patch16-224",
    ("ViT-B_16", 384, True): "vit-base-patch16-384",
    ("ViT-L_16", 224, True): "vit-large-patch16-224",
    ("ViT-L_16", 384, True): "vit-large-patch16-384",
    ("R50+ViT-B_16", 384, True): "vit-hybrid-base-bit-384",
}

# Layout changes from Flax to PyTorch, by kind.
CONV, DENSE, VECTOR, AS_IS, HEADS_IN, HEADS_BIAS, HEADS_OUT = (
    "conv",
    "dense",
    "vector",
    "as_is",
    "heads_in",
    "heads_bias",
    "heads_out",
)
_BLOCK = r"Transformer/encoderblock_(?P<layer>\d+)/"
_LAYER = "encoder.layer.{layer}."
_BIT = "embeddings.patch_embeddings.backbone.bit."
_UNIT = r"block(?P<stage>\d+)/unit(?P<unit>\d+)/"
_STAGE = _BIT + "encoder.stages.{stage}.layers.{unit}."
# (Flax name pattern, our name without the base-model prefix, layout kind). Named groups in ONE_BASED count
# from 1 in Flax and from 0 here.
NPZ_RENAMES = (
    (r"embedding/kernel", "embeddings.patch_embeddings.projection.weight", CONV),
    (r"embedding/bias", "embeddings.patch_embeddings.projection.bias", VECTOR),
    (r"cls", "embeddings.cls_token", AS_IS),
    (r"Transformer/posembed_input/pos_embedding", "embeddings.position_embeddings", AS_IS),
    (_BLOCK + r"LayerNorm_0/(?P<p>scale|bias)", _LAYER + "layernorm_before.{p}", VECTOR),
    (
        _BLOCK + r"MultiHeadDotProductAttention_1/(?P<qkv>query|key|value)/kernel",
        _LAYER + "attention.attention.{qkv}.weight",
        HEADS_IN,
    ),
    (
        _BLOCK + r"MultiHeadDotProductAttention_1/(?P<qkv>query|key|value)/bias",
        _LAYER + "attention.attention.{qkv}.bias",
        HEADS_BIAS,
    ),
    (_BLOCK + r"MultiHeadDotProductAttention_1/out/kernel", _LAYER + "attention.output.dense.weight", HEADS_OUT),
    (_BLOCK + r"MultiHeadDotProductAttention_1/out/bias", _LAYER + "attention.output.dense.bias", VECTOR),
    (_BLOCK + r"LayerNorm_2/(?P<p>scale|bias)", _LAYER + "layernorm_after.{p}", VECTOR),
    (_BLOCK + r"MlpBlock_3/Dense_0/kernel", _LAYER + "intermediate.dense.weight", DENSE),
    (_BLOCK + r"MlpBlock_3/Dense_0/bias", _LAYER + "intermediate.dense.bias", VECTOR),
    (_BLOCK + r"MlpBlock_3/Dense_1/kernel", _LAYER + "output.dense.weight", DENSE),
    (_BLOCK + r"MlpBlock_3/Dense_1/bias", _LAYER + "output.dense.bias", VECTOR),
    (r"Transformer/encoder_norm/(?P<p>scale|bias)", "layernorm.{p}", VECTOR),
    (r"pre_logits/kernel", "pooler.dense.weight", DENSE),
    (r"pre_logits/bias", "pooler.dense.bias", VECTOR),
    # The hybrid's ResNet (models_resnet.py): root conv + GroupNorm, then blockN/unitM bottlenecks.
    (r"conv_root/kernel", _BIT + "embedder.convolution.weight", CONV),
    (r"gn_root/(?P<p>scale|bias)", _BIT + "embedder.norm.{p}", VECTOR),
    (_UNIT + r"conv(?P<n>[123])/kernel", _STAGE + "conv{n}.weight", CONV),
    (_UNIT + r"gn(?P<n>[123])/(?P<p>scale|bias)", _STAGE + "norm{n}.{p}", VECTOR),
    (_UNIT + r"conv_proj/kernel", _STAGE + "downsample.conv.weight", CONV),
    (_UNIT + r"gn_proj/(?P<p>scale|bias)", _STAGE + "downsample.norm.{p}", VECTOR),
)
HEAD_RENAMES = ((r"head/kernel", "classifier.weight", DENSE), (r"head/bias", "classifier.bias", VECTOR))
ONE_BASED = ("stage", "unit")
PARAM_NAMES = {"scale": "weight", "bias": "bias"}


def to_torch_layout(array: np.ndarray, kind: str) -> torch.Tensor:
    """A Flax array in PyTorch's layout for a parameter of this `kind`."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if kind == CONV:  # (H, W, in, out) -> (out, in, H, W)
        return tensor.permute(3, 2, 0, 1).contiguous()
    if kind == DENSE:  # (in, out) -> (out, in)
        return tensor.t().contiguous()
    if kind == VECTOR:  # some GroupNorm parameters are stored as (1, 1, 1, C)
        return tensor.reshape(-1)
    if kind == HEADS_IN:  # (hidden, heads, head_dim) -> (heads * head_dim, hidden)
        return tensor.reshape(tensor.shape[0], -1).t().contiguous()
    if kind == HEADS_BIAS:  # (heads, head_dim) -> (heads * head_dim,)
        return tensor.reshape(-1)
    if kind == HEADS_OUT:  # (heads, head_dim, hidden) -> (hidden, heads * head_dim)
        return tensor.reshape(-1, tensor.shape[-1]).t().contiguous()
    return tensor


def _rename(name: str, table) -> tuple[str, str] | None:
    for pattern, template, kind in table:
        match = re.fullmatch(pattern, name)
        if match:
            groups = {
                key: str(int(value) - 1) if key in ONE_BASED else PARAM_NAMES.get(value, value)
                for key, value in match.groupdict().items()
            }
            return template.format(**groups), kind
    return None


def head_is_zero(arrays: dict) -> bool:
    """The in21k feature extractors ship `head/kernel` all zeros (the head was re-initialised for fine-tuning)."""
    return "head/kernel" in arrays and not np.any(arrays["head/kernel"])


def convert_arrays(arrays: dict) -> tuple[dict, bool]:
    """(our state dict, classify): renamed and re-laid-out tensors; unknown names raise `ConversionError`.

    With a non-zero head the body gets the `vit.` prefix and the head becomes `classifier`; a zero or absent
    head is dropped (a bare `ViTModel`). The position table is left at the checkpoint's grid.
    """
    classify = "head/kernel" in arrays and not head_is_zero(arrays)
    if classify and "pre_logits/kernel" in arrays:
        raise ConversionError(
            "the checkpoint has both a trained head and pre_logits; tritonvision's ViTForImageClassification has "
            "no pre-logits layer (fine-tuned original checkpoints drop it)"
        )
    prefix = "vit." if classify else ""
    converted, unplaced = {}, []
    for name, array in arrays.items():
        if name.startswith("head/"):
            if classify:
                target, kind = _rename(name, HEAD_RENAMES) or (None, None)
                if target is None:
                    unplaced.append(name)
                else:
                    converted[target] = to_torch_layout(array, kind)
            continue
        renamed = _rename(name, NPZ_RENAMES)
        if renamed is None:
            unplaced.append(name)
            continue
        target, kind = renamed
        converted[prefix + target] = to_torch_layout(array, kind)
    if unplaced:
        raise ConversionError(
            f"{len(unplaced)} arrays of the .npz have no tritonvision counterpart: {listing(unplaced)}"
        )
    return converted, classify


def resize_position_embeddings(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """`(1, 1 + g*g, D)` -> `(1, 1 + h*w, D)`: the patch part resized bilinearly, the cls position kept."""
    patches = table.shape[1] - 1
    side = math.isqrt(patches)
    if side * side != patches:
        raise ConversionError(f"position embedding of {patches} patch positions is not a square grid")
    if (side, side) == tuple(grid):
        return table
    image = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(image, size=tuple(grid), mode="bilinear", align_corners=False)
    return torch.cat([table[:, :1], resized.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)


def check_variant(arrays: dict, variant: JaxVariant, variant_name: str) -> None:
    """Refuse a checkpoint whose tensors contradict the variant (another size, patch size or a missing ResNet)."""
    problems = []
    kernel = arrays.get("embedding/kernel")
    if kernel is None or kernel.ndim != 4:
        raise ConversionError("not a vision_transformer checkpoint: no 4-d 'embedding/kernel' array")
    if kernel.shape[3] != variant.hidden_size:
        problems.append(f"hidden size {kernel.shape[3]} (variant {variant.hidden_size})")
    if kernel.shape[0] != variant.patch_size:
        problems.append(f"patch size {kernel.shape[0]} (variant {variant.patch_size})")
    layers = {int(m.group(1)) for name in arrays if (m := re.match(r"Transformer/encoderblock_(\d+)/", name))}
    if len(layers) != variant.num_layers:
        problems.append(f"{len(layers)} encoder blocks (variant {variant.num_layers})")
    query = arrays.get("Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel")
    if query is not None and query.shape[1] != variant.num_heads:
        problems.append(f"{query.shape[1]} attention heads (variant {variant.num_heads})")
    mlp = arrays.get("Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel")
    if mlp is not None and mlp.shape[1] != variant.mlp_dim:
        problems.append(f"MLP width {mlp.shape[1]} (variant {variant.mlp_dim})")
    if variant.is_hybrid != ("conv_root/kernel" in arrays):
        problems.append("a ResNet stem" if "conv_root/kernel" in arrays else "no ResNet stem")
    if variant.is_hybrid and "conv_root/kernel" in arrays:
        stages = {int(m.group(1)) for name in arrays if (m := re.match(r"block(\d+)/unit", name))}
        if len(stages) != len(variant.resnet_depths):
            problems.append(f"{len(stages)} ResNet stages (variant {len(variant.resnet_depths)})")
    if problems:
        raise ConversionError(f"the checkpoint is not a {variant_name}: " + "; ".join(problems))


def backbone_config(variant: JaxVariant) -> dict:
    """The BiT settings of the hybrid's ResNet: non-pre-activation bottlenecks, "SAME" padding, GroupNorm."""
    return {
        "model_type": "bit",
        "num_channels": 3,
        "embedding_size": variant.resnet_width,
        "hidden_sizes": [4 * variant.resnet_width * 2**index for index in range(len(variant.resnet_depths))],
        "depths": list(variant.resnet_depths),
        "layer_type": "bottleneck",
        "hidden_act": "relu",
        "global_padding": "SAME",
        "num_groups": variant.resnet_groups,
        "embedding_dynamic_padding": True,
        "out_features": [f"stage{len(variant.resnet_depths)}"],
    }


def build_config(variant: JaxVariant, image_size: int, num_labels: int | None, pooler_size: int | None):
    """Our config: layer-norm eps 1e-6 (Flax), exact GELU (as timm, the verification reference)."""
    from ..modeling.configuration_vit import ViTConfig
    from ..modeling.configuration_vit_hybrid import ViTHybridConfig

    fields = dict(
        hidden_size=variant.hidden_size,
        num_hidden_layers=variant.num_layers,
        num_attention_heads=variant.num_heads,
        intermediate_size=variant.mlp_dim,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        image_size=image_size,
        patch_size=variant.patch_size,
        qkv_bias=True,
        encoder_stride=variant.token_stride,
        pooler_output_size=pooler_size,
        pooler_act="tanh",
    )
    if num_labels:
        fields["id2label"] = {index: f"LABEL_{index}" for index in range(num_labels)}
        fields["label2id"] = {label: index for index, label in fields["id2label"].items()}
    if variant.is_hybrid:
        return ViTHybridConfig(backbone_config=backbone_config(variant), **fields)
    return ViTConfig(**fields)


def build_processor(variant: JaxVariant, image_size: int):
    """Resize to the square input (bilinear) and map pixels to [-1, 1] (mean = std = 0.5), as the original repo."""
    from transformers.image_utils import PILImageResampling

    from ..modeling.image_processing_vit import ViTImageProcessor
    from ..modeling.image_processing_vit_hybrid import ViTHybridImageProcessor

    settings = dict(
        size={"height": image_size, "width": image_size},
        resample=PILImageResampling.BILINEAR,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
    )
    if variant.is_hybrid:
        return ViTHybridImageProcessor(do_center_crop=False, **settings)
    return ViTImageProcessor(**settings)


def convert_npz(arrays: dict, variant: JaxVariant, variant_name: str = "custom variant", image_size: int | None = None):
    """(our model in eval mode, classify, image size): pure conversion of the loaded arrays."""
    from ..modeling.modeling_vit import ViTForImageClassification, ViTModel
    from ..modeling.modeling_vit_hybrid import ViTHybridForImageClassification, ViTHybridModel

    check_variant(arrays, variant, variant_name)
    state_dict, classify = convert_arrays(arrays)
    prefix = "vit." if classify else ""
    positions = state_dict[prefix + "embeddings.position_embeddings"]
    native_grid = math.isqrt(positions.shape[1] - 1)
    image_size = image_size or native_grid * variant.token_stride
    if image_size % variant.token_stride:
        raise ConversionError(f"--image-size {image_size} is not a multiple of the token stride {variant.token_stride}")
    num_labels = arrays["head/kernel"].shape[1] if classify else None
    pooler_size = arrays["pre_logits/kernel"].shape[1] if "pre_logits/kernel" in arrays else None
    config = build_config(variant, image_size, num_labels, pooler_size)
    grid = (image_size // variant.token_stride,) * 2
    state_dict[prefix + "embeddings.position_embeddings"] = resize_position_embeddings(positions, grid)
    if variant.is_hybrid:
        model_class = ViTHybridForImageClassification if classify else ViTHybridModel
    else:
        model_class = ViTForImageClassification if classify else ViTModel
    kwargs = {} if classify else {"add_pooling_layer": pooler_size is not None}
    model = model_class(config, **kwargs)
    load_into(model, state_dict, "the converted .npz")
    return model.eval(), classify, image_size


def build_timm_reference(variant: JaxVariant, image_size: int, num_classes: int, npz_path):
    """timm's VisionTransformer of the same shape, loaded from the same `.npz` by timm's own loader."""
    try:
        import timm
    except ImportError as error:
        raise ConversionError("verification needs timm (pip install timm), or pass --no-verify") from error
    sizes = dict(
        embed_dim=variant.hidden_size,
        depth=variant.num_layers,
        num_heads=variant.num_heads,
        mlp_ratio=variant.mlp_dim / variant.hidden_size,
        img_size=image_size,
        num_classes=num_classes,
    )
    if variant.is_hybrid:
        from timm.models.vision_transformer_hybrid import _create_vision_transformer_hybrid

        backbone = timm_hybrid_backbone(
            variant.resnet_depths,
            backbone_config(variant)["hidden_sizes"],
            variant.resnet_width,
            variant.resnet_groups,
        )
        model = _create_vision_transformer_hybrid(
            "vit_base_r50_s16_224", backbone=backbone, patch_size=variant.patch_size, **sizes
        )
    else:
        model = timm.create_model("vit_base_patch16_224", pretrained=False, patch_size=variant.patch_size, **sizes)
    try:
        model.load_pretrained(str(npz_path))
    except (KeyError, ValueError, RuntimeError) as error:
        raise ConversionError(f"timm's .npz loader refused the checkpoint: {error}") from error
    return model.eval()


def comparison_for(reference, model, classify: bool, image_size: int, arrays: dict):
    """Features, logits, and the pooler (tanh of `pre_logits` on timm's cls feature) of both on one batch."""

    def compare():
        pixels = random_pixels(2, 3, image_size, image_size)
        reference_features = reference.forward_features(pixels)
        base = model.vit if classify else model
        ours = base(pixels)
        pairs = [("last_hidden_state", reference_features, ours.last_hidden_state)]
        if classify:
            pairs.append(("logits", reference.forward_head(reference_features), model(pixels).logits))
        elif "pre_logits/kernel" in arrays:
            kernel = torch.from_numpy(np.asarray(arrays["pre_logits/kernel"], dtype=np.float32))
            bias = torch.from_numpy(np.asarray(arrays["pre_logits/bias"], dtype=np.float32))
            pairs.append(("pooler_output", torch.tanh(reference_features[:, 0] @ kernel + bias), ours.pooler_output))
        return pairs

    return compare


def convert(
    npz_path,
    output_dir,
    variant_name: str | None = None,
    variant: JaxVariant | None = None,
    image_size: int | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    card_name: str | None = None,
    overwrite: bool = False,
    log=print,
) -> Path:
    """Read, convert, verify against timm's loader of the same file, write (nothing on any failure)."""
    if variant is None:
        if variant_name not in VARIANTS:
            raise ConversionError(f"unknown variant {variant_name!r}; expected one of {', '.join(VARIANTS)}")
        variant = VARIANTS[variant_name]
    arrays = load_npz(npz_path)
    model, classify, image_size = convert_npz(arrays, variant, variant_name or "custom variant", image_size)
    log(f"{npz_path}: {variant_name or dataclasses.asdict(variant)} -> {type(model).__name__} at {image_size} px")
    processor = build_processor(variant, image_size)
    compare = None
    if verify:
        num_classes = arrays["head/kernel"].shape[1] if classify else 0
        reference = build_timm_reference(variant, image_size, num_classes, npz_path)
        compare = comparison_for(reference, model, classify, image_size, arrays)
    card_name = card_name or CARDS.get((variant_name, image_size, classify))
    return verify_then_write(model, processor, output_dir, compare, tolerance, card_name, overwrite, log)


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="the original .npz file (e.g. ViT-B_16.npz, R50+ViT-B_16.npz)")
    add_output_arguments(parser, "timm")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help="architecture of the checkpoint")
    parser.add_argument(
        "--variant-json",
        type=JaxVariant.from_json,
        default=None,
        help="another architecture as JSON JaxVariant fields (hidden_size, num_layers, num_heads, "
        "mlp_dim, patch_size[, resnet_depths, resnet_width, resnet_groups]); replaces --variant",
    )
    parser.add_argument("--image-size", type=int, help="input resolution (default: the checkpoint's position grid)")


def run(args) -> int:
    if args.variant is None and args.variant_json is None:
        raise ConversionError("pass --variant (or --variant-json for another architecture)")
    convert(
        args.checkpoint,
        args.output_dir,
        variant_name=args.variant if args.variant_json is None else None,
        variant=args.variant_json,
        image_size=args.image_size,
        **output_options(args),
    )
    return 0
