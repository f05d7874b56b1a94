"""The Accelerate examples, run in-process for a few steps on tiny generated data on the CPU.

Each run writes a checkpoint folder and a final folder; the final folder must load through the Auto
classes with `trust_remote_code`, and a run resumed from a mid-epoch checkpoint must replay the
uninterrupted run: same losses, same final weights (DETR's dropout and augmentation included).
"""

import json
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("sklearn")
pytest.importorskip("pycocotools")
pytest.importorskip("accelerate")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import digits_data  # noqa: E402
import image_classification  # noqa: E402
import object_detection  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """Each `main()` builds its own Accelerator; the state singletons must not leak between runs."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_run(uninterrupted: dict, resumed: dict, first_resumed_step: int, full: Path, resumed_dir: Path):
    tail = {step: loss for step, loss in uninterrupted["train_losses"].items() if step >= first_resumed_step}
    assert sorted(resumed["train_losses"]) == sorted(tail)
    for step, loss in tail.items():
        assert resumed["train_losses"][step] == pytest.approx(loss, abs=1e-6), f"step {step}"
    weights_full, weights_resumed = final_weights(full), final_weights(resumed_dir)
    assert weights_full.keys() == weights_resumed.keys()
    for name, tensor in weights_full.items():
        torch.testing.assert_close(weights_resumed[name], tensor, atol=1e-6, rtol=0, msg=name)


# ------------------------------------------------------------------------------------------------------------
# Data builders
# ------------------------------------------------------------------------------------------------------------
def test_digits_imagefolder_is_seeded_and_split(tmp_path):
    first = digits_data.write_digits_imagefolder(tmp_path / "a", image_size=16, seed=3, max_images=40)
    second = digits_data.write_digits_imagefolder(tmp_path / "b", image_size=16, seed=3, max_images=40)
    names = [sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) for folder in first]
    assert names == [sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) for folder in second]
    train_ids = {Path(name).stem for name in names[0]}
    validation_ids = {Path(name).stem for name in names[1]}
    assert len(train_ids) + len(validation_ids) == 40 and not train_ids & validation_ids
    for name in names[0][:5]:
        assert (first[0] / name).read_bytes() == (second[0] / name).read_bytes()
    image = PIL.Image.open(first[0] / names[0][0])
    assert image.size == (16, 16) and image.mode == "RGB"


def test_digit_canvas_boxes_hold_all_the_ink(tmp_path):
    paths = digits_data.write_digits_detection_coco(
        tmp_path, num_train=6, num_validation=4, canvas_size=48, max_digits=3, seed=1
    )
    coco = json.loads(paths["train_annotations"].read_text())
    assert len(coco["images"]) == 6 and {c["id"] for c in coco["categories"]} == set(range(10))
    for image in coco["images"]:
        pixels = np.asarray(PIL.Image.open(paths["train_images"] / image["file_name"]).convert("L"), dtype=np.int32)
        boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert 1 <= len(boxes) <= 3
        outside = np.ones_like(pixels, dtype=bool)
        for x, y, w, h in boxes:
            assert 0 <= x and 0 <= y and x + w <= 48 and y + h <= 48 and w > 2 and h > 2
            region = pixels[int(y) : int(np.ceil(y + h)), int(x) : int(np.ceil(x + w))]
            assert region.max() > 150, "a box without a digit in it"
            outside[max(0, int(y) - 2) : int(np.ceil(y + h)) + 2, max(0, int(x) - 2) : int(np.ceil(x + w)) + 2] = False
        assert pixels[outside].max(initial=0) < 100, "ink outside every box"


# ------------------------------------------------------------------------------------------------------------
# Image classification (ViT of width 32, one layer, 16x16 images)
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory):
    return digits_data.write_digits_imagefolder(
        tmp_path_factory.mktemp("digits"), image_size=16, validation_fraction=0.25, seed=0, max_images=48
    )


def classification_argv(digit_folders, output_dir, *extra):
    folders = ["--train_dir", str(digit_folders[0]), "--validation_dir", str(digit_folders[1])]
    tiny = ["--image_size", "16", "--hidden_size", "32", "--num_layers", "1"]
    return [*folders, *tiny, "--output_dir", str(output_dir), *extra]


def test_classification_learns_and_saves_a_loadable_folder(digit_folders, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    fixed_batch = ["--max_train_samples", "8", "--per_device_train_batch_size", "8", "--max_train_steps", "12"]
    schedule = ["--lr_scheduler_type", "constant", "--learning_rate", "1e-2", "--checkpointing_steps", "epoch"]
    result = image_classification.main(classification_argv(digit_folders, tmp_path, *fixed_batch, *schedule))
    losses = [result["train_losses"][step] for step in sorted(result["train_losses"])]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses  # one fixed batch of 8: being memorised
    assert 0.0 <= result["eval_accuracy"] <= 1.0
    assert (tmp_path / "epoch_0").is_dir() and (tmp_path / "epoch_11").is_dir()  # one step per epoch
    assert "trust_remote_code=True" in (tmp_path / "README.md").read_text()
    assert json.loads((tmp_path / "all_results.json").read_text())["eval_accuracy"] == result["eval_accuracy"]

    model = AutoModelForImageClassification.from_pretrained(tmp_path, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert model.config.num_labels == 10 and model.config.id2label[3] == "3"
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    image = PIL.Image.open(next(digit_folders[0].rglob("*.png")))
    pixel_values = processor(images=image, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 3, 16, 16)
    reference, _ = image_classification.small_vit(16, [str(d) for d in range(10)], hidden_size=32, num_layers=1)
    reference.load_state_dict(final_weights(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values).logits, reference.eval()(pixel_values).logits)


def test_classification_resume_replays_the_uninterrupted_run(digit_folders, tmp_path):
    common = ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2", "--max_train_steps", "7"]
    common += ["--checkpointing_steps", "3", "--seed", "7"]
    full = image_classification.main(classification_argv(digit_folders, tmp_path / "full", *common))
    assert (tmp_path / "full" / "step_3").is_dir() and (tmp_path / "full" / "step_6").is_dir()
    resume = ["--resume_from_checkpoint", str(tmp_path / "full" / "step_3")]
    resumed = image_classification.main(classification_argv(digit_folders, tmp_path / "resumed", *common, *resume))
    # 36 training images, batches of 4, accumulation 2: step 3 ends mid-epoch (after 6 of 9 batches).
    assert_same_run(full, resumed, 4, tmp_path / "full", tmp_path / "resumed")
    assert resumed["eval_accuracy"] == pytest.approx(full["eval_accuracy"])


def test_classification_cached_tensors_match_per_batch_preprocessing(digit_folders, tmp_path):
    """The in-memory cache is an optimisation only: the per-batch path must give the same run."""
    before = torch.get_num_threads()
    argv = ["--per_device_train_batch_size", "6", "--max_train_steps", "3", "--num_threads", "1"]
    cached = image_classification.main(classification_argv(digit_folders, tmp_path / "cached", *argv))
    assert torch.get_num_threads() == before  # --num_threads applies to the run only
    streamed = image_classification.main(
        classification_argv(digit_folders, tmp_path / "streamed", *argv, "--preprocess_max_bytes", "0")
    )
    assert len(cached["train_losses"]) == 3
    for step, loss in cached["train_losses"].items():
        assert streamed["train_losses"][step] == pytest.approx(loss, abs=1e-6), step
    assert streamed["eval_accuracy"] == cached["eval_accuracy"]


def test_accuracy_metric_loads_offline_through_evaluate():
    from sklearn.metrics import accuracy_score

    metric = image_classification.load_accuracy_metric()
    rng = np.random.default_rng(0)
    predictions, references = rng.integers(0, 4, size=(2, 50))
    for start in (0, 20):  # two batches, as the evaluation loop adds them
        stop = start + 20 if start == 0 else 50
        metric.add_batch(predictions=predictions[start:stop], references=references[start:stop])
    assert metric.compute()["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    with pytest.raises(ValueError, match="at least one"):
        image_classification.load_accuracy_metric().compute(predictions=[], references=[])


# ------------------------------------------------------------------------------------------------------------
# Object detection (DETR: ResNet-18 DC5, one encoder and one decoder layer of width 32, 5 queries, 48 px)
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def canvas_coco(tmp_path_factory):
    return digits_data.write_digits_detection_coco(
        tmp_path_factory.mktemp("canvases"),
        num_train=12,
        num_validation=4,
        canvas_size=48,
        max_digits=2,
        digit_sizes=(12, 24),
        seed=0,
    )


def detection_argv(canvas_coco, output_dir, *extra):
    data = []
    for split in ("train", "validation"):
        data += [f"--{split}_annotations", str(canvas_coco[f"{split}_annotations"])]
        data += [f"--{split}_images", str(canvas_coco[f"{split}_images"])]
    sizes = ["--train_sizes", "40", "48", "--image_size", "48", "--max_size", "56", "--hflip_probability", "0.5"]
    tiny = ["--d_model", "32", "--num_layers", "1", "--num_queries", "5", "--backbone_pretrain_steps", "2"]
    return [*data, *sizes, *tiny, "--output_dir", str(output_dir), "--seed", "5", *extra]


def test_detection_learns_and_saves_a_loadable_folder(canvas_coco, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    fixed_batch = ["--max_train_samples", "4", "--per_device_train_batch_size", "4", "--max_train_steps", "8"]
    schedule = ["--lr_scheduler_type", "constant", "--learning_rate", "1e-2"]
    result = object_detection.main(detection_argv(canvas_coco, tmp_path, *fixed_batch, *schedule))
    losses = [result["train_losses"][step] for step in sorted(result["train_losses"])]
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.9 * losses[0], losses  # one fixed batch of 4 (flips and scales vary)
    assert {"eval_AP", "eval_AP50", "eval_AP75", "eval_APs", "eval_APm", "eval_APl"} <= result.keys()
    assert all(np.isfinite(value) for name, value in result.items() if name.startswith("eval_"))

    model = AutoModelForObjectDetection.from_pretrained(tmp_path, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert model.config.num_labels == 10 and model.config.num_queries == 5 and model.config.auxiliary_loss
    image = PIL.Image.open(next(canvas_coco["validation_images"].glob("*.png")))
    inputs = processor(images=image, return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (48, 48)
    with torch.no_grad():
        outputs = model(**inputs)
    detections = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[(48, 48)])[0]
    assert detections["boxes"].shape == (5, 4) and torch.isfinite(detections["boxes"]).all()
    # Trained with real batch norm, loaded with DETR's frozen one: the same function in eval mode.
    reference, _ = object_detection.small_detr(
        [str(d) for d in range(10)], 48, 56, d_model=32, num_layers=1, num_queries=5
    )
    assert isinstance(reference.model.backbone.conv_encoder.model.bn1, torch.nn.BatchNorm2d)
    reference.load_state_dict(final_weights(tmp_path))
    assert reference.model.backbone.conv_encoder.model.bn1.running_var.sub(1).abs().max() > 1e-3  # stats were learnt
    with torch.no_grad():
        expected = reference.eval()(**inputs)
    torch.testing.assert_close(outputs.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outputs.pred_boxes, expected.pred_boxes, atol=1e-5, rtol=1e-4)


def test_from_scratch_detr_starts_with_distinct_queries():
    # Transformers' N(0, 0.02) init makes the object queries identical in practice: every query predicts the
    # same box. The from-scratch model (DETR authors' init) must start with queries that differ.
    torch.manual_seed(0)
    model, _ = object_detection.small_detr([str(d) for d in range(10)], 48, 56, d_model=32, num_layers=1)
    stock = type(model)(model.config)
    object_detection.train_backbone_from_scratch(stock)
    pixel_values = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        spread = model.eval()(pixel_values=pixel_values).pred_boxes.std(dim=1).mean()
        stock_spread = stock.eval()(pixel_values=pixel_values).pred_boxes.std(dim=1).mean()
    assert stock_spread < 1e-4 and spread > 1e-3, (stock_spread, spread)
    assert model.model.query_position_embeddings.weight.std().item() == pytest.approx(1.0, abs=0.1)


def test_backbone_pretraining_learns_the_training_tags(canvas_coco):
    from accelerate import Accelerator

    rows, labels = object_detection.coco_to_dataset(canvas_coco["train_annotations"], canvas_coco["train_images"])
    model, processor = object_detection.small_detr(labels, 48, 56, d_model=32, num_layers=1, num_queries=5)
    pixel_values, tags = object_detection.image_tags(rows, processor, 16, num_labels=10)
    assert pixel_values.shape == (12, 3, 16, 16)
    for row_tags, objects in zip(tags, rows["objects"]):
        assert row_tags.nonzero().flatten().tolist() == sorted(set(objects["category"]))

    for bad in (["--hflip_probability", "1.5"], ["--backbone_pretrain_steps", "-1"]):
        with pytest.raises(ValueError, match=bad[0]):
            object_detection.parse_args(bad)
    args = object_detection.parse_args(["--backbone_pretrain_steps", "60", "--backbone_pretrain_size", "16"])
    before = {name: p.clone() for name, p in model.model.backbone.named_parameters()}
    accuracy = object_detection.pretrain_backbone(model, rows, processor, args, Accelerator(cpu=True))
    # 12 images memorised; answering "absent" for every class would score 1 - tags.mean() (about 0.85).
    assert accuracy > 0.95 > 1 - tags.mean().item(), accuracy
    assert all(not torch.equal(before[name], p) for name, p in model.model.backbone.named_parameters())


def test_detection_resume_replays_the_uninterrupted_run(canvas_coco, tmp_path):
    common = ("--per_device_train_batch_size", "4", "--max_train_steps", "5", "--checkpointing_steps", "2")
    common += ("--dropout", "0.1")  # the default is 0; the replay must also hold with dropout drawing random numbers
    full = object_detection.main(detection_argv(canvas_coco, tmp_path / "full", *common))
    resume = ("--resume_from_checkpoint", str(tmp_path / "full" / "step_2"))
    resumed = object_detection.main(detection_argv(canvas_coco, tmp_path / "resumed", *common, *resume))
    # 12 canvases in batches of 4: step 2 ends mid-epoch; dropout (0.1) and augmentation are on.
    assert_same_run(full, resumed, 3, tmp_path / "full", tmp_path / "resumed")
    assert resumed["eval_AP"] == pytest.approx(full["eval_AP"])


def test_coco_map_scores_perfect_and_empty_detections():
    ground_truth = {
        "images": [{"id": 0, "width": 40, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 2, "bbox": [4.0, 6.0, 12.0, 14.0], "area": 168.0, "iscrowd": 0}
        ],
        "categories": [{"id": label} for label in range(3)],
    }
    perfect = object_detection.coco_map(
        ground_truth, [{"image_id": 0, "category_id": 2, "score": 0.9, "bbox": [4.0, 6.0, 12.0, 14.0]}]
    )
    assert perfect["eval_AP"] == pytest.approx(1.0) and perfect["eval_APl"] == -1.0
    wrong_class = object_detection.coco_map(
        ground_truth, [{"image_id": 0, "category_id": 1, "score": 0.9, "bbox": [4.0, 6.0, 12.0, 14.0]}]
    )
    assert wrong_class["eval_AP"] == 0.0
    assert object_detection.coco_map(ground_truth, [])["eval_AP"] == 0.0
