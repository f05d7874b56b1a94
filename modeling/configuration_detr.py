"""Configuration of DETR (Carion et al., 2020): a ResNet backbone, a Transformer encoder-decoder, set prediction.

Field names and defaults are those of Transformers' `DetrConfig`, so the Hub's `config.json` files
(facebook/detr-resnet-50 writes `model_type: detr`, `backbone: resnet50`, `use_timm_backbone: true`, `dilation`,
or a `backbone_config` of type `timm_backbone`) load unchanged. The backbone is always our own ResNet with the
timm layout of tensor names; `backbone_config` is kept as a plain dict describing it.
"""

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from .configuration_utils import HubCompatibleConfig

# timm ResNet names with the plain 7x7 stem -> (block type, blocks per stage).
RESNET_DEPTHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet26": ("bottleneck", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


@strict
class DetrConfig(HubCompatibleConfig):
    """DETR-R50 for COCO (91 classes + no-object, 100 queries, 6+6 layers of width 256) by default.

    `dilation=True` builds DETR-DC5: the last ResNet stage keeps stride 16 and dilates its convolutions.
    `use_pretrained_backbone` is accepted for Hub compatibility but never downloads anything: backbone weights
    come from the checkpoint. Only timm-layout ResNets (`use_timm_backbone=True`, the Hub default) are supported.
    """

    model_type = "tritonvision-detr"
    hub_model_types: ClassVar[tuple[str, ...]] = ("detr",)
    keys_to_ignore_at_inference = ["past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "encoder_layers",
    }

    backbone_config: dict | PreTrainedConfig | None = None
    num_channels: int = 3
    num_queries: int = 100
    encoder_layers: int = 6
    encoder_ffn_dim: int = 2048
    encoder_attention_heads: int = 8
    decoder_layers: int = 6
    decoder_ffn_dim: int = 2048
    decoder_attention_heads: int = 8
    encoder_layerdrop: float | int = 0.0
    decoder_layerdrop: float | int = 0.0
    is_encoder_decoder: bool = True
    activation_function: str = "relu"
    d_model: int = 256
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    init_std: float = 0.02
    init_xavier_std: float = 1.0
    auxiliary_loss: bool = False
    position_embedding_type: str = "sine"
    dilation: bool = False
    class_cost: float | int = 1
    bbox_cost: float | int = 5
    giou_cost: float | int = 2
    mask_loss_coefficient: float | int = 1
    dice_loss_coefficient: float | int = 1
    bbox_loss_coefficient: float | int = 5
    giou_loss_coefficient: float | int = 2
    eos_coefficient: float = 0.1

    def __post_init__(self, **kwargs):
        if isinstance(self.backbone_config, PreTrainedConfig):
            self.backbone_config = self.backbone_config.to_dict()
        use_timm_backbone = kwargs.pop("use_timm_backbone", True)
        backbone = kwargs.pop("backbone", None)
        backbone_kwargs = kwargs.pop("backbone_kwargs", None) or {}
        kwargs.pop("use_pretrained_backbone", None)
        if self.backbone_config is None:
            if not use_timm_backbone:
                raise ValueError(
                    "tritonvision's DETR implements the timm ResNet layout only (use_timm_backbone=True, as "
                    "facebook/detr-resnet-50); the Transformers-ResNet layout is not supported"
                )
            self.backbone_config = {
                "model_type": "timm_backbone",
                "backbone": backbone or "resnet50",
                "num_channels": backbone_kwargs.get("num_channels", self.num_channels),
                "out_indices": list(backbone_kwargs.get("out_indices", [1, 2, 3, 4])),
            }
            if self.dilation:
                self.backbone_config["output_stride"] = backbone_kwargs.get("output_stride", 16)
        self._check_backbone()
        if self.position_embedding_type not in ("sine", "learned"):
            raise ValueError(
                f"position_embedding_type must be 'sine' or 'learned', got {self.position_embedding_type!r}"
            )
        for name in ("encoder", "decoder"):
            heads = getattr(self, f"{name}_attention_heads")
            if self.d_model % heads:
                raise ValueError(f"d_model ({self.d_model}) must be a multiple of {name}_attention_heads ({heads})")
        super().__post_init__(**kwargs)

    def _check_backbone(self) -> None:
        model_type = self.backbone_config.get("model_type", "timm_backbone")
        name = self.backbone_config.get("backbone")
        if model_type != "timm_backbone" or name not in RESNET_DEPTHS:
            raise ValueError(
                f"backbone_config must describe a timm ResNet ({', '.join(RESNET_DEPTHS)}), got model_type "
                f"{model_type!r} and backbone {name!r}"
            )
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"backbone output_stride must be 8, 16 or 32, got {self.output_stride}")

    @property
    def backbone_name(self) -> str:
        return self.backbone_config["backbone"]

    @property
    def output_stride(self) -> int:
        """32 for the plain ResNet, 16 for DC5 (`dilation=True` or `backbone_config.output_stride=16`)."""
        stride = self.backbone_config.get("output_stride")
        if stride is None:
            stride = 16 if self.dilation else 32
        return int(stride)

    @property
    def backbone_num_channels(self) -> int:
        return int(self.backbone_config.get("num_channels", self.num_channels))
