"""Configuration of DeiT (Touvron et al., 2021): a ViT configuration under a model type of its own.

DeiT changes the training recipe and adds a distillation token, not the encoder, so its fields are
exactly ViT's (as in Transformers' `DeiTConfig`).
"""

from huggingface_hub.dataclasses import strict

from .configuration_vit import ViTConfig


@strict
class DeiTConfig(ViTConfig):
    """DeiT-B/16 at 224x224 by default (DeiT-S: hidden_size=384, num_attention_heads=6, intermediate 1536)."""

    model_type = "tritonvision-deit"
    # facebook/deit-small-patch16-224 is stored as `vit`.
    hub_model_types = ("deit", "vit")
