"""ViT-hybrid preprocessing as google/vit-hybrid-base-bit-384 was evaluated: shorter side to 384 (bicubic,
aspect kept), centre crop 384x384, scale to [0, 1], normalise with mean = std = 0.5.

Those are the settings of timm's `vit_base_r50_s16_384` (input 384, crop_pct 1.0, bicubic, mean/std 0.5)
from which Transformers 4.x converted the checkpoint and wrote its processor. Transformers 4.x's class
defaults differed (224, CLIP statistics); a Hub `preprocessor_config.json` still wins over these defaults.
"""

from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling

from .image_processing_base import TritonVisionImageProcessor


class ViTHybridImageProcessor(TritonVisionImageProcessor):
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"shortest_edge": 384}
    crop_size = {"height": 384, "width": 384}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
