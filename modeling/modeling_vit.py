"""The Vision Transformer (Dosovitskiy et al., 2021), numerically identical to Transformers' ViT.

Module attribute names are the tensor names of the Hub checkpoints (`encoder.layer.N.attention.attention.query`,
`attention.output.dense`, `intermediate.dense`, `output.dense`, ...), which stock `save_pretrained` still
writes, so Hub weights load with no renaming. Attention goes through `kernels.attention.attention`.
"""

import collections.abc
import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling, ImageClassifierOutput

from ..kernels.attention import attention
from .configuration_vit import ViTConfig
from .pretrained import TritonVisionPreTrainedModel


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, collections.abc.Iterable) else (value, value)


class ViTPatchEmbeddings(nn.Module):
    """`(B, C, H, W)` pixels to `(B, num_patches, hidden)` tokens with one strided convolution."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.image_size = _pair(config.image_size)
        self.patch_size = _pair(config.patch_size)
        self.num_channels = config.num_channels
        self.num_patches = (self.image_size[0] // self.patch_size[0]) * (self.image_size[1] // self.patch_size[1])
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {self.num_channels}, height, width), got {tuple(pixel_values.shape)}"
            )
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    """Class token(s), patch embeddings and learned position embeddings.

    `num_prefix_tokens` special tokens precede the patches: 1 for ViT (cls), 2 for DeiT (cls, distillation).
    """

    num_prefix_tokens = 1

    def __init__(self, config: ViTConfig, use_mask_token: bool = False):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = ViTPatchEmbeddings(config)
        num_positions = self.patch_embeddings.num_patches + self.num_prefix_tokens
        self.position_embeddings = nn.Parameter(torch.randn(1, num_positions, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = self.patch_embeddings.patch_size[0]
        self.image_size = self.patch_embeddings.image_size

    def prefix_tokens(self, batch_size: int) -> torch.Tensor:
        return self.cls_token.expand(batch_size, -1, -1)

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Resize the patch position grid bicubically for an image of another size (prefix positions kept)."""
        prefix = self.num_prefix_tokens
        num_patches = embeddings.shape[1] - prefix
        num_positions = self.position_embeddings.shape[1] - prefix
        if not torch.jit.is_tracing() and num_patches == num_positions and height == width:
            return self.position_embeddings
        dim = embeddings.shape[-1]
        side = int(math.sqrt(num_positions))
        grid = self.position_embeddings[:, prefix:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(
            grid, size=(height // self.patch_size, width // self.patch_size), mode="bicubic", align_corners=False
        )
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((self.position_embeddings[:, :prefix], grid), dim=1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> torch.Tensor:
        batch_size, _, height, width = pixel_values.shape
        embeddings = self.patch_embeddings(pixel_values)
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError("bool_masked_pos needs a model built with use_mask_token=True")
            mask = bool_masked_pos.unsqueeze(-1).type_as(embeddings)
            embeddings = embeddings * (1.0 - mask) + self.mask_token.expand_as(embeddings) * mask
        embeddings = torch.cat((self.prefix_tokens(batch_size), embeddings), dim=1)
        if interpolate_pos_encoding:
            embeddings = embeddings + self.interpolate_pos_encoding(embeddings, height, width)
        else:
            if (height, width) != tuple(self.image_size):
                raise ValueError(
                    f"Input image size ({height}*{width}) doesn't match model ({self.image_size[0]}*"
                    f"{self.image_size[1]}); pass interpolate_pos_encoding=True to resize the position embeddings."
                )
            embeddings = embeddings + self.position_embeddings
        return self.dropout(embeddings)


class ViTSelfAttention(nn.Module):
    """Query/key/value projections and the attention itself (through the package's one attention door)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.dropout_prob = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    def forward(self, hidden_states, key_padding_mask=None, output_attentions=False):
        output, probs = attention(
            self._heads(self.query(hidden_states)),
            self._heads(self.key(hidden_states)),
            self._heads(self.value(hidden_states)),
            key_padding_mask,
            scale=self.attention_head_size**-0.5,
            dropout_p=self.dropout_prob if self.training else 0.0,
            implementation=self.config._attn_implementation,
            output_attentions=output_attentions,
        )
        return output.transpose(1, 2).flatten(2), probs


class ViTSelfOutput(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(hidden_states))


class ViTAttention(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.attention = ViTSelfAttention(config)
        self.output = ViTSelfOutput(config)

    def forward(self, hidden_states, key_padding_mask=None, output_attentions=False):
        context, probs = self.attention(hidden_states, key_padding_mask, output_attentions)
        return self.output(context), probs


class ViTIntermediate(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class ViTOutput(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(hidden_states)) + residual


class ViTLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + Attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.attention = ViTAttention(config)
        self.intermediate = ViTIntermediate(config)
        self.output = ViTOutput(config)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, key_padding_mask=None, output_attentions=False):
        attended, probs = self.attention(self.layernorm_before(hidden_states), key_padding_mask, output_attentions)
        hidden_states = attended + hidden_states
        hidden_states = self.output(self.intermediate(self.layernorm_after(hidden_states)), hidden_states)
        return hidden_states, probs


class ViTEncoder(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, key_padding_mask=None, output_attentions=False, output_hidden_states=False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layer:
            hidden_states, probs = layer(hidden_states, key_padding_mask, output_attentions)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (probs,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class ViTPooler(nn.Module):
    """Dense + activation on the first token (the in21k checkpoints' pre-logits layer)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size)
        self.activation = ACT2FN[config.pooler_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class ViTPreTrainedModel(TritonVisionPreTrainedModel):
    config_class = ViTConfig
    config: ViTConfig
    base_model_prefix = "vit"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ViTEmbeddings", "ViTLayer"]
    family_auto_map = {"AutoModel": "ViTModel", "AutoModelForImageClassification": "ViTForImageClassification"}

    @torch.no_grad()
    def _init_weights(self, module):
        """Truncated normal for weights and embeddings, as Transformers initialises ViT."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.zeros_(module.bias)
            init.ones_(module.weight)
        elif isinstance(module, ViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=std)
            init.trunc_normal_(module.cls_token, mean=0.0, std=std)
            for name in ("distillation_token", "mask_token"):
                if getattr(module, name, None) is not None:
                    init.zeros_(getattr(module, name))


def key_padding_from_token_mask(attention_mask: torch.Tensor | None, num_tokens: int) -> torch.Tensor | None:
    """Transformers' `(B, N)` token mask (1 = keep, 0 = padding) as a key padding mask (True = padding)."""
    if attention_mask is None:
        return None
    if attention_mask.dim() != 2 or attention_mask.shape[1] != num_tokens:
        raise ValueError(f"attention_mask must be (batch, {num_tokens}), got {tuple(attention_mask.shape)}")
    return attention_mask == 0


class ViTModel(ViTPreTrainedModel):
    """The bare encoder: `last_hidden_state` after the final layer norm, and the tanh pooler on the cls token."""

    auto_class = "AutoModel"
    embeddings_class = ViTEmbeddings

    def __init__(self, config: ViTConfig, add_pooling_layer: bool = True, use_mask_token: bool = False):
        super().__init__(config)
        self.embeddings = self.embeddings_class(config, use_mask_token=use_mask_token)
        self.encoder = ViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> ViTPatchEmbeddings:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """`attention_mask` `(B, N)` over the tokens (1 keep, 0 pad) is honoured as key padding."""
        if pixel_values is None:
            raise ValueError("You have to specify pixel_values")
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)

        embedding_output = self.embeddings(
            pixel_values, bool_masked_pos=bool_masked_pos, interpolate_pos_encoding=bool(interpolate_pos_encoding)
        )
        key_padding_mask = key_padding_from_token_mask(attention_mask, embedding_output.shape[1])
        encoded = self.encoder(embedding_output, key_padding_mask, output_attentions, output_hidden_states)
        sequence_output = self.layernorm(encoded.last_hidden_state)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        output = BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=encoded.hidden_states,
            attentions=encoded.attentions,
        )
        return output if return_dict else output.to_tuple()


class ViTForImageClassification(ViTPreTrainedModel):
    """A linear head on the final cls token (after the layer norm, without the pooler)."""

    auto_class = "AutoModelForImageClassification"
    backbone_class = ViTModel

    def __init__(self, config: ViTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.backbone_class(config, add_pooling_layer=False))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        """`labels` `(B,)`: cross-entropy (or MSE / BCE, following `config.problem_type`, as Transformers)."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = getattr(self, self.base_model_prefix)(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(outputs.last_hidden_state[:, 0])
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        output = ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()
