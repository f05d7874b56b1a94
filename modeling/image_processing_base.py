"""What this package's image processors share: strict input checks and saving as a remote-code folder.

The processors build on Transformers' PIL/NumPy backend, so a Hub `preprocessor_config.json` means the
same thing here as in Transformers, without needing torchvision at run time.
"""

import json
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_backends import PilBackend

from .remote_code import auto_map_entry, module_file, write_code_folder

IMAGE_TYPES = (PIL.Image.Image, np.ndarray, torch.Tensor)


def _check_image(image, where: str) -> None:
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{where} is an empty image ({image.width}x{image.height})")
        return
    if not isinstance(image, IMAGE_TYPES):
        raise ValueError(f"{where} is a {type(image).__name__}; expected a PIL image, numpy array or torch tensor")
    shape = tuple(image.shape)
    if image.ndim not in (2, 3):
        raise ValueError(f"{where} has shape {shape}: an image is (H, W), (H, W, C) or (C, H, W)")
    if image.ndim == 3 and shape[0] not in (1, 3, 4) and shape[-1] not in (1, 3, 4):
        raise ValueError(f"{where} has shape {shape}: expected 1 (gray), 3 (RGB) or 4 (RGBA) channels")
    spatial = shape if image.ndim == 2 else (shape[1:] if shape[0] in (1, 3, 4) and shape[-1] > 4 else shape[:2])
    if 0 in spatial or 0 in shape:
        raise ValueError(f"{where} is empty (shape {shape})")
    if image.dtype in (torch.bool, np.bool_) or not (
        np.issubdtype(image.dtype, np.number)
        if isinstance(image, np.ndarray)
        else image.dtype.is_floating_point or image.dtype == torch.uint8
    ):
        raise ValueError(f"{where} has dtype {image.dtype}; expected uint8 or floating point pixels")


def validate_images(images) -> None:
    """Raise a clear `ValueError` unless `images` is one image or a (nested) batch of images."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("got an empty list of images")
        for index, image in enumerate(images):
            if isinstance(image, (list, tuple)):
                validate_images(image)
            else:
                _check_image(image, f"image {index}")
    elif isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        for index in range(images.shape[0]):
            _check_image(images[index], f"image {index}")
        if images.shape[0] == 0:
            raise ValueError("got an empty batch of images")
    else:
        _check_image(images, "the image")


def add_channel_axis(images):
    """Give 2-D (gray) arrays and tensors a trailing channel axis, which Transformers' image checks require."""
    if isinstance(images, (list, tuple)):
        return [add_channel_axis(image) for image in images]
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 2:
        return images[..., None]
    return images


class TritonVisionImageProcessor(PilBackend):
    """PIL-backend processor that checks its inputs and saves itself with its code.

    Gray and RGBA inputs are converted to RGB by default (`do_convert_rgb=True`).
    """

    model_input_names = ["pixel_values"]
    do_convert_rgb = True

    def preprocess(self, images, *args, **kwargs):
        validate_images(images)
        return super().preprocess(add_channel_axis(images), *args, **kwargs)

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Write `preprocessor_config.json` with an `auto_map` and the code files beside it."""
        if push_to_hub:
            raise ValueError("use tritonvision.push_to_hub(model, repo_id, processor=...) to publish a processor")
        saved = super().save_pretrained(save_directory, **kwargs)
        config_file = Path(save_directory) / "preprocessor_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["auto_map"] = {"AutoImageProcessor": auto_map_entry(type(self))}
        # Transformers resolves `image_processor_type` by class name first, which would pick its own class of
        # the same name over ours; without it, the auto_map (remote code) or our registration decides.
        config.pop("image_processor_type", None)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_code_folder([module_file(type(self))], save_directory)
        return saved
