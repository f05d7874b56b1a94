"""Fine-tune (or train from scratch) an image classifier of `tritonvision` with Accelerate.

    accelerate launch examples/image_classification.py --train_dir TRAIN --validation_dir VAL --output_dir OUT
    python examples/image_classification.py --output_dir OUT     # offline default: a small ViT on digits

The arguments are those of Transformers' `run_image_classification_no_trainer.py`. With no data argument
the example writes scikit-learn's digits as an image folder and reads it back through `datasets`'
`imagefolder`, exactly like user data; with no model argument it builds a small ViT from a config.
`main(argv)` returns the final metrics and the loss of every optimizer step, so tests run it in-process.

The training loop (`train_and_evaluate`) is shared with `object_detection.py`. Resuming reproduces the
uninterrupted run exactly: the shuffle order is a function of (seed, epoch) only (`EpochSeededSampler`),
the data loaders draw their worker seeds from their own generator, and `accelerator.save_state` stores
the global RNG that dropout draws from.
"""

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, SchedulerType, get_scheduler

import tritonvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_data import write_digits_imagefolder  # noqa: E402

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------
# Arguments shared by both examples
# ----------------------------------------------------------------------------------------------------------
def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The optimisation, checkpointing, tracking and Hub arguments of Transformers' no-trainer examples."""
    add = parser.add_argument
    add(
        "--model_name_or_path",
        type=str,
        default=None,
        help="Local folder or Hub id; none: a small model built from a config.",
    )
    add("--dataset_name", type=str, default=None, help="A dataset on the Hub (needs network).")
    add(
        "--train_val_split",
        type=float,
        default=0.15,
        help="Held-out fraction when the dataset has no validation split.",
    )
    add("--per_device_train_batch_size", type=int, default=32)
    add("--per_device_eval_batch_size", type=int, default=256)
    add("--learning_rate", type=float, default=None, help="Default 2e-3 from scratch, 5e-5 when fine-tuning.")
    add("--weight_decay", type=float, default=0.05)
    add("--num_train_epochs", type=int, default=15)
    add("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs.")
    add("--gradient_accumulation_steps", type=int, default=1)
    add("--max_grad_norm", type=float, default=None, help="Clip gradients to this norm (off by default).")
    add("--lr_scheduler_type", type=SchedulerType, default="cosine", choices=[s.value for s in SchedulerType])
    add(
        "--num_warmup_steps", type=int, default=None, help="Default 0 when fine-tuning, 10%% of the steps from scratch."
    )
    add("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    add("--dataloader_num_workers", type=int, default=0)
    add(
        "--num_threads",
        type=int,
        default=None,
        help="torch.set_num_threads; default 1 for the small from-scratch ViT on CPU (tiny matrices: more "
        "threads only add synchronisation, badly so on a shared machine), else PyTorch's choice.",
    )
    add("--checkpointing_steps", type=str, default=None, help='Save state every N optimizer steps, or "epoch".')
    add("--resume_from_checkpoint", type=str, default=None, help="A folder written by --checkpointing_steps.")
    add("--with_tracking", action="store_true", help="Log metrics to the trackers of --report_to.")
    add("--report_to", type=str, default="all")
    add("--output_dir", type=str, default=None)
    add("--generated_data_dir", type=str, default=None, help="Where the offline default writes its data.")
    add("--push_to_hub", action="store_true")
    add("--hub_model_id", type=str, default=None)
    add("--hub_token", type=str, default=None)
    add("--trust_remote_code", action="store_true")
    add("--ignore_mismatched_sizes", action="store_true", help="Re-initialise a head whose size differs.")
    add("--seed", type=int, default=42)


def check_training_arguments(args: argparse.Namespace) -> None:
    if (args.push_to_hub or args.with_tracking) and args.output_dir is None:
        raise ValueError("--push_to_hub and --with_tracking need an --output_dir")
    if args.checkpointing_steps is not None and not (
        args.checkpointing_steps == "epoch" or args.checkpointing_steps.isdigit()
    ):
        raise ValueError(f'--checkpointing_steps must be an integer or "epoch", got {args.checkpointing_steps!r}')


@contextlib.contextmanager
def set_threads(args: argparse.Namespace, accelerator: Accelerator, from_scratch_threads: int | None = 1):
    """Apply `--num_threads` while the block runs (default: `from_scratch_threads` for a from-scratch model on
    a CPU, else PyTorch's choice); the previous count comes back afterwards, so in-process callers (the tests)
    are left as they were."""
    threads = args.num_threads
    if threads is None and args.model_name_or_path is None and accelerator.device.type == "cpu":
        threads = from_scratch_threads
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_training_arguments(parser)
    parser.add_argument("--train_dir", type=str, default=None, help="Image folder: one sub-folder per class.")
    parser.add_argument("--validation_dir", type=str, default=None)
    parser.add_argument("--image_column_name", type=str, default="image")
    parser.add_argument("--label_column_name", type=str, default="label")
    parser.add_argument("--image_size", type=int, default=16, help="Side of the images of the from-scratch ViT.")
    parser.add_argument(
        "--preprocess_max_bytes",
        type=float,
        default=2**31,
        help="Preprocess the whole data set once and keep the tensors in memory when they fit in this many bytes "
        "(no augmentation here, so every epoch would repeat the same work); larger data is processed per batch.",
    )
    parser.add_argument("--hidden_size", type=int, default=64, help="Width of the from-scratch ViT.")
    parser.add_argument("--num_layers", type=int, default=3, help="Depth of the from-scratch ViT.")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Truncate the data (debugging).")
    parser.add_argument("--max_eval_samples", type=int, default=None)
    args = parser.parse_args(argv)
    check_training_arguments(args)
    return args


# ----------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------
class EpochSeededSampler(Sampler):
    """Shuffles with a generator seeded by (seed, epoch): the order never depends on the global RNG.

    Accelerate calls `set_epoch` on the sampler at the start of each pass, also on the loader that
    `skip_first_batches` builds, so a resumed run sees the same order as the uninterrupted one.
    """

    def __init__(self, num_items: int, seed: int):
        self.num_items, self.seed, self.epoch = num_items, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())


