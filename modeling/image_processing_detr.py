"""DETR preprocessing: resize (shorter side 800, longer at most 1333), ImageNet normalisation, padding to the
largest image of the batch with a `pixel_mask`, and COCO detection annotations turned into DETR targets.

The same pixels, masks and labels as Transformers' `DetrImageProcessorPil` for the same settings, including
its box convention: with `do_convert_annotations` boxes become cxcywh normalised by the image size, then
rescaled to the *padded* image when the batch is padded (Transformers' choice, kept for compatibility).

Annotation rules: crowd annotations (`iscrowd=1`) are dropped; each box is clipped to the image and boxes left
with zero width or height are dropped; an annotation entry whose own `image_id` differs from its image's
`image_id` raises `ValueError`. Only the COCO detection format is supported (no panoptic / masks).
`return_padded_labels=True` also emits `padded_labels` (`class_labels (B, T)`, `boxes (B, T, 4)`,
`num_targets (B,)`, torch tensors), the form `DetrForObjectDetection` trains on without host syncs.
"""

import numpy as np
import torch
from torch import nn
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import PaddingMode, center_to_corners_format, corners_to_center_format, pad
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    AnnotationFormat,
    ChannelDimension,
    PILImageResampling,
    get_image_size,
    get_max_height_width,
)
from transformers.processing_utils import ImagesKwargs

from .image_processing_base import TritonVisionImageProcessor


class DetrImageProcessorKwargs(ImagesKwargs, total=False):
    format: str | AnnotationFormat
    do_convert_annotations: bool
    return_padded_labels: bool


def _check_annotations(annotations, num_images: int) -> list[dict]:
    if isinstance(annotations, dict):
        annotations = [annotations]
    if not isinstance(annotations, (list, tuple)) or len(annotations) != num_images:
        count = len(annotations) if isinstance(annotations, (list, tuple)) else type(annotations).__name__
        raise ValueError(f"The number of images ({num_images}) and annotations ({count}) do not match.")
    for index, target in enumerate(annotations):
        if (
            not isinstance(target, dict)
            or "image_id" not in target
            or not isinstance(target.get("annotations"), (list, tuple))
        ):
            raise ValueError(
                f"annotations[{index}] must be a COCO detection target: a dict with `image_id` and `annotations` "
                "(a list of dicts with `bbox` [x, y, w, h] and `category_id`)"
            )
        for entry_index, entry in enumerate(target["annotations"]):
            if not isinstance(entry, dict) or "bbox" not in entry or "category_id" not in entry:
                raise ValueError(f"annotations[{index}]['annotations'][{entry_index}] needs `bbox` and `category_id`")
            if len(entry["bbox"]) != 4:
                raise ValueError(f"annotations[{index}]['annotations'][{entry_index}]['bbox'] must be [x, y, w, h]")
            if "image_id" in entry and entry["image_id"] != target["image_id"]:
                raise ValueError(
                    f"annotations[{index}]['annotations'][{entry_index}] belongs to image_id {entry['image_id']}, "
                    f"but is given with image_id {target['image_id']}"
                )
    return list(annotations)


