"""Offline data sets for the examples, built from scikit-learn's 8x8 handwritten digits (1,797 images).

Nothing is downloaded: the digits ship inside scikit-learn. Both builders write ordinary files in the
formats users bring (an image folder per class, or COCO-format JSON beside an image folder), so the
examples read the generated data through exactly the code path that reads real data. Everything is a
function of `seed`: the same seed writes the same files.

- `write_digits_imagefolder`: `train/<digit>/*.png` and `validation/<digit>/*.png`, upsampled RGB images,
  a held-out split of the 1,797 digits.
- `write_digits_detection_coco`: canvases with 1 to `max_digits` digits pasted at random positions and
  scales, their tight boxes as COCO annotations; validation canvases use only held-out digits.
"""

import json
from pathlib import Path

import numpy as np
import PIL.Image

DIGIT_NAMES = [str(digit) for digit in range(10)]


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits as `(N, 8, 8)` uint8 ink (0 = background, 255 = full ink) and `(N,)` labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return ink, digits.target.astype(np.int64)


def split_indices(num_items: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation cut in two: (train indices, held-out indices)."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    order = np.random.default_rng(seed).permutation(num_items)
    num_validation = max(1, round(num_items * validation_fraction))
    return np.sort(order[num_validation:]), np.sort(order[:num_validation])


def digit_image(ink: np.ndarray, size: int) -> PIL.Image.Image:
    """One `(8, 8)` digit as a `size` x `size` RGB image, white ink on black, bilinear upsampling."""
    gray = PIL.Image.fromarray(ink, mode="L").resize((size, size), PIL.Image.BILINEAR)
    return gray.convert("RGB")


def write_digits_imagefolder(
    root: str | Path,
    image_size: int = 16,
    validation_fraction: float = 0.2,
    seed: int = 0,
    max_images: int | None = None,
) -> tuple[Path, Path]:
    """Write the digits as `root/train/<digit>/` and `root/validation/<digit>/`; return the two folders.

    `max_images` keeps the first images of a seeded shuffle (tests use a few dozen).
    """
    ink, labels = load_digits_arrays()
    if max_images is not None:
        keep = np.sort(np.random.default_rng(seed + 1).permutation(len(labels))[:max_images])
        ink, labels = ink[keep], labels[keep]
    train_index, validation_index = split_indices(len(labels), validation_fraction, seed)
    root = Path(root)
    for split, indices in (("train", train_index), ("validation", validation_index)):
        for index in indices:
            folder = root / split / DIGIT_NAMES[labels[index]]
            folder.mkdir(parents=True, exist_ok=True)
            digit_image(ink[index], image_size).save(folder / f"{index:04d}.png")
    return root / "train", root / "validation"


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (row0, col0, row1, col1) of the visible ink of an 8x8 digit, end exclusive."""
    rows = np.nonzero(ink.max(axis=1) > 40)[0]
    cols = np.nonzero(ink.max(axis=0) > 40)[0]
    if len(rows) == 0:
        return 0, 0, ink.shape[0], ink.shape[1]
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def _overlaps(box: list[float], boxes: list[list[float]], max_iou: float) -> bool:
    x, y, w, h = box
    for ox, oy, ow, oh in boxes:
        inter_w = max(0.0, min(x + w, ox + ow) - max(x, ox))
        inter_h = max(0.0, min(y + h, oy + oh) - max(y, oy))
        inter = inter_w * inter_h
        if inter / (w * h + ow * oh - inter) > max_iou:
            return True
    return False


def make_canvas(
    ink: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    canvas_size: int,
    max_digits: int,
    digit_sizes: tuple[int, int],
) -> tuple[PIL.Image.Image, list[dict]]:
    """One black canvas with 1..max_digits digits pasted (brightest pixel wins); COCO `bbox`es in pixels."""
    canvas = np.zeros((canvas_size, canvas_size), dtype=np.uint8)
    objects: list[dict] = []
    boxes: list[list[float]] = []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        for _attempt in range(20):
            index = int(rng.integers(len(labels)))
            size = int(rng.integers(digit_sizes[0], digit_sizes[1] + 1))
            left, top = (int(v) for v in rng.integers(0, canvas_size - size + 1, size=2))
            row0, col0, row1, col1 = _ink_box(ink[index])
            scale = size / ink.shape[1]
            box = [left + col0 * scale, top + row0 * scale, (col1 - col0) * scale, (row1 - row0) * scale]
            if not _overlaps(box, boxes, max_iou=0.1):
                break
        else:
            continue
        patch = np.asarray(PIL.Image.fromarray(ink[index], mode="L").resize((size, size), PIL.Image.BILINEAR))
        region = canvas[top : top + size, left : left + size]
        np.maximum(region, patch, out=region)
        boxes.append(box)
        objects.append({"bbox": [round(v, 2) for v in box], "category_id": int(labels[index])})
    return PIL.Image.fromarray(canvas, mode="L").convert("RGB"), objects


def write_coco_split(folder: Path, canvases: list[tuple[PIL.Image.Image, list[dict]]]) -> Path:
    """Write `folder/images/*.png` and `folder/annotations.json` (COCO detection format); return the JSON path."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, (image, objects) in enumerate(canvases):
        file_name = f"{image_id:05d}.png"
        image.save(folder / "images" / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": image.width, "height": image.height})
        for obj in objects:
            width, height = obj["bbox"][2], obj["bbox"][3]
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": image_id,
                    "category_id": obj["category_id"],
                    "bbox": obj["bbox"],
                    "area": round(width * height, 2),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": digit, "name": name, "supercategory": "digit"} for digit, name in enumerate(DIGIT_NAMES)]
    annotation_file = folder / "annotations.json"
    annotation_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return annotation_file


def write_digits_detection_coco(
    root: str | Path,
    num_train: int = 2000,
    num_validation: int = 300,
    canvas_size: int = 64,
    max_digits: int = 2,
    digit_sizes: tuple[int, int] = (16, 32),
    seed: int = 0,
) -> dict[str, Path]:
    """Write train and validation canvases in COCO format under `root`.

    Returns {"train_annotations", "train_images", "validation_annotations", "validation_images"}.
    """
    ink, labels = load_digits_arrays()
    train_index, validation_index = split_indices(len(labels), 0.2, seed)
    root = Path(root)
    paths = {}
    for offset, (split, indices, count) in enumerate(
        (("train", train_index, num_train), ("validation", validation_index, num_validation))
    ):
        rng = np.random.default_rng([seed, offset])
        canvases = [
            make_canvas(ink[indices], labels[indices], rng, canvas_size, max_digits, digit_sizes) for _ in range(count)
        ]
        paths[f"{split}_annotations"] = write_coco_split(root / split, canvases)
        paths[f"{split}_images"] = root / split / "images"
    return paths
