"""DetrImageProcessor against Transformers' DETR processors (PIL and torchvision backends), and its error cases."""

import numpy as np
import PIL.Image
import pytest
import torch
import transformers

from tritonvision.modeling.image_processing_detr import DetrImageProcessor

SIZE = {"shortest_edge": 64, "longest_edge": 96}


def _images():
    rng = np.random.default_rng(0)
    return [
        PIL.Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)),
        PIL.Image.fromarray(rng.integers(0, 256, (80, 50, 3), dtype=np.uint8)),
    ]


ANNOTATIONS = [
    {
        "image_id": 1,
        "annotations": [
            {"image_id": 1, "bbox": [10, 5, 30, 20], "category_id": 3, "area": 600, "iscrowd": 0},
            {"bbox": [80, 50, 30, 30], "category_id": 1, "area": 900, "iscrowd": 0},  # sticks out: clipped
            {"bbox": [5, 5, 0, 10], "category_id": 2, "area": 0, "iscrowd": 0},  # zero width: dropped
            {"bbox": [95, 70, 10, 10], "category_id": 2, "area": 100, "iscrowd": 0},  # outside: dropped
            {"bbox": [0, 0, 10, 10], "category_id": 4, "area": 100, "iscrowd": 1},  # crowd: dropped
        ],
    },
    {"image_id": 2, "annotations": [{"bbox": [1, 2, 3, 4], "category_id": 7, "area": 12, "iscrowd": 0}]},
]


@pytest.mark.parametrize("stock_class", [transformers.DetrImageProcessorPil, transformers.DetrImageProcessor])
def test_matches_stock_processor(stock_class):
    expected = stock_class(size=SIZE)(_images(), annotations=ANNOTATIONS, return_tensors="pt")
    actual = DetrImageProcessor(size=SIZE)(_images(), annotations=ANNOTATIONS, return_tensors="pt")
    assert actual.pixel_values.shape == expected.pixel_values.shape == (2, 3, 96, 96)
    torch.testing.assert_close(actual.pixel_values, expected.pixel_values, atol=1e-5, rtol=0)
    assert torch.equal(actual.pixel_mask, expected.pixel_mask)
    assert actual.pixel_mask[1].sum() < actual.pixel_mask.numel() // 2  # the second image is padded
    for ours, theirs in zip(actual["labels"], expected["labels"]):
        assert set(ours.keys()) == set(theirs.keys())
        for key in theirs:
            assert ours[key].dtype == theirs[key].dtype, key
            torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=0)
    assert actual["labels"][0]["class_labels"].tolist() == [3, 1]  # degenerate, outside and crowd boxes dropped


def test_default_size_and_post_processing_match_stock():
    image = PIL.Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    expected = transformers.DetrImageProcessorPil()(image, return_tensors="pt")
    actual = DetrImageProcessor()(image, return_tensors="pt")
    assert actual.pixel_values.shape == (1, 3, 800, 1066)  # int(800 * 40 / 30)
    torch.testing.assert_close(actual.pixel_values, expected.pixel_values, atol=1e-5, rtol=0)

    outputs = transformers.models.detr.modeling_detr.DetrObjectDetectionOutput(
        logits=torch.randn(2, 10, 6) * 3, pred_boxes=torch.rand(2, 10, 4)
    )
    for sizes in ([(30, 40), (50, 20)], torch.tensor([[30, 40], [50, 20]])):
        ours = DetrImageProcessor().post_process_object_detection(outputs, threshold=0.3, target_sizes=sizes)
        theirs = transformers.DetrImageProcessorPil().post_process_object_detection(outputs, 0.3, sizes)
        for a, b in zip(ours, theirs):
            assert a["scores"].numel() > 0
            for key in ("scores", "labels", "boxes"):
                torch.testing.assert_close(a[key], b[key])


def test_gray_and_rgba_become_rgb():
    rgb = _images()[0]
    processor = DetrImageProcessor(size=SIZE)
    expected = processor(rgb.convert("L").convert("RGB"), return_tensors="pt").pixel_values
    gray = processor(rgb.convert("L"), return_tensors="pt").pixel_values
    assert gray.shape == expected.shape and torch.equal(gray, expected)
    rgba = processor(rgb.convert("RGBA"), return_tensors="pt").pixel_values
    torch.testing.assert_close(rgba, processor(rgb, return_tensors="pt").pixel_values)


def test_padded_labels_agree_with_labels():
    out = DetrImageProcessor(size=SIZE)(
        _images(), annotations=ANNOTATIONS, return_tensors="pt", return_padded_labels=True
    )
    padded = out["padded_labels"]
    assert padded["num_targets"].tolist() == [2, 1]
    assert padded["class_labels"].shape == (2, 2) and padded["boxes"].shape == (2, 2, 4)
    for index, target in enumerate(out["labels"]):
        count = int(padded["num_targets"][index])
        assert torch.equal(padded["class_labels"][index, :count], target["class_labels"])
        assert torch.equal(padded["boxes"][index, :count], target["boxes"])


def test_annotation_errors():
    processor = DetrImageProcessor(size=SIZE)
    wrong_image = [
        dict(ANNOTATIONS[0], annotations=[{"image_id": 9, "bbox": [1, 1, 5, 5], "category_id": 1}]),
        ANNOTATIONS[1],
    ]
    with pytest.raises(ValueError, match="image_id"):
        processor(_images(), annotations=wrong_image)
    with pytest.raises(ValueError, match="do not match"):
        processor(_images(), annotations=ANNOTATIONS[:1])
    with pytest.raises(ValueError, match="bbox"):
        processor(_images(), annotations=[{"image_id": 1, "annotations": [{"category_id": 1}]}, ANNOTATIONS[1]])
    with pytest.raises(ValueError, match="panoptic|coco_detection"):
        processor(_images(), annotations=ANNOTATIONS, format="coco_panoptic")
    with pytest.raises(ValueError, match="return_tensors"):
        processor(_images(), annotations=ANNOTATIONS, return_padded_labels=True)
    with pytest.raises(ValueError):
        processor(np.zeros((0, 5, 3), dtype=np.uint8))


def test_save_and_reload(tmp_path):
    processor = DetrImageProcessor(size=SIZE, do_convert_annotations=False)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "image_processing_detr.py").is_file()
    reloaded = DetrImageProcessor.from_pretrained(tmp_path)
    assert reloaded.size == processor.size and reloaded.do_convert_annotations is False
    stock = transformers.DetrImageProcessorPil.from_pretrained(tmp_path)
    torch.testing.assert_close(
        reloaded(_images(), return_tensors="pt").pixel_values, stock(_images(), return_tensors="pt").pixel_values
    )
