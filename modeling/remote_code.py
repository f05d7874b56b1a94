"""Assembles the self-contained code folder that `trust_remote_code` loads.

Transformers copies a class's file and the files it imports as `from .name import x`, and puts them all
in one flat folder. Our sources live in two folders: model code in `modeling/` imports siblings as
`from .name import x` and kernels as `from ..kernels.name import x`. Assembly follows those imports from
the entry files, copies every file they reach into one folder and rewrites the kernel imports to the flat
form. Files already flat (a model loaded as remote code, saved again) are copied as they are.
"""

import re
from pathlib import Path

SIBLING_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\b", re.MULTILINE)
KERNEL_IMPORT = re.compile(r"^(\s*from\s+)\.\.kernels\.(\w+)(\s+import\b)", re.MULTILINE)


def _imported_files(path: Path, text: str) -> list[Path]:
    siblings = [path.parent / f"{name}.py" for name in SIBLING_IMPORT.findall(text)]
    kernels = [path.parent.parent / "kernels" / f"{m.group(2)}.py" for m in KERNEL_IMPORT.finditer(text)]
    return siblings + kernels


def collect_code_files(entry_files: list[str | Path]) -> dict[str, str]:
    """Map each flat file name a folder needs to its (rewritten) source, following relative imports."""
    sources: dict[str, str] = {}
    origins: dict[str, Path] = {}
    pending = [Path(f).resolve() for f in entry_files]
    while pending:
        path = pending.pop()
        if origins.get(path.name) == path:
            continue
        if not path.is_file():
            raise FileNotFoundError(f"code file {path} is imported but does not exist")
        text = path.read_text(encoding="utf-8")
        flat_text = KERNEL_IMPORT.sub(r"\1.\2\3", text)
        if path.name in origins:
            # Transformers caches a remote config's files and its model's files in separate folders: the
            # same file twice is fine, two different files under one name are not.
            if sources[path.name] != flat_text:
                raise RuntimeError(f"two code files would share the name {path.name}: {origins[path.name]}, {path}")
            continue
        origins[path.name] = path
        sources[path.name] = flat_text
        pending.extend(_imported_files(path, text))
    return sources


def write_code_folder(entry_files: list[str | Path], save_directory: str | Path) -> list[str]:
    """Write the code files reachable from `entry_files` into `save_directory`; return their names."""
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    files = collect_code_files(entry_files)
    for name, text in files.items():
        (save_directory / name).write_text(text, encoding="utf-8")
    return sorted(files)


def module_file(cls: type) -> str:
    """The source file that defines `cls` (works for classes loaded as remote code too)."""
    import sys

    return sys.modules[cls.__module__].__file__


def auto_map_entry(cls: type) -> str:
    """`module.Class` as Transformers' `auto_map` names a class in a remote-code folder."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