def prepare_coco_detection_target(image: np.ndarray, target: dict) -> dict:
    """COCO entries of one `(C, H, W)` image as DETR's target: absolute xyxy boxes clipped to the image."""
    height, width = get_image_size(image, channel_dim=ChannelDimension.FIRST)
    entries = [entry for entry in target["annotations"] if entry.get("iscrowd", 0) == 0]
    boxes = np.asarray([entry["bbox"] for entry in entries], dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] = boxes[:, 0::2].clip(min=0, max=width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(min=0, max=height)
    keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
    return {
        "image_id": np.asarray([target["image_id"]], dtype=np.int64),
        "class_labels": np.asarray([entry["category_id"] for entry in entries], dtype=np.int64)[keep],
        "boxes": boxes[keep],
        "area": np.asarray([entry.get("area", 0.0) for entry in entries], dtype=np.float32)[keep],
        "iscrowd": np.asarray([entry.get("iscrowd", 0) for entry in entries], dtype=np.int64)[keep],
        "orig_size": np.asarray([int(height), int(width)], dtype=np.int64),
    }


class DetrImageProcessor(TritonVisionImageProcessor):
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    format = AnnotationFormat.COCO_DETECTION
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_pad = True
    size = {"shortest_edge": 800, "longest_edge": 1333}
    default_to_square = False
    return_padded_labels = False
    model_input_names = ["pixel_values", "pixel_mask"]
    valid_kwargs = DetrImageProcessorKwargs

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("do_pad", kwargs.pop("pad_and_return_pixel_mask", self.do_pad))
        max_size = kwargs.pop("max_size", None)
        size = kwargs.pop("size", None)
        if isinstance(size, int):  # the old `size=800, max_size=1333` form
            size = {"shortest_edge": size, "longest_edge": max_size or 1333}
        kwargs["size"] = size if size is not None else dict(self.size)
        if kwargs.get("do_convert_annotations") is None:
            do_normalize = kwargs.get("do_normalize")
            kwargs["do_convert_annotations"] = self.do_normalize if do_normalize is None else do_normalize
        super().__init__(**kwargs)

    def preprocess(self, images, annotations=None, return_segmentation_masks=None, masks_path=None, **kwargs):
        """`annotations`: one COCO detection target per image (`{"image_id", "annotations": [...]}`)."""
        if return_segmentation_masks or masks_path is not None:
            raise ValueError("segmentation masks (COCO panoptic) are not supported by this processor")
        return super().preprocess(images, annotations, **kwargs)

    def _preprocess(
        self,
        images,
        annotations,
        do_resize,
        size,
        resample,
        do_rescale,
        rescale_factor,
        do_normalize,
        do_convert_annotations,
        image_mean,
        image_std,
        do_pad,
        pad_size,
        format,
        return_tensors,
        return_padded_labels=False,
        **kwargs,
    ) -> BatchFeature:
        if AnnotationFormat(format) != AnnotationFormat.COCO_DETECTION:
            raise ValueError(f"only the coco_detection annotation format is supported, got {format}")
        if annotations is not None:
            annotations = _check_annotations(annotations, len(images))
        if return_padded_labels and (annotations is None or return_tensors != "pt"):
            raise ValueError("return_padded_labels=True needs annotations and return_tensors='pt'")

        processed_images, targets = [], []
        for index, image in enumerate(images):
            target = prepare_coco_detection_target(image, annotations[index]) if annotations is not None else None
            if do_resize:
                resized = self.resize(image, size=size, resample=resample)
                if target is not None:
                    target = self._resize_target(
                        target,
                        get_image_size(image, ChannelDimension.FIRST),
                        get_image_size(resized, ChannelDimension.FIRST),
                    )
                image = resized
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            if target is not None and do_convert_annotations:
                height, width = get_image_size(image, ChannelDimension.FIRST)
                target["boxes"] = corners_to_center_format(target["boxes"]) / np.asarray(
                    [width, height, width, height], dtype=np.float32
                )
            processed_images.append(image)
            targets.append(target)

        data = {}
        if do_pad:
            padded_size = (
                (pad_size.height, pad_size.width)
                if pad_size is not None
                else get_max_height_width(processed_images, input_data_format=ChannelDimension.FIRST)
            )
            masks = []
            for index, image in enumerate(processed_images):
                processed_images[index], mask = self._pad_image(image, padded_size)
                masks.append(mask)
                if targets[index] is not None:
                    self._pad_target(targets[index], image.shape[-2:], padded_size, do_convert_annotations)
            data["pixel_mask"] = masks
        data["pixel_values"] = processed_images
        encoded = BatchFeature(data, tensor_type=return_tensors)
        if annotations is not None:
            encoded["labels"] = [BatchFeature(target, tensor_type=return_tensors) for target in targets]
            if return_padded_labels:
                encoded["padded_labels"] = self.pad_labels(encoded["labels"])
        return encoded

    @staticmethod
    def _resize_target(target: dict, orig_size, new_size) -> dict:
        ratio_height, ratio_width = (float(new) / float(old) for new, old in zip(new_size, orig_size))
        target["boxes"] = target["boxes"] * np.asarray(
            [ratio_width, ratio_height, ratio_width, ratio_height], dtype=np.float32
        )
        target["area"] = target["area"] * (ratio_width * ratio_height)
        target["size"] = new_size
        return target

    @staticmethod
    def _pad_image(image: np.ndarray, padded_size):
        height, width = image.shape[-2:]
        if height > padded_size[0] or width > padded_size[1]:
            raise ValueError(f"pad_size {tuple(padded_size)} is smaller than an image of size {(height, width)}")
        if (height, width) != tuple(padded_size):
            padding = ((0, padded_size[0] - height), (0, padded_size[1] - width))
            image = pad(
                image,
                padding,
                mode=PaddingMode.CONSTANT,
                constant_values=0,
                data_format=ChannelDimension.FIRST,
                input_data_format=ChannelDimension.FIRST,
            )
        mask = np.zeros(padded_size, dtype=np.int64)
        mask[:height, :width] = 1
        return image, mask

    @staticmethod
    def _pad_target(target: dict, image_size, padded_size, rescale_boxes: bool) -> None:
        if tuple(image_size) == tuple(padded_size):
            return
        if rescale_boxes:
            ratio_height, ratio_width = image_size[0] / padded_size[0], image_size[1] / padded_size[1]
            scale = np.asarray([ratio_width, ratio_height, ratio_width, ratio_height])
            target["boxes"] = (target["boxes"] * scale).astype(np.float32)
        target["size"] = tuple(padded_size)

    @staticmethod
    def pad_labels(labels: list) -> dict:
        """Per-image label dicts (torch) as `class_labels (B, T)`, `boxes (B, T, 4)`, `num_targets (B,)`."""
        counts = [int(target["class_labels"].shape[0]) for target in labels]
        max_targets = max(counts, default=0)
        class_labels = torch.zeros((len(labels), max_targets), dtype=torch.int64)
        boxes = torch.tensor([0.5, 0.5, 1.0, 1.0]).repeat(len(labels), max_targets, 1)
        for index, (target, count) in enumerate(zip(labels, counts)):
            class_labels[index, :count] = target["class_labels"]
            boxes[index, :count] = target["boxes"].float()
        return {"class_labels": class_labels, "boxes": boxes, "num_targets": torch.tensor(counts, dtype=torch.int64)}

    def post_process_object_detection(self, outputs, threshold: float = 0.5, target_sizes=None) -> list[dict]:
        """Scores, labels and absolute xyxy boxes per image, keeping scores above `threshold` (as Transformers).

        `target_sizes`: `(B, 2)` tensor or list of `(height, width)`; boxes stay relative if None.
        """
        logits, boxes = outputs.logits, outputs.pred_boxes
        if target_sizes is not None and len(logits) != len(target_sizes):
            raise ValueError("Make sure that you pass in as many target sizes as the batch dimension of the logits")
        scores, labels = nn.functional.softmax(logits, -1)[..., :-1].max(-1)
        boxes = center_to_corners_format(boxes)
        if target_sizes is not None:
            if isinstance(target_sizes, (list, tuple)):
                img_h = torch.tensor([float(size[0]) for size in target_sizes])
                img_w = torch.tensor([float(size[1]) for size in target_sizes])
            else:
                img_h, img_w = target_sizes.unbind(1)
            scale = torch.stack([img_w, img_h, img_w, img_h], dim=1).to(boxes.device, boxes.dtype)
            boxes = boxes * scale[:, None, :]
        results = []
        for image_scores, image_labels, image_boxes in zip(scores, labels, boxes):
            keep = image_scores > threshold
            results.append({"scores": image_scores[keep], "labels": image_labels[keep], "boxes": image_boxes[keep]})
        return results