def make_dataloader(dataset, batch_size: int, collate_fn, seed: int, shuffle: bool, num_workers: int = 0) -> DataLoader:
    """A loader whose shuffling and worker seeds come from `seed`, never from the global RNG."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSeededSampler(len(dataset), seed) if shuffle else None,
        collate_fn=collate_fn,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def generated_data_dir(args: argparse.Namespace, name: str) -> Path:
    if args.generated_data_dir is not None:
        return Path(args.generated_data_dir)
    if args.output_dir is not None:
        return Path(args.output_dir) / "generated_data"
    return Path(tempfile.gettempdir()) / f"tritonvision_{name}_seed{args.seed}"


def load_classification_data(args: argparse.Namespace, accelerator: Accelerator) -> datasets.DatasetDict:
    """train/validation splits with `image` and `label` columns, from the Hub, image folders or the digits."""
    if args.dataset_name is not None:
        dataset = datasets.load_dataset(args.dataset_name, trust_remote_code=args.trust_remote_code)
    else:
        train_dir, validation_dir = args.train_dir, args.validation_dir
        if train_dir is None:
            with accelerator.main_process_first():
                root = generated_data_dir(args, "digits") / f"digits_imagefolder_{args.image_size}px"
                if accelerator.is_main_process and not (root / "validation").is_dir():
                    write_digits_imagefolder(root, image_size=args.image_size, seed=args.seed)
            train_dir, validation_dir = root / "train", root / "validation"
        data_files = {"train": os.path.join(train_dir, "**")}
        if validation_dir is not None:
            data_files["validation"] = os.path.join(validation_dir, "**")
        dataset = datasets.load_dataset("imagefolder", data_files=data_files)
    if "validation" not in dataset:
        split = dataset["train"].train_test_split(args.train_val_split, seed=args.seed)
        dataset = datasets.DatasetDict(train=split["train"], validation=split["test"])
    rename = {args.image_column_name: "image", args.label_column_name: "label"}
    dataset = dataset.rename_columns({k: v for k, v in rename.items() if k != v})
    if args.max_train_samples is not None:
        dataset["train"] = dataset["train"].shuffle(seed=args.seed).select(range(args.max_train_samples))
    if args.max_eval_samples is not None:
        dataset["validation"] = dataset["validation"].select(range(args.max_eval_samples))
    return dataset


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------
def small_vit(image_size: int, labels: list[str], hidden_size: int = 64, num_layers: int = 3):
    """A small ViT (default 3 layers of width 64, 16 patches) that trains on one CPU thread in seconds."""
    config = tritonvision.ViTConfig(
        image_size=image_size,
        patch_size=max(1, image_size // 4),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden_size,
        hidden_dropout_prob=0.0,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    processor = tritonvision.ViTImageProcessor(size={"height": image_size, "width": image_size})
    return tritonvision.ViTForImageClassification(config), processor


def our_class_for(config, auto_name: str):
    """Our model class for a stock Hub config (`model_type` "vit", "deit", ...), else None (Auto decides)."""
    for config_class, models, _processor in tritonvision.modeling.auto_registration.families():
        if config.model_type in (config_class.model_type, *config_class.hub_model_types) and auto_name in models:
            return models[auto_name]
    return None


def load_pretrained(args, auto_model_class, auto_name: str, **config_overrides):
    """Load `--model_name_or_path` with our classes; stock Transformers folders are mapped to ours."""
    config = AutoConfig.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    model_class = our_class_for(config, auto_name) or auto_model_class
    config = (model_class.config_class if model_class is not auto_model_class else AutoConfig).from_pretrained(
        args.model_name_or_path, trust_remote_code=args.trust_remote_code, **config_overrides
    )
    model = model_class.from_pretrained(
        args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=args.ignore_mismatched_sizes,
        trust_remote_code=args.trust_remote_code,
    )
    processor = AutoImageProcessor.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    return model, processor


def build_model(args: argparse.Namespace, labels: list[str]):
    if args.model_name_or_path is None:
        return small_vit(args.image_size, labels, args.hidden_size, args.num_layers)
    return load_pretrained(
        args,
        AutoModelForImageClassification,
        "AutoModelForImageClassification",
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )


# ----------------------------------------------------------------------------------------------------------
# Metric
# ----------------------------------------------------------------------------------------------------------
ACCURACY_METRIC = Path(__file__).resolve().parent / "metrics" / "accuracy.py"


def load_accuracy_metric():
    """`evaluate`'s accuracy, read from the copy shipped in `examples/metrics/` (the Hub's needs the network)."""
    import evaluate

    return evaluate.load(str(ACCURACY_METRIC), keep_in_memory=True)


def evaluate_classifier(model, dataloader, accelerator: Accelerator) -> dict[str, float]:
    model.eval()
    metric = load_accuracy_metric()
    for batch in dataloader:
        with torch.no_grad():
            logits = model(pixel_values=batch["pixel_values"]).logits
        predictions, references = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
        metric.add_batch(predictions=predictions.cpu().numpy(), references=references.cpu().numpy())
    return {"eval_accuracy": float(metric.compute()["accuracy"])}


# ----------------------------------------------------------------------------------------------------------
# Training loop, checkpoints, saving (shared with object_detection.py)
# ----------------------------------------------------------------------------------------------------------
def make_accelerator(args: argparse.Namespace) -> Accelerator:
    tracking = {"log_with": args.report_to, "project_dir": args.output_dir} if args.with_tracking else {}
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision, **tracking
    )


def make_optimizer_and_scheduler(args, model, accelerator: Accelerator, num_batches_per_epoch: int):
    """AdamW without decay on biases and norms; sets `args.max_train_steps` and `args.num_train_epochs`."""
    no_decay = ("bias", "norm", "position_embeddings", "cls_token", "query_position_embeddings")
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (plain if any(key in name.lower() for key in no_decay) else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=args.learning_rate,
    )
    updates_per_epoch = math.ceil(num_batches_per_epoch / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * updates_per_epoch
    args.num_train_epochs = math.ceil(args.max_train_steps / updates_per_epoch)
    if args.num_warmup_steps is None:
        args.num_warmup_steps = 0 if args.model_name_or_path else args.max_train_steps // 10
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.num_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    return optimizer, scheduler


def resume_position(checkpoint: str, batches_per_epoch: int, accumulation: int) -> tuple[int, int, int]:
    """(completed optimizer steps, epoch to resume in, batches of that epoch already seen) from a folder name."""
    name = Path(checkpoint.rstrip("/")).name
    match = re.fullmatch(r"(step|epoch)_(\d+)", name)
    if match is None:
        raise ValueError(f"--resume_from_checkpoint must name a step_N or epoch_N folder, got {name!r}")
    updates_per_epoch = math.ceil(batches_per_epoch / accumulation)
    if match.group(1) == "epoch":
        epoch = int(match.group(2)) + 1
        return epoch * updates_per_epoch, epoch, 0
    # An epoch's last update may accumulate fewer batches (Accelerate syncs at the end of the loader).
    completed = int(match.group(2))
    return completed, completed // updates_per_epoch, (completed % updates_per_epoch) * accumulation


def train_and_evaluate(args, accelerator, model, optimizer, scheduler, train_dataloader, evaluate_fn, set_epoch=None):
    """The loop of both examples; returns {"train_losses": {step: loss}, **final metrics}.

    `evaluate_fn()` runs after every epoch; `set_epoch(epoch)` (optional) re-seeds data augmentation.
    """
    batches_per_epoch = len(train_dataloader)
    completed_steps, starting_epoch, skip_batches = 0, 0, 0
    if args.resume_from_checkpoint:
        accelerator.print(f"Resuming from {args.resume_from_checkpoint}")
        accelerator.load_state(args.resume_from_checkpoint)
        completed_steps, starting_epoch, skip_batches = resume_position(
            args.resume_from_checkpoint, batches_per_epoch, args.gradient_accumulation_steps
        )
    if args.with_tracking:
        accelerator.init_trackers(
            Path(sys.argv[0]).stem, {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )
    progress = tqdm(range(args.max_train_steps), disable=not accelerator.is_local_main_process, initial=completed_steps)
    losses: dict[int, float] = {}
    metrics: dict[str, float] = {}
    step_losses: list[float] = []
    for epoch in range(starting_epoch, args.num_train_epochs):
        model.train()
        train_dataloader.set_epoch(epoch)
        if set_epoch is not None:
            set_epoch(epoch)
        active = train_dataloader
        if epoch == starting_epoch and skip_batches:
            active = accelerator.skip_first_batches(train_dataloader, skip_batches)
        for batch in active:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            step_losses.append(loss.detach().float().item())
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            losses[completed_steps] = float(np.mean(step_losses))
            step_losses = []
            progress.update(1)
            progress.set_postfix(loss=f"{losses[completed_steps]:.4f}")
            if args.with_tracking:
                accelerator.log(
                    {"train_loss": losses[completed_steps], "lr": scheduler.get_last_lr()[0]}, step=completed_steps
                )
            if args.checkpointing_steps not in (None, "epoch") and completed_steps % int(args.checkpointing_steps) == 0:
                accelerator.save_state(os.path.join(args.output_dir or ".", f"step_{completed_steps}"))
            if completed_steps >= args.max_train_steps:
                break
        metrics = evaluate_fn()
        accelerator.print(f"epoch {epoch}: {json.dumps(metrics)}")
        if args.with_tracking:
            accelerator.log({**metrics, "epoch": epoch}, step=completed_steps)
        if args.checkpointing_steps == "epoch":
            accelerator.save_state(os.path.join(args.output_dir or ".", f"epoch_{epoch}"))
        if completed_steps >= args.max_train_steps:
            break
    progress.close()
    if args.with_tracking:
        accelerator.end_training()
    return {"train_losses": losses, **metrics}


def model_card(args, model, task: str, data_description: str, metrics: dict[str, float], auto_class: str) -> str:
    """README.md of the saved folder: what was trained on what, the final metrics, how to load it."""
    base = (
        args.model_name_or_path
        or f"trained from scratch ({type(model).__name__}, {model.num_parameters():,} parameters)"
    )
    metric_rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in metrics.items())
    return f"""---
