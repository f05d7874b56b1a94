"""Configuration of ViT-hybrid (Dosovitskiy et al., 2021): a ViT whose tokens come from a BiT ResNet's features.

Field names are those of Transformers 4.x's `ViTHybridConfig`, so google/vit-hybrid-base-bit-384's
`config.json` (`model_type: vit-hybrid`, a nested BiT `backbone_config`) loads unchanged. Transformers 5
dropped ViT-hybrid; the nested backbone config is kept here as a plain dict (read by `BitSettings`), so
nothing depends on Transformers' `BitConfig`.
"""

import math

from huggingface_hub.dataclasses import strict

from .bit_backbone import BitSettings
from .configuration_vit import ViTConfig

# What 4.x filled in when `backbone_config` was None: the R50 stem and first three stages of the paper's hybrid.
DEFAULT_BACKBONE_CONFIG = {
    "global_padding": "same",
    "layer_type": "bottleneck",
    "depths": [3, 4, 9],
    "out_features": ["stage3"],
    "embedding_dynamic_padding": True,
}


@strict
class ViTHybridConfig(ViTConfig):
    """ViT-B on R50 stages 1-3 (feature stride 16, patch size 1 on the feature map) by default.

    `backbone_featmap_shape` `[1, channels, height, width]` is the backbone's output for one `image_size`
    image; it sets the number of tokens. Left out, it is computed from `image_size` and the backbone
    (Transformers 4.x defaulted to `[1, 1024, 24, 24]`, right for 384x384 only).
    """

    model_type = "tritonvision-vit-hybrid"
    hub_model_types = ("vit-hybrid",)

    backbone_config: dict | None = None
    backbone_featmap_shape: list[int] | tuple[int, ...] | None = None
    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 1

    def __post_init__(self, **kwargs):
        backbone = dict(DEFAULT_BACKBONE_CONFIG if self.backbone_config is None else self.backbone_config)
        if hasattr(backbone, "to_dict"):
            backbone = backbone.to_dict()
        self.backbone_config = BitSettings.from_dict(backbone).to_dict()
        if self.backbone_featmap_shape is None:
            self.backbone_featmap_shape = self.expected_featmap_shape()
        self.backbone_featmap_shape = list(self.backbone_featmap_shape)
        super().__post_init__(**kwargs)

    def bit_settings(self) -> BitSettings:
        return BitSettings.from_dict(self.backbone_config)

    def backbone_stride(self) -> int:
        """Input pixels per feature-map pixel of the backbone's last requested stage."""
        settings = self.bit_settings()
        stride = 4  # the stem; the first stage keeps it, each later one doubles it up to `output_stride`
        for _ in range(1, settings.out_indices[-1]):
            if stride < settings.output_stride:
                stride *= 2
        return stride

    def expected_featmap_shape(self) -> list[int]:
        """`[1, channels, height, width]` of the backbone output for an `image_size` input."""
        settings = self.bit_settings()
        height, width = (
            (self.image_size, self.image_size) if isinstance(self.image_size, int) else tuple(self.image_size)
        )
        stride = self.backbone_stride()
        rounding = math.ceil if settings.global_padding == "SAME" else (lambda value: int(value))
        channels = settings.stage_channels()[settings.out_indices[-1]]
        return [1, channels, rounding(height / stride), rounding(width / stride)]
