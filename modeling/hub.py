"""Publishing a model as a Hub repository that loads with Transformers alone (`trust_remote_code=True`).

The folder uploaded is exactly what `from_pretrained(repo_id, trust_remote_code=True)` needs: the weights and
`config.json` (with `auto_map`) and the code files from `model.save_pretrained`, the processor's
`preprocessor_config.json` and code from `processor.save_pretrained`, and a README.md model card. The card comes
from this package's `model_cards/` folder (by name, or by the repository's name when one matches) or from a
file; its parameter count is set from the model being pushed and its code examples are pointed at `repo_id`.
Everything goes up in one commit.

This file is also copied into remote-code folders (the models' `push_to_hub` imports it), so it imports only
the standard library and huggingface_hub at the top, and nothing from tritonvision.
"""

import argparse
import importlib
import json
import re
import sys
import tempfile
import warnings
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalTokenNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

CHECKPOINT_MARKER = re.compile(r"<!--\s*tritonvision:checkpoint\s+(\S+)\s*-->")
NUM_PARAMETERS_SPAN = re.compile(
    r"(<!--\s*tritonvision:num_parameters\s*-->)(.*?)(<!--\s*/tritonvision:num_parameters\s*-->)", re.DOTALL
)
PYTHON_BLOCK = re.compile(r"^```python\n.*?^```", re.MULTILINE | re.DOTALL)
DEFAULT_COMMIT_MESSAGE = "Upload model, processor and model card with tritonvision"


def cards_dir() -> Path | None:
    """`model_cards/` of the installed package; None where this file runs as remote code."""
    folder = Path(__file__).resolve().parent.parent / "model_cards"
    return folder if folder.is_dir() else None


def _card_file(name: str) -> Path | None:
    folder = cards_dir()
    if folder is None:
        return None
    path = folder / f"{name.rstrip('/').rsplit('/', 1)[-1].removesuffix('.md')}.md"
    return path if path.is_file() else None


def resolve_card(card: str | Path | None, repo_id: str) -> str | None:
    """The card text: `card` as a file path or a card name, else the card named like the repository, else None."""
    if card is None:
        path = _card_file(repo_id)
        return path.read_text(encoding="utf-8") if path else None
    if Path(card).is_file():
        return Path(card).read_text(encoding="utf-8")
    path = _card_file(str(card))
    if path is None:
        folder = cards_dir()
        names = sorted(p.stem for p in folder.glob("*.md")) if folder else []
        raise ValueError(
            f"card={card!r} is neither a file nor a card name; card names: {', '.join(names) or '(none installed)'}"
        )
    return path.read_text(encoding="utf-8")


def count_parameters(model) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def fill_card(text: str, model, repo_id: str) -> str:
    """Put the pushed model's parameter count in the card and point its code examples at `repo_id`.

    Warns when the card was written for a model of another size: the card probably describes another checkpoint.
    """
    count = count_parameters(model)

    def set_count(match: re.Match) -> str:
        written = re.sub(r"\D", "", match.group(2).split("(")[0])
        if written and int(written) != count:
            warnings.warn(
                f"the model card describes a model with {int(written):,} parameters, but {type(model).__name__} "
                f"has {count:,}; check that card and model belong together",
                stacklevel=3,
            )
        return f"{match.group(1)}{count:,} ({count / 1e6:.1f}M){match.group(3)}"

    text = NUM_PARAMETERS_SPAN.sub(set_count, text)
    marker = CHECKPOINT_MARKER.search(text)
    if marker and marker.group(1) != repo_id:
        original = marker.group(1)
        text = PYTHON_BLOCK.sub(
            lambda block: (
                block.group(0).replace(f'"{original}"', f'"{repo_id}"').replace(f"'{original}'", f"'{repo_id}'")
            ),
            text,
        )
    return text


def default_card(model, repo_id: str) -> str:
    """A minimal card for a repository that matches none of the package's cards."""
    auto_class = getattr(model, "auto_class", None) or "AutoModel"
    return (
        "---\nlibrary_name: transformers\ntags:\n- tritonvision\n---\n\n"
        f"# {repo_id}\n\n"
        f"A `{type(model).__name__}` ({count_parameters(model):,} parameters) saved with `tritonvision`. "
        "The repository holds its model code, so Transformers loads it without the package:\n\n"
        "```python\n"
        f"from transformers import {auto_class}\n\n"
        f'model = {auto_class}.from_pretrained("{repo_id}", trust_remote_code=True)\n'
        "```\n"
    )


def _check_remote_code_folder(folder: Path, file_name: str) -> None:
    config = json.loads((folder / file_name).read_text(encoding="utf-8"))
    auto_map = config.get("auto_map")
    if not auto_map:
        raise ValueError(
            f"{file_name} has no auto_map, so trust_remote_code cannot load it: push a tritonvision model or "
            "processor (one saved by this package's save_pretrained)"
        )
    for reference in auto_map.values():
        references = reference if isinstance(reference, (list, tuple)) else [reference]
        for entry in filter(None, references):
            module = entry.split("--")[-1].rsplit(".", 1)[0]
            if not (folder / f"{module}.py").is_file():
                raise ValueError(f"{file_name} names {entry} but {module}.py was not written beside it")


