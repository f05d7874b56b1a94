"""Model cards of the checkpoints this package supports, one Markdown file per Hub repository name.

`tritonvision-push` uses them as the README of a published repository; the repository name picks the card.
"""

from pathlib import Path

CARDS_DIR = Path(__file__).resolve().parent


def card_names() -> list[str]:
    """Repository names (without the owner) that have a card, e.g. `vit-base-patch16-224-in21k`."""
    return sorted(path.stem for path in CARDS_DIR.glob("*.md"))


def card_path(repo_id_or_name: str) -> Path:
    """The card file for `google/vit-base-patch16-224-in21k`, `vit-base-patch16-224-in21k` or a `.md` path."""
    name = str(repo_id_or_name).rstrip("/").rsplit("/", 1)[-1]
    name = name[: -len(".md")] if name.endswith(".md") else name
    path = CARDS_DIR / f"{name}.md"
    if not path.is_file():
        raise KeyError(f"no model card named {name!r}; available: {', '.join(card_names())}")
    return path


def load_card(name: str) -> str:
    """The text of a card (front matter included), chosen as `card_path` does."""
    return card_path(name).read_text(encoding="utf-8")


__all__ = ["CARDS_DIR", "card_names", "card_path", "load_card"]
