"""facebookresearch/detr `.pth` checkpoints (R50, R101, DC5) -> tritonvision DETR folders.

The original model keeps the torchvision ResNet under `backbone.0.body.` (names `conv1`, `bn1`,
`layerN.M.convK`, `downsample.0/1`, the same as timm's, which our backbone uses under
`model.backbone.conv_encoder.model.`), PyTorch `nn.MultiheadAttention` with one fused `in_proj` (split into
q/k/v here), and `linear1/2`, `norm1/2/3` in its layers. `RENAMES` is that mapping as data. The architecture
is read from tensor shapes; the head count and DC5 dilation are not visible in the tensors and come from the
checkpoint's saved training `args` when present, else from `--num-heads` (default 8) and `--dilation`.

Verification builds stock Transformers' `DetrForObjectDetection` (timm backbone, nothing pretrained) from
the same tensors, renamed independently the way Transformers' own conversion script does
(`convert_detr_original_pytorch_checkpoint_to_pytorch.py`: `rename_keys`, `rename_backbone_keys`,
`read_in_q_k_v`), and compares both on a padded batch; nothing is written on disagreement.

Subcommand: `tritonvision-convert detr <checkpoint.pth> <output-dir> [--dilation] [--num-heads N]
[--no-verify] [--card NAME] [--overwrite]`.
"""

import re
import tempfile
from pathlib import Path

import torch

from .checkpoint_io import listing, load_into, load_torch_checkpoint, rename
from .folder_writer import DEFAULT_TOLERANCE, ConversionError, add_output_arguments, output_options, verify_then_write

SOURCE = "detr"
HELP = "convert a facebookresearch/detr .pth checkpoint (verified against Transformers' DETR)"

REQUIRED = (
    "backbone.0.body.conv1.weight",
    "input_proj.weight",
    "query_embed.weight",
    "class_embed.weight",
    "transformer.encoder.layers.0.self_attn.in_proj_weight",
    "transformer.decoder.norm.weight",
)
_ENC = r"transformer\.encoder\.layers\.(\d+)\."
_DEC = r"transformer\.decoder\.layers\.(\d+)\."
# (original name pattern, our name). Fused `in_proj_*` tensors are handled by IN_PROJ below.
RENAMES = (
    (r"backbone\.0\.body\.(.+)", r"model.backbone.conv_encoder.model.\1"),
    (_ENC + r"self_attn\.out_proj\.(weight|bias)", r"model.encoder.layers.\1.self_attn.out_proj.\2"),
    (_ENC + r"linear1\.(weight|bias)", r"model.encoder.layers.\1.fc1.\2"),
    (_ENC + r"linear2\.(weight|bias)", r"model.encoder.layers.\1.fc2.\2"),
    (_ENC + r"norm1\.(weight|bias)", r"model.encoder.layers.\1.self_attn_layer_norm.\2"),
    (_ENC + r"norm2\.(weight|bias)", r"model.encoder.layers.\1.final_layer_norm.\2"),
    (_DEC + r"self_attn\.out_proj\.(weight|bias)", r"model.decoder.layers.\1.self_attn.out_proj.\2"),
    (_DEC + r"multihead_attn\.out_proj\.(weight|bias)", r"model.decoder.layers.\1.encoder_attn.out_proj.\2"),
    (_DEC + r"linear1\.(weight|bias)", r"model.decoder.layers.\1.fc1.\2"),
    (_DEC + r"linear2\.(weight|bias)", r"model.decoder.layers.\1.fc2.\2"),
    (_DEC + r"norm1\.(weight|bias)", r"model.decoder.layers.\1.self_attn_layer_norm.\2"),
    (_DEC + r"norm2\.(weight|bias)", r"model.decoder.layers.\1.encoder_attn_layer_norm.\2"),
    (_DEC + r"norm3\.(weight|bias)", r"model.decoder.layers.\1.final_layer_norm.\2"),
    (r"transformer\.decoder\.norm\.(weight|bias)", r"model.decoder.layernorm.\1"),
    (r"input_proj\.(weight|bias)", r"model.input_projection.\1"),
    (r"query_embed\.weight", r"model.query_position_embeddings.weight"),
    (r"class_embed\.(weight|bias)", r"class_labels_classifier.\1"),
    (r"bbox_embed\.layers\.(\d+)\.(weight|bias)", r"bbox_predictor.layers.\1.\2"),
)
# Fused attention input projections: (pattern, our module path); rows are [query; key; value].
IN_PROJ = (
    (_ENC + r"self_attn\.in_proj_(weight|bias)", r"model.encoder.layers.\1.self_attn"),
    (_DEC + r"self_attn\.in_proj_(weight|bias)", r"model.decoder.layers.\1.self_attn"),
    (_DEC + r"multihead_attn\.in_proj_(weight|bias)", r"model.decoder.layers.\1.encoder_attn"),
)
IGNORED = re.compile(r".*\.num_batches_tracked")
RESNETS = {  # (bottleneck?, blocks per stage) -> timm / torchvision name
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
}