library_name: transformers
pipeline_tag: {task}
tags:
- tritonvision
- {task}
---

# {Path(args.output_dir).name}

A `{type(model).__name__}` of [tritonvision](https://github.com/) fine-tuned with
`examples/{Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else "the tritonvision examples"}`.

- Starting point: {base}
- Data: {data_description}
- Training: {args.max_train_steps} optimizer steps ({args.num_train_epochs} epochs), batch size
  {args.per_device_train_batch_size} per device x {args.gradient_accumulation_steps} accumulation, AdamW,
  learning rate {args.learning_rate} ({args.lr_scheduler_type} schedule, {args.num_warmup_steps} warm-up steps),
  weight decay {args.weight_decay}, seed {args.seed}.

## Final evaluation (held-out split)

| metric | value |
|---|---|
{metric_rows}

## How to load

The folder carries its own model code, so `tritonvision` need not be installed:

```python
from transformers import AutoImageProcessor, {auto_class}

model = {auto_class}.from_pretrained("path/to/this/folder", trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained("path/to/this/folder", trust_remote_code=True)
```
"""


def save_and_push(args, accelerator, model, processor, card: str) -> None:
    """`save_pretrained` (weights, config, code files) + processor + model card; upload on --push_to_hub."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(
        args.output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        processor.save_pretrained(args.output_dir)
        Path(args.output_dir, "README.md").write_text(card, encoding="utf-8")
        if args.push_to_hub:
            # One commit with the weights, config, code files, processor and this card (never the checkpoints).
            tritonvision.push_to_hub(
                unwrapped,
                args.hub_model_id or Path(args.output_dir).name,
                processor=processor,
                card=Path(args.output_dir, "README.md"),
                token=args.hub_token,
                commit_message="Trained with the tritonvision examples",
            )


def finish_run(args, accelerator, model, processor, result: dict, task: str, data: str, auto_class: str) -> None:
    """Both examples end alike: the final folder with a model card, and `all_results.json` beside it."""
    metrics = {k: v for k, v in result.items() if k != "train_losses"}
    card = model_card(args, accelerator.unwrap_model(model), task, data, metrics, auto_class)
    save_and_push(args, accelerator, model, processor, card)
    if accelerator.is_main_process:
        Path(args.output_dir, "all_results.json").write_text(json.dumps(metrics, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------
def collate_classification(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["label"] for example in examples]),
    }


class PixelTensors(torch.utils.data.Dataset):
    """A split preprocessed once: `pixel_values` (N, C, H, W) and `label` (N,) tensors, indexed per example."""

    def __init__(self, split: datasets.Dataset, processor, batch_size: int = 256):
        pixel_values, labels = [], []
        for start in range(0, len(split), batch_size):
            rows = split[start : start + batch_size]
            images = [image.convert("RGB") for image in rows["image"]]
            pixel_values.append(processor(images=images, return_tensors="pt")["pixel_values"])
            labels.extend(rows["label"])
        self.pixel_values, self.labels = torch.cat(pixel_values), torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.pixel_values[index], "label": self.labels[index]}


