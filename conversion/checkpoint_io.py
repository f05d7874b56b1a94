"""Reading original checkpoints safely, and checking tensor names before anything is built from them.

Every reader turns what can go wrong with a user's file (missing, truncated, not the expected format, a
pickle holding something other than tensors) into a `ConversionError` with the file name, so the command
line prints one clear sentence instead of a traceback. PyTorch files are read with `weights_only=True`:
no code from a checkpoint ever runs.
"""

import argparse
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from .folder_writer import ConversionError

# Wrapper keys under which training scripts store the weights (facebookresearch/detr and deit use "model").
STATE_DICT_KEYS = ("model", "state_dict", "model_ema")
# Prefixes some JAX checkpoints put before every parameter name (optimizer-state dumps of the original repo).
NPZ_PREFIXES = ("opt/target/", "params/")


def listing(names, limit: int = 20) -> str:
    """`a, b, c, ... (N more)`: a readable excerpt of a long list of tensor names."""
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "") if names else "none"


def _require_file(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist or is not a file")
    return path


def load_npz(path) -> dict[str, np.ndarray]:
    """All arrays of a JAX/Flax `.npz` checkpoint (pickles refused), with an `opt/target/` style prefix removed."""
    path = _require_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ConversionError(f"{path} is a single .npy array, not a .npz checkpoint of named arrays")
            arrays = {name: archive[name] for name in archive.files}
    except ConversionError:
        raise
    except Exception as error:  # zip, zlib and format errors of a truncated or foreign file come in many types
        raise ConversionError(
            f"cannot read {path} as a .npz checkpoint (truncated or another format?): {type(error).__name__}: {error}"
        ) from error
    if not arrays:
        raise ConversionError(f"{path} holds no arrays")
    for prefix in NPZ_PREFIXES:
        if all(name.startswith(prefix) for name in arrays):
            arrays = {name[len(prefix) :]: array for name, array in arrays.items()}
            break
    return arrays


def load_torch_checkpoint(path) -> tuple[dict[str, torch.Tensor], object]:
    """(state dict, training `args` or None) of a `.pth` file, read with `weights_only=True`.

    The weights may be the file itself or under `model` / `state_dict`; facebookresearch/detr also stores its
    `argparse.Namespace` of training options, which is allowed through (it is plain data) and returned.
    """
    path = _require_file(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"cannot read {path} as a PyTorch checkpoint (truncated, another format, or objects other than "
            f"tensors in the pickle): {reason}"
        ) from error
    except Exception as error:  # the unpickler raises assorted types on corrupt data
        raise ConversionError(f"cannot read {path} as a PyTorch checkpoint: {type(error).__name__}: {error}") from error
    args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    state_dict = checkpoint
    if isinstance(checkpoint, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(checkpoint.get(key), dict):
                state_dict = checkpoint[key]
                break
    if not isinstance(state_dict, dict) or not state_dict:
        raise ConversionError(f"{path} does not hold a state dict (got {type(state_dict).__name__})")
    not_tensors = [
        str(key) for key, value in state_dict.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)
    ]
    if not_tensors:
        raise ConversionError(f"{path} is not a state dict of named tensors; other entries: {listing(not_tensors)}")
    return state_dict, args


def check_tensors(expected: dict, actual: dict, what: str) -> None:
    """Raise `ConversionError` listing missing, unexpected and wrongly shaped tensors (`expected`: name -> shape)."""
    missing = [name for name in expected if name not in actual]
    unexpected = [name for name in actual if name not in expected]
    wrong = [
        f"{name} {tuple(actual[name].shape)} (expected {tuple(shape)})"
        for name, shape in expected.items()
        if name in actual and tuple(actual[name].shape) != tuple(shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {listing(wrong)}")
    if problems:
        raise ConversionError(f"{what}; " + "; ".join(problems))


def load_into(model: torch.nn.Module, state_dict: dict, what: str) -> torch.nn.Module:
    """Strictly load `state_dict` into `model` after a readable name and shape check."""
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    check_tensors(expected, state_dict, f"{what} does not fit {type(model).__name__}")
    model.load_state_dict(state_dict, strict=True)
    return model


def random_pixels(batch_size: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """The verification input: a fixed-seed standard normal batch (the same for reference and ours)."""
    return torch.randn(batch_size, channels, height, width, generator=torch.Generator().manual_seed(seed))


def rename(key: str, table) -> str | None:
    """The first `(regex, replacement)` of `table` that matches all of `key`, applied; None when none does."""
    for pattern, replacement in table:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(replacement)
    return None