def _check_layout(state_dict: dict) -> None:
    if any(key.startswith(("detr.", "bbox_attention.", "mask_head.")) for key in state_dict):
        raise ConversionError("this is a DETR panoptic (segmentation) checkpoint; only detection is supported")
    if any(key.startswith("backbone.1.") for key in state_dict):
        raise ConversionError("learned position embeddings (backbone.1.*) are not supported, only the sine ones")
    missing = [name for name in REQUIRED if name not in state_dict]
    if missing:
        raise ConversionError(
            f"not a facebookresearch/detr detection checkpoint: missing tensors {listing(missing)}; "
            f"unexpected tensors {listing([k for k in state_dict if not k.startswith(REQUIRED_PREFIXES)])}"
        )


REQUIRED_PREFIXES = ("backbone.0.body.", "transformer.", "input_proj.", "query_embed.", "class_embed.", "bbox_embed.")


def _count(state_dict: dict, pattern: str) -> int:
    return len({m.group(1) for key in state_dict if (m := re.match(pattern, key))})


def read_architecture(state_dict: dict, args=None, num_heads: int | None = None, dilation: bool | None = None):
    """DetrConfig fields from tensor shapes, saved training `args` and the command-line overrides."""
    _check_layout(state_dict)
    bottleneck = "backbone.0.body.layer1.0.conv3.weight" in state_dict
    depths = tuple(_count(state_dict, rf"backbone\.0\.body\.layer{stage}\.(\d+)\.") for stage in range(1, 5))
    backbone = RESNETS.get((bottleneck, depths))
    if backbone is None:
        raise ConversionError(f"unknown ResNet backbone: {'bottleneck' if bottleneck else 'basic'} blocks {depths}")
    heads = num_heads or getattr(args, "nheads", None) or 8
    if dilation is None:
        dilation = bool(getattr(args, "dilation", False))
    return dict(
        backbone=backbone,
        use_timm_backbone=True,
        use_pretrained_backbone=False,
        dilation=dilation,
        d_model=state_dict["input_proj.weight"].shape[0],
        num_queries=state_dict["query_embed.weight"].shape[0],
        encoder_layers=_count(state_dict, _ENC),
        decoder_layers=_count(state_dict, _DEC),
        encoder_ffn_dim=state_dict["transformer.encoder.layers.0.linear1.weight"].shape[0],
        decoder_ffn_dim=state_dict["transformer.decoder.layers.0.linear1.weight"].shape[0],
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        num_labels=state_dict["class_embed.weight"].shape[0] - 1,
        auxiliary_loss=bool(getattr(args, "aux_loss", False)),
    )


def convert_state_dict(state_dict: dict) -> dict:
    """Original names -> ours (fused q/k/v split); unknown tensors raise `ConversionError` listing them."""
    converted, unplaced = {}, []
    for key, tensor in state_dict.items():
        if IGNORED.fullmatch(key):
            continue
        for pattern, module in IN_PROJ:
            match = re.fullmatch(pattern, key)
            if match:
                if tensor.shape[0] % 3:
                    raise ConversionError(f"{key} has {tensor.shape[0]} rows, not a multiple of 3")
                for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                    converted[f"{match.expand(module)}.{name}.{match.group(2)}"] = part.clone()
                break
        else:
            target = rename(key, RENAMES)
            if target is None:
                unplaced.append(key)
            else:
                converted[target] = tensor
    if unplaced:
        raise ConversionError(f"{len(unplaced)} tensors of the checkpoint have no counterpart: {listing(unplaced)}")
    return converted


