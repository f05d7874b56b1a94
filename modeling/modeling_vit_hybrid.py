"""ViT-hybrid: the Vision Transformer fed with a BiT ResNet's feature map instead of raw pixel patches.

Only the patch embedding differs from ViT: the backbone's last feature map is cut into `patch_size`
patches (1x1 for google/vit-hybrid-base-bit-384) and projected to `hidden_size`. The encoder, pooler and
heads are `modeling_vit`'s. Tensor names are those of Transformers 4.x's ViT-hybrid checkpoints:
`vit.embeddings.patch_embeddings.backbone.bit.*` for the ResNet, `vit.embeddings.patch_embeddings.projection`,
`vit.encoder.layer.N.*` as in ViT.
"""

import collections.abc

import torch
from torch import nn
from transformers import initialization as init

from .bit_backbone import BitBackbone
from .configuration_vit_hybrid import ViTHybridConfig
from .modeling_vit import ViTEmbeddings, ViTForImageClassification, ViTModel, ViTPreTrainedModel


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, collections.abc.Iterable) else (value, value)


class ViTHybridPatchEmbeddings(nn.Module):
    """`(B, C, H, W)` pixels -> BiT feature map -> `(B, num_patches, hidden)` tokens."""

    def __init__(self, config: ViTHybridConfig):
        super().__init__()
        self.image_size = _pair(config.image_size)
        self.patch_size = _pair(config.patch_size)
        self.num_channels = config.num_channels
        self.backbone = BitBackbone(config.bit_settings())
        feature_dim, feature_height, feature_width = config.backbone_featmap_shape[1:]
        if feature_dim != self.backbone.channels[-1]:
            raise ValueError(
                f"backbone_featmap_shape has {feature_dim} channels but the backbone's output stage has "
                f"{self.backbone.channels[-1]}"
            )
        self.grid_size = (feature_height // self.patch_size[0], feature_width // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.projection = nn.Conv2d(
            feature_dim, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {self.num_channels}, height, width), got {tuple(pixel_values.shape)}"
            )
        features = self.backbone(pixel_values)[-1]
        return self.projection(features).flatten(2).transpose(1, 2)


class ViTHybridEmbeddings(ViTEmbeddings):
    """ViT's cls token and position embeddings around the hybrid patch embedding.

    `patch_size` here is the input-pixel stride of one token (backbone stride x patch size), which is what
    resizing the position grid for another image size needs.
    """

    def __init__(self, config: ViTHybridConfig, use_mask_token: bool = False):
        nn.Module.__init__(self)  # ViTEmbeddings.__init__ would build a pixel patch embedding
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = ViTHybridPatchEmbeddings(config)
        num_positions = self.patch_embeddings.num_patches + self.num_prefix_tokens
        self.position_embeddings = nn.Parameter(torch.randn(1, num_positions, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = config.backbone_stride() * self.patch_embeddings.patch_size[0]
        self.image_size = self.patch_embeddings.image_size


class ViTHybridPreTrainedModel(ViTPreTrainedModel):
    config_class = ViTHybridConfig
    config: ViTHybridConfig
    base_model_prefix = "vit"
    _no_split_modules = ["ViTHybridEmbeddings", "ViTLayer"]
    family_auto_map = {
        "AutoModel": "ViTHybridModel",
        "AutoModelForImageClassification": "ViTHybridForImageClassification",
    }

    @torch.no_grad()
    def _init_weights(self, module):
        """ViT's initialisation (truncated normal, the BiT convolutions included), GroupNorm to identity."""
        super()._init_weights(module)
        if isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class ViTHybridModel(ViTHybridPreTrainedModel, ViTModel):
    """The bare hybrid encoder: `last_hidden_state` after the final layer norm, tanh pooler on the cls token."""

    embeddings_class = ViTHybridEmbeddings


class ViTHybridForImageClassification(ViTHybridPreTrainedModel, ViTForImageClassification):
    """A linear head on the final cls token."""

    backbone_class = ViTHybridModel
