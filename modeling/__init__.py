"""Model, configuration and image-processor classes, named as in Transformers."""

from .configuration_deit import DeiTConfig
from .configuration_vit import ViTConfig
from .image_processing_deit import DeiTImageProcessor
from .image_processing_vit import ViTImageProcessor
from .modeling_deit import (
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTModel,
    DeiTPreTrainedModel,
)
from .modeling_vit import ViTForImageClassification, ViTModel, ViTPreTrainedModel
