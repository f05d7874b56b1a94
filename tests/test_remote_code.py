"""Saved folders load with trust_remote_code where `tritonvision` cannot be imported; Auto classes are registered."""

import json
import re

import pytest
import torch
import transformers

import tritonvision
from tritonvision.modeling.remote_code import collect_code_files

from helpers import TINY_VIT, run_without_tritonvision

CASES = [
    ("ViTModel", tritonvision.ViTModel, tritonvision.ViTImageProcessor, "AutoModel", "last_hidden_state"),
    (
        "ViTForImageClassification",
        tritonvision.ViTForImageClassification,
        tritonvision.ViTImageProcessor,
        "AutoModelForImageClassification",
        "logits",
    ),
    (
        "DeiTForImageClassificationWithTeacher",
        tritonvision.DeiTForImageClassificationWithTeacher,
        tritonvision.DeiTImageProcessor,
        "AutoModelForImageClassification",
        "logits",
    ),
]


@pytest.mark.parametrize("name, model_cls, processor_cls, auto_name, output_name", CASES, ids=[c[0] for c in CASES])
def test_folder_loads_without_tritonvision(tmp_path, name, model_cls, processor_cls, auto_name, output_name):
    config_cls = model_cls.config_class
    model = model_cls(config_cls(**TINY_VIT, num_labels=4)).eval()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    processor = processor_cls(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(folder)

    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"][auto_name].endswith(f".{name}")
    assert "triton_attention.py" in {p.name for p in folder.iterdir()}

    image = torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8)
    pixel_values = processor(image, return_tensors="pt").pixel_values
    with torch.no_grad():
        expected = getattr(model(pixel_values), output_name)
    torch.save({"image": image, "expected": expected}, tmp_path / "io.pt")

    stdout = run_without_tritonvision(
        f"""
        import torch, transformers
        io = torch.load("{tmp_path / "io.pt"}")
        model = transformers.{auto_name}.from_pretrained("{folder}", trust_remote_code=True).eval()
        processor = transformers.AutoImageProcessor.from_pretrained("{folder}", trust_remote_code=True)
        assert type(model).__name__ == "{name}", type(model)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            out = getattr(model(processor(io["image"], return_tensors="pt").pixel_values), "{output_name}")
        print("MAXDIFF", (out - io["expected"]).abs().max().item())
        try:
            import tritonvision
        except ImportError:
            print("BLOCKED")
        """,
        cwd=str(tmp_path),
    )
    assert "BLOCKED" in stdout
    assert float(stdout.split("MAXDIFF")[1].split()[0]) < 1e-5


def test_resaving_remote_code_model_writes_same_files(tmp_path):
    """A model loaded as remote code saves a folder with the same (already flat) code files."""
    model = tritonvision.ViTModel(tritonvision.ViTConfig(**TINY_VIT))
    model.save_pretrained(tmp_path / "a")
    run_without_tritonvision(
        f"""
        import transformers
        remote = transformers.AutoModel.from_pretrained("{tmp_path / "a"}", trust_remote_code=True)
        assert type(remote).__module__.startswith("transformers_modules")
        remote.save_pretrained("{tmp_path / "b"}")
        """,
        cwd=str(tmp_path),
    )
    for path in (tmp_path / "a").glob("*.py"):
        assert (tmp_path / "b" / path.name).read_text() == path.read_text(), path.name


def test_code_files_are_flat_and_compile():
    for entry in (tritonvision.modeling.modeling_deit.__file__, tritonvision.modeling.image_processing_vit.__file__):
        files = collect_code_files([entry])
        for name, text in files.items():
            assert not re.search(r"^\s*(from\s+\.\.|from\s+tritonvision|import\s+tritonvision)", text, re.M), name
            compile(text, name, "exec")


def test_auto_classes_resolve_to_ours(tmp_path):
    config = tritonvision.ViTConfig(**TINY_VIT, num_labels=3)
    assert isinstance(transformers.AutoModel.from_config(config), tritonvision.ViTModel)
    assert isinstance(
        transformers.AutoModelForImageClassification.from_config(config), tritonvision.ViTForImageClassification
    )
    deit = tritonvision.DeiTModel(tritonvision.DeiTConfig(**TINY_VIT))
    deit.save_pretrained(tmp_path)
    tritonvision.DeiTImageProcessor().save_pretrained(tmp_path)
    assert isinstance(transformers.AutoConfig.from_pretrained(tmp_path), tritonvision.DeiTConfig)
    assert isinstance(transformers.AutoModel.from_pretrained(tmp_path), tritonvision.DeiTModel)
    assert isinstance(transformers.AutoImageProcessor.from_pretrained(tmp_path), tritonvision.DeiTImageProcessor)