def assemble_folder(model, folder: str | Path, repo_id: str, processor=None, card: str | Path | None = None) -> Path:
    """Write into `folder` everything the repository will hold; return the folder."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty: give an empty or new folder, so no stale file is uploaded")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _check_remote_code_folder(folder, "config.json")
    if processor is not None:
        processor.save_pretrained(folder)
        _check_remote_code_folder(folder, "preprocessor_config.json")
    text = resolve_card(card, repo_id)
    text = fill_card(text, model, repo_id) if text is not None else default_card(model, repo_id)
    (folder / "README.md").write_text(text, encoding="utf-8")
    return folder


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of whichever HTTP client huggingface_hub uses."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for attribute in ("TransportError", "ConnectionError", "Timeout"):
            error = getattr(module, attribute, None)
            if isinstance(error, type) and issubclass(error, BaseException):
                errors.append(error)
    return tuple(errors)


def _upload(folder: Path, repo_id: str, private: bool, token: str | None, commit_message: str):
    """Create the repository if needed and upload the folder as one commit; Hub errors become short messages."""
    login_hint = "run `hf auth login`, set HF_TOKEN, or pass token=..."
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    except OfflineModeIsEnabled:
        raise RuntimeError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it, or use dry_run_dir / --dry-run to write "
            "the folder locally"
        ) from None
    except LocalTokenNotFoundError:
        raise RuntimeError(f"no Hugging Face token found: {login_hint}") from None
    except RepositoryNotFoundError as error:
        raise RuntimeError(
            f"repository {repo_id!r} was not found or your token cannot write to it: check the spelling "
            f"(owner/name) and that the token has write access ({_first_line(error)})"
        ) from None
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            raise RuntimeError(
                f"the Hub refused the token for {repo_id!r} (HTTP {status}): {login_hint}, with a token that has "
                f"write access ({_first_line(error)})"
            ) from None
        raise RuntimeError(f"the Hub rejected the upload to {repo_id!r}: {_first_line(error)}") from None
    except _network_errors() as error:
        raise RuntimeError(
            f"could not reach the Hugging Face Hub ({type(error).__name__}: {_first_line(error)}); check the network, "
            "or use dry_run_dir / --dry-run to write the folder locally"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def push_to_hub(
    model,
    repo_id: str,
    processor=None,
    card: str | Path | None = None,
    private: bool = False,
    token: str | None = None,
    dry_run_dir: str | Path | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
):
    """Publish `model` (and `processor`) as `repo_id` with its model card, in one commit.

    `card` is a card name from `model_cards/` or a Markdown file; left out, the card named like the repository
    is used if there is one, else a minimal card. With `dry_run_dir` the folder is written there instead of
    being uploaded, and its path is returned; otherwise the `CommitInfo` of the upload is returned.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"repo_id {repo_id!r} is not a valid repository id ('owner/name'): {error}") from None
    if dry_run_dir is not None:
        return assemble_folder(model, dry_run_dir, repo_id, processor=processor, card=card)
    with tempfile.TemporaryDirectory(prefix="tritonvision-push-") as folder:
        assemble_folder(model, folder, repo_id, processor=processor, card=card)
        return _upload(Path(folder), repo_id, private, token, commit_message)


def load_saved_folder(folder: str | Path):
    """Load the model (the class in `config.json`'s `architectures`) and processor of a saved folder.

    Loading goes through `trust_remote_code`, the way users will load the published repository, so a folder
    that would not load on the Hub fails here first.
    """
    import transformers

    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{folder} has no config.json: give a folder written by model.save_pretrained")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    auto_map = config.get("auto_map") or {}
    architectures = config.get("architectures") or []
    auto_names = [name for name, entry in auto_map.items() if architectures and entry.endswith(f".{architectures[0]}")]
    auto_names = [name for name in auto_names if name != "AutoConfig"]
    if not auto_names:
        raise ValueError(f"{config_file} has no auto_map entry for {architectures or 'its model class'}")
    model = getattr(transformers, auto_names[0]).from_pretrained(folder, trust_remote_code=True)
    processor = None
    if (folder / "preprocessor_config.json").is_file():
        processor = transformers.AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    return model, processor


def main(argv: list[str] | None = None) -> int:
    """`tritonvision-push <saved-folder> <repo_id> [--card NAME|PATH] [--private] [--dry-run DIR]`."""
    parser = argparse.ArgumentParser(
        prog="tritonvision-push",
        description="Publish a folder saved with tritonvision (model, processor) on the Hub, with its model card.",
    )
    parser.add_argument("folder", help="folder written by model.save_pretrained (and processor.save_pretrained)")
    parser.add_argument("repo_id", help="target repository, owner/name")
    parser.add_argument("--card", help="card name from tritonvision's model_cards, or a Markdown file")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", help="Hugging Face token (default: the logged-in one / HF_TOKEN)")
    parser.add_argument("--dry-run", metavar="DIR", help="write the repository folder to DIR instead of uploading")
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE)
    args = parser.parse_args(argv)
    try:
        model, processor = load_saved_folder(args.folder)
        result = push_to_hub(
            model,
            args.repo_id,
            processor=processor,
            card=args.card,
            private=args.private,
            token=args.token,
            dry_run_dir=args.dry_run,
            commit_message=args.commit_message,
        )
    except (ValueError, RuntimeError) as error:
        print(f"tritonvision-push: error: {error}", file=sys.stderr)
        return 1
    print(result if args.dry_run else getattr(result, "commit_url", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