def convert_original(state_dict: dict, args=None, num_heads: int | None = None, dilation: bool | None = None):
    """(our DetrForObjectDetection in eval mode, architecture): pure conversion of a loaded state dict."""
    from ..modeling.configuration_detr import DetrConfig
    from ..modeling.modeling_detr import DetrForObjectDetection

    architecture = read_architecture(state_dict, args, num_heads, dilation)
    config = DetrConfig(**architecture)
    model = DetrForObjectDetection(config)
    load_into(model, convert_state_dict(state_dict), "the converted DETR checkpoint")
    return model.eval(), architecture


def transformers_layout(state_dict: dict, architecture: dict) -> dict:
    """The reference renaming, step by step as Transformers' DETR conversion script does it."""
    state_dict = dict(state_dict)
    d_model = architecture["d_model"]
    rename_keys = []
    for i in range(architecture["encoder_layers"]):
        source, target = f"transformer.encoder.layers.{i}.", f"encoder.layers.{i}."
        for old, new in (
            ("self_attn.out_proj", "self_attn.out_proj"),
            ("linear1", "fc1"),
            ("linear2", "fc2"),
            ("norm1", "self_attn_layer_norm"),
            ("norm2", "final_layer_norm"),
        ):
            rename_keys += [(f"{source}{old}.{kind}", f"{target}{new}.{kind}") for kind in ("weight", "bias")]
    for i in range(architecture["decoder_layers"]):
        source, target = f"transformer.decoder.layers.{i}.", f"decoder.layers.{i}."
        for old, new in (
            ("self_attn.out_proj", "self_attn.out_proj"),
            ("multihead_attn.out_proj", "encoder_attn.out_proj"),
            ("linear1", "fc1"),
            ("linear2", "fc2"),
            ("norm1", "self_attn_layer_norm"),
            ("norm2", "encoder_attn_layer_norm"),
            ("norm3", "final_layer_norm"),
        ):
            rename_keys += [(f"{source}{old}.{kind}", f"{target}{new}.{kind}") for kind in ("weight", "bias")]
    rename_keys += [
        ("input_proj.weight", "input_projection.weight"),
        ("input_proj.bias", "input_projection.bias"),
        ("query_embed.weight", "query_position_embeddings.weight"),
        ("transformer.decoder.norm.weight", "decoder.layernorm.weight"),
        ("transformer.decoder.norm.bias", "decoder.layernorm.bias"),
        ("class_embed.weight", "class_labels_classifier.weight"),
        ("class_embed.bias", "class_labels_classifier.bias"),
    ]
    rename_keys += [
        (f"bbox_embed.layers.{n}.{kind}", f"bbox_predictor.layers.{n}.{kind}")
        for n in range(3)
        for kind in ("weight", "bias")
    ]
    for old, new in rename_keys:
        state_dict[new] = state_dict.pop(old)
    state_dict = {
        key.replace("backbone.0.body", "backbone.conv_encoder.model"): value for key, value in state_dict.items()
    }
    attentions = [
        (f"transformer.encoder.layers.{i}.self_attn", f"encoder.layers.{i}.self_attn")
        for i in range(architecture["encoder_layers"])
    ]
    for i in range(architecture["decoder_layers"]):
        attentions += [
            (f"transformer.decoder.layers.{i}.self_attn", f"decoder.layers.{i}.self_attn"),
            (f"transformer.decoder.layers.{i}.multihead_attn", f"decoder.layers.{i}.encoder_attn"),
        ]
    for old, new in attentions:
        weight, bias = state_dict.pop(f"{old}.in_proj_weight"), state_dict.pop(f"{old}.in_proj_bias")
        state_dict[f"{new}.q_proj.weight"], state_dict[f"{new}.q_proj.bias"] = weight[:d_model], bias[:d_model]
        state_dict[f"{new}.k_proj.weight"] = weight[d_model : 2 * d_model]
        state_dict[f"{new}.k_proj.bias"] = bias[d_model : 2 * d_model]
        state_dict[f"{new}.v_proj.weight"], state_dict[f"{new}.v_proj.bias"] = weight[-d_model:], bias[-d_model:]
    return {
        (key if key.startswith(("class_labels_classifier", "bbox_predictor")) else "model." + key): value.contiguous()
        for key, value in state_dict.items()
        if not IGNORED.fullmatch(key)
    }


