"""Verify-then-write: the one way every converter produces an output folder.

A converter hands over the converted model, its image processor and a `compare` callable that runs the
reference implementation and ours on the same input. The folder is written only when every compared output
agrees within `tolerance` (float32 max abs difference): first into a temporary sibling folder, then renamed
into place, so a failed check or a failed save leaves nothing behind.
"""

import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

DEFAULT_TOLERANCE = 1e-4
MODEL_CARDS_DIR = Path(__file__).resolve().parent.parent / "model_cards"


class ConversionError(RuntimeError):
    """The checkpoint cannot be converted (unknown model, missing or unexpected tensors, unsupported option)."""


class VerificationError(ConversionError):
    """The converted model's outputs differ from the reference's by more than the tolerance."""


Comparison = list[tuple[str, torch.Tensor, torch.Tensor]]


def max_abs_differences(comparison: Comparison) -> dict[str, float]:
    """`name -> max |reference - ours|` (inf where shapes differ, nan where either side has a NaN)."""
    differences = {}
    for name, reference, ours in comparison:
        if reference.shape != ours.shape:
            differences[name] = math.inf
        elif torch.isnan(reference).any() or torch.isnan(ours).any():
            differences[name] = math.nan
        else:
            differences[name] = (reference.double() - ours.double()).abs().max().item()
    return differences


def verify(compare: Callable[[], Comparison], tolerance: float = DEFAULT_TOLERANCE, log=print) -> dict[str, float]:
    """Run `compare`, print each difference, raise `VerificationError` unless all are <= `tolerance`."""
    with torch.no_grad():
        differences = max_abs_differences(compare())
    if not differences:
        raise VerificationError("verification compared no outputs")
    for name, difference in differences.items():
        log(f"max abs diff {name}: {difference:.3e} (tolerance {tolerance:.0e})")
    failed = {name: d for name, d in differences.items() if not d <= tolerance}
    if failed:
        listed = ", ".join(f"{name}={d:.3e}" for name, d in failed.items())
        raise VerificationError(f"converted model does not reproduce the reference: {listed}; nothing written")
    return differences


def find_model_card(card_name: str | None) -> Path | None:
    """`model_cards/<card_name>.md` when it exists."""
    if not card_name:
        return None
    path = MODEL_CARDS_DIR / f"{card_name}.md"
    return path if path.is_file() else None


def write_folder(
    model, processor, output_dir: str | Path, card_name: str | None = None, overwrite: bool = False, log=print
) -> Path:
    """Save weights (safetensors), config, processor config, code files and model card into `output_dir`."""
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ConversionError(f"{output_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        if processor is not None:
            processor.save_pretrained(staging)
        card = find_model_card(card_name)
        if card is not None:
            shutil.copyfile(card, staging / "README.md")
            log(f"model card: {card}")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"wrote {output_dir}: {', '.join(sorted(p.name for p in output_dir.iterdir()))}")
    return output_dir


def verify_then_write(
    model,
    processor,
    output_dir,
    compare: Callable[[], Comparison] | None,
    tolerance: float = DEFAULT_TOLERANCE,
    card_name: str | None = None,
    overwrite: bool = False,
    log=print,
) -> Path:
    """`verify` (skipped when `compare` is None, i.e. --no-verify), then `write_folder`."""
    if compare is None:
        log("verification skipped (--no-verify)")
    else:
        verify(compare, tolerance, log)
    return write_folder(model, processor, output_dir, card_name, overwrite, log)


def add_output_arguments(parser, reference: str, card_default: str = "") -> None:
    """The arguments every converter shares: the output folder, verification, model card and overwrite."""
    parser.add_argument("output_dir", help="folder to write (must not exist or be empty unless --overwrite)")
    parser.add_argument("--no-verify", action="store_true", help=f"write without comparing against {reference}")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max abs difference allowed")
    card_help = "model card name in model_cards/" + (f" (default: {card_default})" if card_default else "")
    parser.add_argument("--card", help=card_help)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def output_options(args) -> dict:
    """`convert(...)` keyword arguments from the shared arguments."""
    return {
        "verify": not args.no_verify,
        "tolerance": args.tolerance,
        "card_name": args.card,
        "overwrite": args.overwrite,
    }
