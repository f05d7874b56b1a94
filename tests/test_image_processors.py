"""ViT and DeiT processors: Transformers' pixel values for the same settings, trained-with defaults, clear errors."""

import numpy as np
import PIL.Image
import pytest
import torch
import transformers

import tritonvision

RNG = np.random.default_rng(0)


def _images():
    return [
        PIL.Image.fromarray(RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)),
        PIL.Image.fromarray(RNG.integers(0, 256, (180, 150, 3), dtype=np.uint8)),
    ]


@pytest.mark.parametrize(
    "ours_cls, stock_pil_cls, stock_torchvision_cls",
    [
        (tritonvision.ViTImageProcessor, transformers.ViTImageProcessorPil, transformers.ViTImageProcessor),
        (tritonvision.DeiTImageProcessor, transformers.DeiTImageProcessorPil, transformers.DeiTImageProcessor),
    ],
)
def test_same_pixel_values_as_transformers_for_the_same_settings(ours_cls, stock_pil_cls, stock_torchvision_cls):
    ours = ours_cls()
    names = ("size", "crop_size", "resample", "image_mean", "image_std", "do_center_crop", "do_resize")
    settings = {name: value for name, value in ours.to_dict().items() if name in names}
    images = _images()
    expected = stock_pil_cls(**settings)(images, return_tensors="pt").pixel_values
    actual = ours(images, return_tensors="pt").pixel_values
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    # Transformers' torchvision backend resizes uint8 tensors: at most one grey level apart from PIL.
    torchvision_values = stock_torchvision_cls(**settings)(images, return_tensors="pt").pixel_values
    assert (actual - torchvision_values).abs().max() <= 1.0 / 255 / min(ours.image_std) + 1e-6


def test_defaults_follow_how_each_model_was_trained():
    vit = tritonvision.ViTImageProcessor()
    assert vit.size == {"height": 224, "width": 224} and vit.resample == PIL.Image.Resampling.BILINEAR
    assert list(vit.image_mean) == list(vit.image_std) == [0.5, 0.5, 0.5]
    deit = tritonvision.DeiTImageProcessor()
    assert deit.size == {"shortest_edge": 256} and deit.crop_size == {"height": 224, "width": 224}
    assert deit.resample == PIL.Image.Resampling.BICUBIC and deit.do_center_crop
    np.testing.assert_allclose(deit.image_mean, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(deit.image_std, [0.229, 0.224, 0.225])
    # A 300x400 image keeps its aspect ratio (256x341) before the 224 centre crop.
    image = PIL.Image.fromarray(RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    resized = image.resize((341, 256), PIL.Image.Resampling.BICUBIC)
    left, top = (341 - 224) // 2, (256 - 224) // 2
    crop = np.asarray(resized.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    expected = (crop - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    actual = deit(image, return_tensors="pt").pixel_values[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((30, 40), dtype=np.uint8),  # gray
        RNG.random((30, 40, 4)).astype(np.float32),  # RGBA, channels last
        torch.randint(0, 256, (4, 30, 40), dtype=torch.uint8),  # RGBA, channels first
        torch.rand(2, 3, 30, 40),  # a batch
        [PIL.Image.new("L", (40, 30)), PIL.Image.new("RGBA", (40, 30))],
    ],
    ids=["gray", "rgba-last", "rgba-first", "batch", "pil-modes"],
)
def test_gray_rgba_and_batches_become_rgb(image):
    values = tritonvision.ViTImageProcessor()(image, return_tensors="pt").pixel_values
    assert values.shape[1:] == (3, 224, 224) and torch.isfinite(values).all()


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((3,)), "shape"),
        (np.zeros((0, 5, 3)), "empty"),
        (np.zeros((5, 5, 7)), "channels"),
        ("image.png", "str"),
        ([], "empty"),
        (np.zeros((2, 2, 2, 2, 2)), "shape"),
        (np.zeros((8, 8, 3), dtype=bool), "dtype"),
    ],
)
def test_non_images_raise_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        tritonvision.ViTImageProcessor()(bad)
