"""DeiT preprocessing as DeiT was evaluated: shorter side to 256 (bicubic, aspect kept), centre crop 224,
ImageNet mean/std.

This is the evaluation transform of facebookresearch/deit (resize by 256/224, centre crop, ImageNet
statistics). Transformers' `DeiTImageProcessor` defaults differ: it squashes to 256x256 and normalises
with mean = std = 0.5, which is not what DeiT was trained with. A Hub `preprocessor_config.json` still
wins over these defaults, so loading a checkpoint reproduces its published settings.
"""

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from .image_processing_base import TritonVisionImageProcessor


class DeiTImageProcessor(TritonVisionImageProcessor):
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
