"""Fine-tune (or train from scratch) `tritonvision`'s DETR for object detection with Accelerate.

    accelerate launch examples/object_detection.py --train_annotations train.json --train_images train/ \
        --validation_annotations val.json --validation_images val/ --output_dir OUT
    python examples/object_detection.py --output_dir OUT     # offline default: digits pasted on canvases

The arguments are those of Transformers' `run_object_detection_no_trainer.py`, with COCO-format JSON
files (and their image folders) as the local data format. With no data argument the example writes
canvases of scikit-learn digits in COCO format (64x64, 1-2 digits of 16-32 px) and reads them back like
user data; with no model argument it builds a small DETR from a config (ResNet-18 DC5, 2+2 layers of
width 128, 10 queries, auxiliary decoding losses, no dropout) with the DETR authors' initialisation, and
first pretrains its ResNet to tag the training images with the classes they contain: the offline stand-in
for the ImageNet backbone DETR always starts from (`pretrain_backbone` says why it is needed).

Training augmentation is DETR's: random horizontal flip (`--hflip_probability`) and a multi-scale resize
(shorter side drawn from `--train_sizes`, longer side capped at `--max_size`), boxes moved with the
pixels. The defaults suit the digit canvases: no flip (a mirrored digit is not a digit) and one scale
(the canvases already vary the digits' size twofold); DETR's COCO values are `--hflip_probability 0.5
--train_sizes 480 512 ... 800 --max_size 1333`. Each sample's draws
come from a generator seeded by (seed, epoch, index), so resuming from a checkpoint replays them exactly.
Boxes are normalised by each image's own size and batches are padded bottom/right with the padding
marked in `pixel_mask`, as in the DETR authors' code. Evaluation is COCO mAP by `pycocotools.COCOeval`.
"""

import argparse
import contextlib
import io
import json
import math
import sys
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForObjectDetection

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_data import write_digits_detection_coco
from image_classification import (
    add_training_arguments,
    check_training_arguments,
    finish_run,
    generated_data_dir,
    load_pretrained,
    logger,
    make_accelerator,
    make_dataloader,
    make_optimizer_and_scheduler,
    set_threads,
    train_and_evaluate,
)

from tritonvision import DetrConfig, DetrForObjectDetection, DetrImageProcessor

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_training_arguments(parser)
    add = parser.add_argument
    add("--train_annotations", type=str, default=None, help="COCO-format JSON of the training images.")
    add("--train_images", type=str, default=None, help="Folder of the training images (default: beside the JSON).")
    add("--validation_annotations", type=str, default=None)
    add("--validation_images", type=str, default=None)
    add("--train_sizes", type=int, nargs="+", default=[64], help="Shorter sides for training, drawn per image.")
    add(
        "--hflip_probability",
        type=float,
        default=0.0,
        help="Random horizontal flip in training (DETR: 0.5; default 0: a mirrored digit is not a digit).",
    )
    add("--image_size", type=int, default=64, help="Shorter side at evaluation (and of the saved processor).")
    add("--max_size", type=int, default=96, help="Cap on the longer side after resizing.")
    add("--num_train_images", type=int, default=2000, help="Offline default: number of training canvases.")
    add("--num_validation_images", type=int, default=200)
    add("--canvas_size", type=int, default=64, help="Offline default: side of the generated canvases.")
    add("--max_digits", type=int, default=2, help="Offline default: at most this many digits per canvas.")
    add("--d_model", type=int, default=128, help="Width of the from-scratch DETR.")
    add("--num_layers", type=int, default=2, help="Encoder and decoder layers of the from-scratch DETR.")
    add("--num_queries", type=int, default=10, help="Object queries of the from-scratch DETR.")
    add("--dropout", type=float, default=0.0, help="Dropout of the from-scratch DETR's Transformer.")
    add(
        "--backbone_pretrain_steps",
        type=int,
        default=400,
        help="From scratch only: first train the ResNet to tag the training images with the classes they "
        "contain, for this many steps (0: off), the offline stand-in for DETR's ImageNet-pretrained backbone.",
    )
    add("--backbone_pretrain_size", type=int, default=64, help="Side of the images for that, in pixels.")
    add("--max_train_samples", type=int, default=None)
    add("--max_eval_samples", type=int, default=None)
    parser.set_defaults(
        learning_rate=None,
        weight_decay=1e-4,
        max_grad_norm=0.1,
        num_train_epochs=6,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
    )
    args = parser.parse_args(argv)
    check_training_arguments(args)
    if not 0.0 <= args.hflip_probability <= 1.0:
        raise ValueError(f"--hflip_probability must be in [0, 1], got {args.hflip_probability}")
    if args.backbone_pretrain_steps < 0:
        raise ValueError(f"--backbone_pretrain_steps must be >= 0, got {args.backbone_pretrain_steps}")
    return args


