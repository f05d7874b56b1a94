"""Model, configuration and image-processor classes, named as in Transformers."""

from .configuration_deit import DeiTConfig
from .configuration_detr import DetrConfig
from .configuration_vit import ViTConfig
from .configuration_vit_hybrid import ViTHybridConfig
from .image_processing_deit import DeiTImageProcessor
from .image_processing_detr import DetrImageProcessor
from .image_processing_vit import ViTImageProcessor
from .image_processing_vit_hybrid import ViTHybridImageProcessor
from .modeling_deit import (
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTModel,
    DeiTPreTrainedModel,
)
from .modeling_detr import DetrForObjectDetection, DetrModel, DetrPreTrainedModel
from .modeling_vit import ViTForImageClassification, ViTModel, ViTPreTrainedModel
from .modeling_vit_hybrid import ViTHybridForImageClassification, ViTHybridModel, ViTHybridPreTrainedModel

__all__ = [
    "DeiTConfig",
    "DeiTForImageClassification",
    "DeiTForImageClassificationWithTeacher",
    "DeiTImageProcessor",
    "DeiTModel",
    "DeiTPreTrainedModel",
    "DetrConfig",
    "DetrForObjectDetection",
    "DetrImageProcessor",
    "DetrModel",
    "DetrPreTrainedModel",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTHybridConfig",
    "ViTHybridForImageClassification",
    "ViTHybridImageProcessor",
    "ViTHybridModel",
    "ViTHybridPreTrainedModel",
    "ViTImageProcessor",
    "ViTModel",
    "ViTPreTrainedModel",
]
