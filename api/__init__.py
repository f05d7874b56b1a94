"""tritonvision: ViT, DeiT, ViT-hybrid and DETR for Hugging Face Transformers, with Triton kernels.

The classes carry the names users know from Transformers, so switching is a one-line import change.
Importing the package registers them with the Auto classes and registers the fused attention as
`attn_implementation="triton"` for every Transformers model.
"""

from .modeling import (
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTImageProcessor,
    DeiTModel,
    DetrConfig,
    DetrForObjectDetection,
    DetrImageProcessor,
    DetrModel,
    ViTConfig,
    ViTForImageClassification,
    ViTHybridConfig,
    ViTHybridForImageClassification,
    ViTHybridImageProcessor,
    ViTHybridModel,
    ViTImageProcessor,
    ViTModel,
)
from .modeling.auto_registration import register_auto_classes
from .modeling.hub import push_to_hub

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "DeiTConfig",
    "DeiTForImageClassification",
    "DeiTForImageClassificationWithTeacher",
    "DeiTImageProcessor",
    "DeiTModel",
    "DetrConfig",
    "DetrForObjectDetection",
    "DetrImageProcessor",
    "DetrModel",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTHybridConfig",
    "ViTHybridForImageClassification",
    "ViTHybridImageProcessor",
    "ViTHybridModel",
    "ViTImageProcessor",
    "ViTModel",
    "push_to_hub",
]