# ----------------------------------------------------------------------------------------------------------
# Data: COCO JSON (or a Hub dataset with the cppe-5 layout) as a `datasets.Dataset`
# ----------------------------------------------------------------------------------------------------------
def coco_to_dataset(
    annotation_file: str | Path, image_dir: str | Path | None = None
) -> tuple[datasets.Dataset, list[str]]:
    """One row per image: image_id, image, width, height, objects {id, bbox (xywh px), category (index), area}.

    Category ids are mapped to contiguous indices in the order of the file's `categories`.
    """
    annotation_file = Path(annotation_file)
    coco = json.loads(annotation_file.read_text())
    image_dir = Path(image_dir) if image_dir is not None else annotation_file.parent / "images"
    categories = sorted(coco["categories"], key=lambda category: category["id"])
    index_of = {category["id"]: index for index, category in enumerate(categories)}
    objects = {image["id"]: {"id": [], "bbox": [], "category": [], "area": []} for image in coco["images"]}
    for annotation in coco["annotations"]:
        target = objects[annotation["image_id"]]
        target["id"].append(annotation["id"])
        target["bbox"].append([float(v) for v in annotation["bbox"]])
        target["category"].append(index_of[annotation["category_id"]])
        target["area"].append(float(annotation.get("area", annotation["bbox"][2] * annotation["bbox"][3])))
    rows = {
        "image_id": [image["id"] for image in coco["images"]],
        "image": [str(image_dir / image["file_name"]) for image in coco["images"]],
        "width": [image["width"] for image in coco["images"]],
        "height": [image["height"] for image in coco["images"]],
        "objects": [objects[image["id"]] for image in coco["images"]],
    }
    dataset = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    return dataset, [category["name"] for category in categories]


def load_detection_data(args, accelerator) -> tuple[datasets.DatasetDict, list[str]]:
    if args.dataset_name is not None:
        dataset = datasets.load_dataset(args.dataset_name, trust_remote_code=args.trust_remote_code)
        if "validation" not in dataset:
            split = dataset["train"].train_test_split(args.train_val_split, seed=args.seed)
            dataset = datasets.DatasetDict(train=split["train"], validation=split["test"])
        category = dataset["train"].features["objects"]
        category = category.feature["category"] if hasattr(category, "feature") else category["category"]
        labels = (category.feature if hasattr(category, "feature") else category).names
    else:
        paths = {
            "train_annotations": args.train_annotations,
            "train_images": args.train_images,
            "validation_annotations": args.validation_annotations,
            "validation_images": args.validation_images,
        }
        if args.train_annotations is None:
            name = f"digit_canvases_{args.canvas_size}px_{args.max_digits}_{args.num_train_images}"
            root = generated_data_dir(args, "digit_canvases") / name
            with accelerator.main_process_first():
                if accelerator.is_main_process and not (root / "validation" / "annotations.json").is_file():
                    write_digits_detection_coco(
                        root,
                        num_train=args.num_train_images,
                        num_validation=args.num_validation_images,
                        canvas_size=args.canvas_size,
                        max_digits=args.max_digits,
                        seed=args.seed,
                    )
            paths = {
                f"{split}_{kind}": root / split / ("annotations.json" if kind == "annotations" else "images")
                for split in ("train", "validation")
                for kind in ("annotations", "images")
            }
        if paths["validation_annotations"] is None:
            raise ValueError("--train_annotations needs --validation_annotations (COCO JSON) for the evaluation")
        train, labels = coco_to_dataset(paths["train_annotations"], paths["train_images"])
        validation, _ = coco_to_dataset(paths["validation_annotations"], paths["validation_images"])
        dataset = datasets.DatasetDict(train=train, validation=validation)
    if args.max_train_samples is not None:
        dataset["train"] = dataset["train"].select(range(args.max_train_samples))
    if args.max_eval_samples is not None:
        dataset["validation"] = dataset["validation"].select(range(args.max_eval_samples))
    return dataset, list(labels)


def resized_shape(height: int, width: int, shorter: int, max_size: int) -> tuple[int, int]:
    """(height, width) with the shorter side `shorter`, shrunk further if the longer side passes `max_size`."""
    scale = shorter / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


