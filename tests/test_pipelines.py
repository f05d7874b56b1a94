"""`transformers.pipeline` runs on saved folders where `tritonvision` cannot be imported, and agrees with
model + processor used by hand (issue: compile/graphs/pipelines)."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

import tritonvision

from helpers import TINY_VIT, run_without_tritonvision, tiny_detr_config


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "image.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def _run_pipeline(task: str, folder, image_path, tmp_path, call_kwargs: str = "") -> object:
    stdout = run_without_tritonvision(
        f"""
        import json, transformers
        pipe = transformers.pipeline("{task}", model="{folder}", trust_remote_code=True)
        result = pipe("{image_path}"{call_kwargs})
        print("RESULT" + json.dumps(result, default=lambda x: x.tolist()))
        """,
        cwd=str(tmp_path),
    )
    return json.loads(stdout.split("RESULT", 1)[1])


def test_image_classification_pipeline(tmp_path, image_path):
    config = tritonvision.ViTConfig(**TINY_VIT, num_labels=4, id2label={i: f"class{i}" for i in range(4)})
    model = tritonvision.ViTForImageClassification(config).eval()
    processor = tritonvision.ViTImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")

    result = _run_pipeline("image-classification", tmp_path / "model", image_path, tmp_path, ", top_k=4")
    with torch.no_grad():
        probs = model(processor(PIL.Image.open(image_path), return_tensors="pt").pixel_values).logits.softmax(-1)[0]
    expected = sorted(((p.item(), f"class{i}") for i, p in enumerate(probs)), reverse=True)
    assert [r["label"] for r in result] == [label for _, label in expected]
    np.testing.assert_allclose([r["score"] for r in result], [p for p, _ in expected], atol=1e-5)


def test_image_feature_extraction_pipeline(tmp_path, image_path):
    model = tritonvision.ViTModel(tritonvision.ViTConfig(**TINY_VIT)).eval()
    processor = tritonvision.ViTImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")

    result = np.asarray(_run_pipeline("image-feature-extraction", tmp_path / "model", image_path, tmp_path))
    with torch.no_grad():
        features = model(processor(PIL.Image.open(image_path), return_tensors="pt").pixel_values).last_hidden_state
    np.testing.assert_allclose(result, features.numpy(), atol=1e-5)


def test_object_detection_pipeline(tmp_path, image_path):
    config = tiny_detr_config(num_labels=3, id2label={0: "zero", 1: "one", 2: "two"})
    model = tritonvision.DetrForObjectDetection(config).eval()
    processor = tritonvision.DetrImageProcessor(size={"shortest_edge": 48, "longest_edge": 64})
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")

    result = _run_pipeline("object-detection", tmp_path / "model", image_path, tmp_path, ", threshold=0.0")
    image = PIL.Image.open(image_path)
    inputs = processor(image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    expected = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[image.size[::-1]])[0]
    assert len(result) == len(expected["scores"]) == config.num_queries
    order = np.argsort([-r["score"] for r in result], kind="stable")
    expected_order = np.argsort(-expected["scores"].numpy(), kind="stable")
    np.testing.assert_allclose(
        [result[i]["score"] for i in order], expected["scores"].numpy()[expected_order], atol=1e-5
    )
    assert [result[i]["label"] for i in order] == [config.id2label[int(expected["labels"][j])] for j in expected_order]
    boxes = [[result[i]["box"][k] for k in ("xmin", "ymin", "xmax", "ymax")] for i in order]
    # The pipeline rounds box corners to whole pixels.
    np.testing.assert_allclose(boxes, expected["boxes"].numpy()[expected_order], atol=1.0)
