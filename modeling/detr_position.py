"""DETR's 2-D position embeddings of the backbone feature map.

The sine embedding is computed over the *valid* pixels only: the running count of real pixels along each
axis, normalised to [0, 2*pi] per image, so that a padded image gets the same embedding over its real
area as the unpadded one. Same formula and operation order as Transformers' `DetrSinePositionEmbedding`.
"""

import math

import torch
from torch import nn


class DetrSinePositionEmbedding(nn.Module):
    """`(B, 2 * num_position_features, H, W)` sines and cosines of the (normalised) pixel coordinates."""

    def __init__(
        self,
        num_position_features: int = 64,
        temperature: int = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("normalize should be True if scale is passed")
        self.num_position_features = num_position_features
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, shape: torch.Size, device, dtype: torch.dtype, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` `(B, H, W)`: True (or 1) for real pixels; None means no padding."""
        batch_size, _, height, width = shape
        if mask is None:
            y_embed = torch.arange(1, height + 1, dtype=dtype, device=device)[None, :, None].expand(
                batch_size, height, width
            )
            x_embed = torch.arange(1, width + 1, dtype=dtype, device=device)[None, None, :].expand(
                batch_size, height, width
            )
        else:
            valid = mask.to(dtype)
            y_embed = valid.cumsum(1)
            x_embed = valid.cumsum(2)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        features = self.num_position_features
        dim_t = torch.arange(features, dtype=torch.int64, device=device).to(dtype)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / features)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class DetrLearnedPositionEmbedding(nn.Module):
    """Learned row and column embeddings (up to 50x50 feature maps), concatenated as (column, row)."""

    def __init__(self, embedding_dim: int = 256):
        super().__init__()
        self.row_embeddings = nn.Embedding(50, embedding_dim)
        self.column_embeddings = nn.Embedding(50, embedding_dim)

    def forward(self, shape: torch.Size, device, dtype: torch.dtype, mask: torch.Tensor | None = None) -> torch.Tensor:
        height, width = shape[-2:]
        x_emb = self.column_embeddings(torch.arange(width, device=device))
        y_emb = self.row_embeddings(torch.arange(height, device=device))
        pos = torch.cat([x_emb.unsqueeze(0).repeat(height, 1, 1), y_emb.unsqueeze(1).repeat(1, width, 1)], dim=-1)
        return pos.permute(2, 0, 1).unsqueeze(0).repeat(shape[0], 1, 1, 1)


def build_position_embedding(config) -> nn.Module:
    if config.position_embedding_type == "sine":
        return DetrSinePositionEmbedding(config.d_model // 2, normalize=True)
    if config.position_embedding_type == "learned":
        return DetrLearnedPositionEmbedding(config.d_model // 2)
    raise ValueError(f"Not supported position_embedding_type {config.position_embedding_type!r}")