def pixel_datasets(dataset: datasets.DatasetDict, processor, max_bytes: float):
    """(train, validation) as tensors computed once when they fit in `max_bytes`, else transformed per batch."""

    def to_pixels(examples):
        images = [image.convert("RGB") for image in examples["image"]]
        examples["pixel_values"] = list(processor(images=images, return_tensors="pt")["pixel_values"])
        return examples

    first = processor(images=dataset["train"][0]["image"].convert("RGB"), return_tensors="pt")["pixel_values"]
    num_bytes = first.numel() * first.element_size() * (len(dataset["train"]) + len(dataset["validation"]))
    if num_bytes <= max_bytes:
        return PixelTensors(dataset["train"], processor), PixelTensors(dataset["validation"], processor)
    return dataset["train"].with_transform(to_pixels), dataset["validation"].with_transform(to_pixels)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(args)
    with set_threads(args, accelerator):
        return run(args, accelerator)


def run(args: argparse.Namespace, accelerator: Accelerator) -> dict:
    set_seed(args.seed)
    dataset = load_classification_data(args, accelerator)
    labels = dataset["train"].features["label"].names
    model, processor = build_model(args, labels)
    if args.learning_rate is None:
        args.learning_rate = 2e-3 if args.model_name_or_path is None else 5e-5
    train_dataset, eval_dataset = pixel_datasets(dataset, processor, args.preprocess_max_bytes)
    train_dataloader = make_dataloader(
        train_dataset,
        args.per_device_train_batch_size,
        collate_classification,
        args.seed,
        True,
        args.dataloader_num_workers,
    )
    eval_dataloader = make_dataloader(
        eval_dataset,
        args.per_device_eval_batch_size,
        collate_classification,
        args.seed,
        False,
        args.dataloader_num_workers,
    )
    batches_per_process = math.ceil(len(train_dataloader) / accelerator.num_processes)
    optimizer, scheduler = make_optimizer_and_scheduler(args, model, accelerator, batches_per_process)
    model, optimizer, train_dataloader, eval_dataloader, scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, scheduler
    )
    result = train_and_evaluate(
        args,
        accelerator,
        model,
        optimizer,
        scheduler,
        train_dataloader,
        lambda: evaluate_classifier(model, eval_dataloader, accelerator),
    )
    if args.output_dir is not None:
        data = args.dataset_name or args.train_dir or "scikit-learn digits (8x8, upsampled), 80/20 held-out split"
        data = f"{data}: {len(dataset['train'])} training, {len(dataset['validation'])} evaluation images"
        finish_run(
            args, accelerator, model, processor, result, "image-classification", data, "AutoModelForImageClassification"
        )
    return result


if __name__ == "__main__":
    final = main()
    print(json.dumps({k: v for k, v in final.items() if k != "train_losses"}))
