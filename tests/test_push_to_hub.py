"""push_to_hub and `tritonvision-push`: the folder a remote-code user needs, one commit, clear errors (no network)."""

import json
import typing
import warnings

import httpx2
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, RepositoryNotFoundError

import tritonvision
from tritonvision.model_cards import load_card
from tritonvision.modeling import hub

from helpers import run_without_tritonvision

TINY = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=224, patch_size=32
)
REPO = "someone/vit-base-patch16-224-in21k"


def _tiny_vit():
    return tritonvision.ViTModel(tritonvision.ViTConfig(**TINY)).eval(), tritonvision.ViTImageProcessor()


def _dry_run(tmp_path, **kwargs):
    model, processor = _tiny_vit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = tritonvision.modeling.hub.push_to_hub(
            model, REPO, processor=processor, dry_run_dir=tmp_path / "repo", **kwargs
        )
    return model, processor, folder


def test_dry_run_folder_loads_without_tritonvision(tmp_path):
    model, processor, folder = _dry_run(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_vit.ViTModel"
    assert "AutoImageProcessor" in json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]
    assert (folder / "model.safetensors").is_file() and (folder / "hub.py").is_file()
    pixel_values = processor(images=torch.rand(3, 40, 60), return_tensors="pt")["pixel_values"]
    torch.save(pixel_values, tmp_path / "pixels.pt")
    with torch.no_grad():
        expected = model(pixel_values).last_hidden_state
    torch.save(expected, tmp_path / "expected.pt")
    out = run_without_tritonvision(
        f"""
        import torch
        from transformers import AutoImageProcessor, AutoModel
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        pixels = processor(images=torch.rand(3, 40, 60), return_tensors="pt")["pixel_values"]
        assert pixels.shape == (1, 3, 224, 224)
        with torch.no_grad():
            got = model(torch.load({str(tmp_path / "pixels.pt")!r})).last_hidden_state
        diff = (got - torch.load({str(tmp_path / "expected.pt")!r})).abs().max().item()
        print("DIFF", diff)
        """,
        cwd=str(tmp_path),
    )
    diff = float(out.split("DIFF")[-1])
    assert diff < 1e-4  # NaN fails this comparison


def test_readme_is_the_card_with_real_numbers(tmp_path):
    model, _, folder = _dry_run(tmp_path)
    readme = (folder / "README.md").read_text()
    original = load_card("vit-base-patch16-224-in21k")
    count = sum(p.numel() for p in model.parameters())
    assert f"{count:,}" in readme and "86,389,248" not in readme and "86,389,248" in original
    assert ModelCard(readme).data.to_dict() == ModelCard(original).data.to_dict()
    code = "".join(hub.PYTHON_BLOCK.findall(readme))
    assert f'"{REPO}"' in code and '"google/vit-base-patch16-224-in21k"' not in code
    # outside the code the card still names the original checkpoint; nothing else changed
    assert readme.replace(REPO, "google/vit-base-patch16-224-in21k").replace(
        f"{count:,} ({count / 1e6:.1f}M)", "X"
    ) == original.replace("86,389,248 (86.4M)", "X")


def test_mismatched_card_warns_and_card_choice(tmp_path):
    model, processor = _tiny_vit()
    with pytest.warns(UserWarning, match="86,389,248 parameters"):
        hub.push_to_hub(model, REPO, processor=processor, dry_run_dir=tmp_path / "a")
    with pytest.warns(UserWarning, match="41,524,768"):
        hub.push_to_hub(model, "me/x", card="detr-resnet-50", dry_run_dir=tmp_path / "b")
    hub.push_to_hub(model, "me/unknown-name", dry_run_dir=tmp_path / "c")
    assert "trust_remote_code=True" in (tmp_path / "c" / "README.md").read_text()
    with pytest.raises(ValueError, match="card names"):
        hub.push_to_hub(model, "me/x", card="no-such-card", dry_run_dir=tmp_path / "d")
    with pytest.raises(ValueError, match="not empty"):
        hub.push_to_hub(model, "me/unknown-name", dry_run_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="valid repository id"):
        hub.push_to_hub(model, "bad id with spaces", dry_run_dir=tmp_path / "e")


def test_model_method_gives_the_same_folder(tmp_path):
    _, _, folder = _dry_run(tmp_path)
    model, processor = _tiny_vit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = model.push_to_hub(REPO, processor=processor, dry_run_dir=tmp_path / "method")
    assert sorted(p.name for p in other.iterdir()) == sorted(p.name for p in folder.iterdir())


class FakeApi:
    """Records calls; raises `error` from create_repo when given."""

    error = None
    calls: typing.ClassVar[list] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False):
        FakeApi.calls.append(("create_repo", repo_id, private))
        if FakeApi.error is not None:
            raise FakeApi.error

    def upload_folder(self, repo_id, folder_path, commit_message):
        from pathlib import Path

        FakeApi.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def _response(status):
    return httpx2.Response(status, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.error, FakeApi.calls = None, []
    monkeypatch.setattr(hub, "HfApi", FakeApi)
    return FakeApi


def test_upload_is_one_commit(fake_api):
    model, processor = _tiny_vit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = hub.push_to_hub(model, REPO, processor=processor, private=True, token="hf_x")
    assert info.commit_url.startswith("https://huggingface.co/someone/")
    assert [call[0] for call in fake_api.calls] == ["create_repo", "upload_folder"]
    assert fake_api.calls[0][2] is True
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json", "modeling_vit.py"} <= set(
        fake_api.calls[1][2]
    )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (LocalTokenNotFoundError("Token is required"), "hf auth login"),
        (RepositoryNotFoundError("404 Client Error", response=_response(404)), "not found or your token cannot write"),
        (HfHubHTTPError("401 Unauthorized", response=_response(401)), "refused the token"),
        (HfHubHTTPError("500 Server Error", response=_response(500)), "rejected the upload"),
        (httpx2.ConnectError("Name or service not known"), "could not reach the Hugging Face Hub"),
    ],
)
def test_upload_errors_become_clear_messages(fake_api, error, message):
    fake_api.error = error
    model, _ = _tiny_vit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=message) as raised:
            hub.push_to_hub(model, REPO)
    assert raised.value.__suppress_context__


def test_command_line_dry_run_and_error(tmp_path, capsys):
    model, processor = _tiny_vit()
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert (
            hub.main(
                [
                    str(tmp_path / "saved"),
                    "me/my-vit",
                    "--card",
                    "vit-base-patch16-224-in21k",
                    "--dry-run",
                    str(tmp_path / "out"),
                ]
            )
            == 0
        )
    readme = (tmp_path / "out" / "README.md").read_text()
    assert '"me/my-vit"' in readme and "Vision Transformer, base size" in readme
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()
    assert hub.main([str(tmp_path / "missing"), "me/my-vit", "--dry-run", str(tmp_path / "o2")]) == 1
    assert "no config.json" in capsys.readouterr().err