class DetectionDataset(torch.utils.data.Dataset):
    """Rows of a detection `datasets.Dataset` as (pixel_values, DETR labels), augmented when `train`.

    Each item's random draws come from `np.random.default_rng([seed, epoch, index])`: never from the
    global RNG, so the augmentation of a batch does not depend on what ran before it.
    """

    def __init__(
        self,
        rows: datasets.Dataset,
        processor,
        train: bool,
        sizes: list[int],
        max_size: int,
        seed: int,
        hflip_probability: float = 0.5,
    ):
        self.rows, self.processor, self.train = rows, processor, train
        self.sizes, self.max_size, self.seed, self.epoch = sizes, max_size, seed, 0
        self.hflip_probability = hflip_probability

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        image = row["image"].convert("RGB")
        objects = row["objects"]
        boxes = np.asarray(objects["bbox"], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy, in pixels
        orig_height, orig_width = image.height, image.width
        shorter = self.sizes[-1]
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < self.hflip_probability:
                image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
                boxes[:, [0, 2]] = orig_width - boxes[:, [2, 0]]
            shorter = int(rng.choice(self.sizes))
        height, width = resized_shape(orig_height, orig_width, shorter, self.max_size)
        image = image.resize((width, height), PIL.Image.BILINEAR)
        boxes *= np.array([width / orig_width, height / orig_height] * 2, dtype=np.float32)
        cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)
        cxcywh /= np.array([width, height, width, height], dtype=np.float32)
        pixel_values = self.processor(images=image, do_resize=False, return_tensors="pt")["pixel_values"][0]
        labels = {
            "class_labels": torch.tensor(objects["category"], dtype=torch.int64),
            "boxes": torch.from_numpy(np.clip(cxcywh, 0.0, 1.0)),
        }
        return {"pixel_values": pixel_values, "labels": labels, "index": index, "orig_size": (orig_height, orig_width)}


