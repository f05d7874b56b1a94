"""Configuration of the Vision Transformer (Dosovitskiy et al., 2021).

Field names and defaults are those of Transformers' `ViTConfig`, so a Hub `config.json` written with
`model_type: vit` (google/vit-base-patch16-224-in21k and friends) loads unchanged.
"""

from huggingface_hub.dataclasses import strict

from .configuration_utils import HubCompatibleConfig


@strict
class ViTConfig(HubCompatibleConfig):
    """ViT-B/16 at 224x224 by default. `pooler_output_size` defaults to `hidden_size`."""

    model_type = "tritonvision-vit"
    hub_model_types = ("vit",)

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"

    def __post_init__(self, **kwargs):
        self.pooler_output_size = self.pooler_output_size or self.hidden_size
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        super().__post_init__(**kwargs)