def build_transformers_reference(state_dict: dict, architecture: dict):
    """Stock `transformers.DetrForObjectDetection` loading the reference-renamed tensors from a temporary folder."""
    import transformers
    from safetensors.torch import save_file

    config = transformers.DetrConfig(**architecture)
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        save_file(transformers_layout(state_dict, architecture), str(Path(folder) / "model.safetensors"))
        model, info = transformers.DetrForObjectDetection.from_pretrained(
            folder, attn_implementation="eager", output_loading_info=True
        )
    problems = {kind: info.get(kind) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(problems.values()):
        raise ConversionError(f"Transformers' DETR does not take the checkpoint: {problems}")
    return model.eval()


def verification_batch(seed: int = 0):
    """Two images, the second padded (a quarter of its pixel mask is zero), as DETR batches images."""
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(2, 3, 96, 128, generator=generator)
    pixel_mask = torch.ones(2, 96, 128, dtype=torch.long)
    pixel_mask[1, 64:, :] = 0
    pixel_mask[1, :, 96:] = 0
    pixel_values[1] *= pixel_mask[1]
    return pixel_values, pixel_mask


def comparison_for(reference, model):
    def compare():
        pixel_values, pixel_mask = verification_batch()
        expected = reference(pixel_values=pixel_values, pixel_mask=pixel_mask)
        ours = model(pixel_values=pixel_values, pixel_mask=pixel_mask)
        return [
            (name, getattr(expected, name), getattr(ours, name))
            for name in ("logits", "pred_boxes", "last_hidden_state", "encoder_last_hidden_state")
        ]

    return compare


def convert(
    checkpoint,
    output_dir,
    dilation: bool | None = None,
    num_heads: int | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    card_name: str | None = None,
    overwrite: bool = False,
    log=print,
) -> Path:
    """Read, convert, verify against Transformers, write (nothing on any failure)."""
    from ..modeling.image_processing_detr import DetrImageProcessor

    state_dict, args = load_torch_checkpoint(checkpoint)
    state_dict = {key: value.float() if value.is_floating_point() else value for key, value in state_dict.items()}
    model, architecture = convert_original(state_dict, args, num_heads, dilation)
    log(
        f"{checkpoint}: DETR {architecture['backbone']}{' DC5' if architecture['dilation'] else ''}, "
        f"{architecture['encoder_layers']}+{architecture['decoder_layers']} layers -> {type(model).__name__}"
    )
    compare = comparison_for(build_transformers_reference(state_dict, architecture), model) if verify else None
    if card_name is None and architecture["backbone"] == "resnet50" and not architecture["dilation"]:
        card_name = "detr-resnet-50" if architecture["num_labels"] == 91 else None
    return verify_then_write(model, DetrImageProcessor(), output_dir, compare, tolerance, card_name, overwrite, log)


def add_arguments(parser) -> None:
    parser.add_argument(
        "checkpoint", help="the original .pth file (e.g. detr-r50-e632da11.pth, detr-r50-dc5-f0fb7ef5.pth)"
    )
    add_output_arguments(parser, "Transformers")
    parser.add_argument(
        "--dilation",
        action="store_true",
        default=None,
        help="DC5 checkpoint (dilated last stage); read from the checkpoint's args when present",
    )
    parser.add_argument("--num-heads", type=int, help="attention heads (default: the checkpoint's args, else 8)")


def run(args) -> int:
    convert(
        args.checkpoint,
        args.output_dir,
        dilation=args.dilation,
        num_heads=args.num_heads,
        **output_options(args),
    )
    return 0