def collate_detection(examples: list[dict], with_eval_info: bool = False) -> dict:
    """Pad to the largest image of the batch (bottom/right); `pixel_mask` is 1 on real pixels."""
    height = max(example["pixel_values"].shape[1] for example in examples)
    width = max(example["pixel_values"].shape[2] for example in examples)
    pixel_values = torch.zeros(len(examples), 3, height, width)
    pixel_mask = torch.zeros(len(examples), height, width, dtype=torch.int64)
    for slot, example in enumerate(examples):
        _, h, w = example["pixel_values"].shape
        pixel_values[slot, :, :h, :w] = example["pixel_values"]
        pixel_mask[slot, :h, :w] = 1
    batch = {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": [e["labels"] for e in examples]}
    if with_eval_info:
        batch["index"] = torch.tensor([example["index"] for example in examples])
        batch["orig_size"] = torch.tensor([example["orig_size"] for example in examples])
    return batch


def collate_detection_eval(examples: list[dict]) -> dict:
    return collate_detection(examples, with_eval_info=True)


# ----------------------------------------------------------------------------------------------------------
# Model and metric
# ----------------------------------------------------------------------------------------------------------
def small_detr(
    labels: list[str],
    image_size: int,
    max_size: int,
    d_model: int = 128,
    num_layers: int = 2,
    num_queries: int = 10,
    dropout: float = 0.0,
):
    """ResNet-18 in its DC5 form (stride 16: a 4x4 feature map on a 64 px canvas, not 2x2) from scratch, and a
    Transformer of `num_layers` encoder and decoder layers of width `d_model`; auxiliary losses on every
    decoder layer, as DETR trains. Initialised for training from scratch (`init_from_scratch`)."""
    config = DetrConfig(
        backbone="resnet18",
        use_pretrained_backbone=False,
        dilation=True,
        auxiliary_loss=True,
        d_model=d_model,
        encoder_layers=num_layers,
        decoder_layers=num_layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        num_queries=num_queries,
        dropout=dropout,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    processor = DetrImageProcessor(size={"shortest_edge": image_size, "longest_edge": max_size})
    model = DetrForObjectDetection(config)
    init_from_scratch(model)
    return model, processor


def init_from_scratch(model) -> None:
    """The DETR authors' initialisation for the Transformer, and a trainable ResNet (`train_backbone_from_scratch`).

    Transformers' DETR draws every weight from N(0, 0.02) (`init_std`), which suits loading a checkpoint
    but not training from nothing: query embeddings that small make the object queries almost identical,
    every query predicts the same box, and (measured on the digit canvases) AP stays at 0 for hundreds of
    steps. The DETR authors use Xavier-uniform weights in the Transformer and N(0, 1) query embeddings;
    here every linear layer outside the backbone (Transformer and prediction heads) gets Xavier-uniform
    weights and zero biases.
    """
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".backbone." not in f".{name}.":
            torch.nn.init.xavier_uniform_(module.weight)
            torch.nn.init.zeros_(module.bias)
    torch.nn.init.normal_(model.model.query_position_embeddings.weight, std=1.0)
    train_backbone_from_scratch(model)


def train_backbone_from_scratch(model) -> None:
    """Make the randomly initialised ResNet trainable: real batch norm, He init, every stage unfrozen.

    DETR's backbone has frozen batch norm (identity statistics at random init) and a frozen stem and first
    stage, which is right for ImageNet weights and wrong from scratch: with no normalisation and N(0, 0.02)
    convolutions the features nearly vanish. Trainable `nn.BatchNorm2d` keeps the tensor names (weight, bias,
    running_mean, running_var), and frozen batch norm computes exactly batch norm in eval mode, so the saved
    folder loads into the stock frozen-batch-norm DETR unchanged (`num_batches_tracked` is ignored on load).
    """
    from tritonvision.modeling.detr_backbone import DetrFrozenBatchNorm2d

    resnet = model.model.backbone.conv_encoder.model
    for module in list(resnet.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, DetrFrozenBatchNorm2d):
                setattr(module, name, torch.nn.BatchNorm2d(child.weight.numel()))
            elif isinstance(child, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
    for block in resnet.modules():
        last_norm = getattr(block, "bn3", None) or (getattr(block, "bn2", None) if hasattr(block, "conv2") else None)
        if hasattr(block, "downsample") and isinstance(last_norm, torch.nn.BatchNorm2d):
            torch.nn.init.zeros_(last_norm.weight)  # each residual block starts as the identity
    for parameter in resnet.parameters():
        parameter.requires_grad_(True)


def image_tags(rows: datasets.Dataset, processor, size: int, num_labels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every training image resized to `size` x `size` and normalised by `processor`, with the set of classes
    it contains as a `(num_labels,)` 0/1 vector."""
    images, tags = [], torch.zeros(len(rows), num_labels)
    for index, row in enumerate(rows.select_columns(["image", "objects"])):
        images.append(row["image"].convert("RGB").resize((size, size), PIL.Image.BILINEAR))
        tags[index, list(row["objects"]["category"])] = 1.0
    if not images or tags.sum() == 0:
        raise ValueError("backbone pretraining needs annotated objects in the training split")
    return processor(images=images, do_resize=False, return_tensors="pt")["pixel_values"], tags


def pretrain_backbone(model, rows: datasets.Dataset, processor, args, accelerator) -> float:
    """Train the from-scratch ResNet to tell which classes each training image contains; return the fraction
    of those tags it got right (per class, threshold 0.5) over the last 50 batches.

    DETR never starts from a random backbone: its ResNet comes from ImageNet classification. Offline there is
    no such checkpoint, and DETR's own signal is too weak to teach a random ResNet to tell the classes apart
    (measured on the digit canvases: after 600 steps the localising query named the right digit no more
    often than chance, while 70% of its boxes already overlapped the digit at IoU > 0.5). So the ResNet
    first learns the classes from the training images' tags (multi-label: a temporary linear head on its
    pooled last feature map, binary cross-entropy, AdamW at 1e-3, batches of 32, cosine schedule), then
    DETR trains as usual. The draws come from a generator seeded by `--seed`, so the pretraining is the
    same in every process and every run.
    """
    resnet = model.model.backbone.conv_encoder.model
    pixel_values, tags = image_tags(rows, processor, args.backbone_pretrain_size, model.config.num_labels)
    device = accelerator.device
    resnet.to(device).train()
    head = torch.nn.Linear(resnet.channels[-1], model.config.num_labels).to(device)
    parameters = [*resnet.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=1e-4)
    steps, warmup = args.backbone_pretrain_steps, max(1, args.backbone_pretrain_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    generator = torch.Generator().manual_seed(args.seed)
    correct = []
    progress = tqdm(range(steps), desc="backbone pretraining", disable=not accelerator.is_local_main_process)
    for _ in progress:
        batch = torch.randint(len(tags), (32,), generator=generator)
        inputs, targets = pixel_values[batch].to(device), tags[batch].to(device)
        logits = head(resnet(inputs)[-1].mean(dim=(2, 3)))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        correct.append(((logits > 0) == (targets > 0.5)).float().mean().detach())  # read once, at the end
        progress.set_postfix(loss=f"{loss.item():.3f}")
    accuracy = torch.stack(correct[-50:]).double().mean().item()
    logger.info(f"backbone pretraining: {len(tags)} images, {steps} steps, tag accuracy {accuracy:.3f}")
    return accuracy


def build_detector(args, labels: list[str]):
    if args.model_name_or_path is None:
        return small_detr(
            labels, args.image_size, args.max_size, args.d_model, args.num_layers, args.num_queries, args.dropout
        )
    return load_pretrained(
        args,
        AutoModelForObjectDetection,
        "AutoModelForObjectDetection",
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )


def coco_ground_truth(rows: datasets.Dataset, num_labels: int) -> dict:
    """The evaluation split as a COCO dict; image ids are row indices, category ids are label indices."""
    images, annotations = [], []
    for index, row in enumerate(rows.select_columns(["width", "height", "objects"])):
        images.append({"id": index, "width": row["width"], "height": row["height"]})
        objects = row["objects"]
        for bbox, category in zip(objects["bbox"], objects["category"]):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": int(category),
                    "bbox": [float(v) for v in bbox],
                    "area": float(bbox[2] * bbox[3]),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": label} for label in range(num_labels)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_map(ground_truth: dict, detections: list[dict]) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl from pycocotools (-1 where a size range has no ground truth)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {f"eval_{name}": 0.0 for name in COCO_STATS}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {f"eval_{name}": float(value) for name, value in zip(COCO_STATS, evaluator.stats[:6])}


def evaluate_detector(model, processor, dataloader, accelerator, ground_truth: dict) -> dict[str, float]:
    model.eval()
    detections = []
    for batch in dataloader:
        with torch.no_grad():
            outputs = model(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])
        results = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=batch["orig_size"])
        for index, result in zip(batch["index"].tolist(), results):
            for score, label, (x0, y0, x1, y1) in zip(
                result["scores"].tolist(), result["labels"].tolist(), result["boxes"].tolist()
            ):
                detections.append(
                    {"image_id": index, "category_id": label, "score": score, "bbox": [x0, y0, x1 - x0, y1 - y0]}
                )
    detections = accelerator.gather_for_metrics(detections, use_gather_object=True)
    return coco_map(ground_truth, detections)


# ----------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    with set_threads(args, accelerator, from_scratch_threads=None):
        return run(args, accelerator)


def run(args: argparse.Namespace, accelerator) -> dict:
    set_seed(args.seed)
    dataset, labels = load_detection_data(args, accelerator)
    model, processor = build_detector(args, labels)
    pretrain_accuracy = None
    from_scratch = args.model_name_or_path is None and args.resume_from_checkpoint is None
    if from_scratch and args.backbone_pretrain_steps > 0:  # a resumed run loads the pretrained weights instead
        pretrain_accuracy = pretrain_backbone(model, dataset["train"], processor, args, accelerator)
    if args.learning_rate is None:
        args.learning_rate = 1e-4 if args.model_name_or_path else 5e-4
    train_dataset = DetectionDataset(
        dataset["train"], processor, True, args.train_sizes, args.max_size, args.seed, args.hflip_probability
    )
    eval_dataset = DetectionDataset(
        dataset["validation"], processor, False, [args.image_size], args.max_size, args.seed
    )
    train_dataloader = make_dataloader(
        train_dataset, args.per_device_train_batch_size, collate_detection, args.seed, True, args.dataloader_num_workers
    )
    eval_dataloader = make_dataloader(
        eval_dataset,
        args.per_device_eval_batch_size,
        collate_detection_eval,
        args.seed,
        False,
        args.dataloader_num_workers,
    )
    batches_per_process = math.ceil(len(train_dataloader) / accelerator.num_processes)
    optimizer, scheduler = make_optimizer_and_scheduler(args, model, accelerator, batches_per_process)
    model, optimizer, train_dataloader, eval_dataloader, scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, scheduler
    )
    ground_truth = coco_ground_truth(dataset["validation"], len(labels))
    result = train_and_evaluate(
        args,
        accelerator,
        model,
        optimizer,
        scheduler,
        train_dataloader,
        lambda: evaluate_detector(model, processor, eval_dataloader, accelerator, ground_truth),
        set_epoch=train_dataset.set_epoch,
    )
    if pretrain_accuracy is not None:
        result["backbone_pretrain_accuracy"] = pretrain_accuracy
    if args.output_dir is not None:
        data = (
            args.dataset_name
            or args.train_annotations
            or (
                f"{args.canvas_size}x{args.canvas_size} canvases of scikit-learn digits (1-{args.max_digits} per "
                "image, COCO format; validation canvases use held-out digits)"
            )
        )
        data = f"{data}: {len(dataset['train'])} training, {len(dataset['validation'])} evaluation images"
        finish_run(args, accelerator, model, processor, result, "object-detection", data, "AutoModelForObjectDetection")
    return result


if __name__ == "__main__":
    final = main()
    print(json.dumps({k: v for k, v in final.items() if k != "train_losses"}))
