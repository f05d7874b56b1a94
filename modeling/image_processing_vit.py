"""ViT preprocessing: resize to 224x224 (bilinear), scale to [0, 1], normalise with mean = std = 0.5.

That is how the google-research/vision_transformer checkpoints were trained (inputs in [-1, 1]) and what
Transformers' `ViTImageProcessor` does with the same settings.
"""

from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling

from .image_processing_base import TritonVisionImageProcessor


class ViTImageProcessor(TritonVisionImageProcessor):
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True
