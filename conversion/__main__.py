"""`tritonvision-convert <source> ...` (also `python -m tritonvision.conversion ...`): checkpoint converters.

Registry: every module of this package named `<source>_to_tritonvision.py` is a subcommand. Such a module
defines

    SOURCE = "<source>"                 # the subcommand name (timm, jax, detr, deit, hf, ...)
    HELP = "one line for --help"
    def add_arguments(parser): ...      # its argparse arguments
    def run(args) -> int: ...           # does the work; returns the exit status

and should import heavy or optional packages (timm, jax, ...) inside functions, so that listing the
subcommands never needs them. Converters write through `folder_writer.verify_then_write`, which refuses to
write a folder whose model does not reproduce the reference. A `ConversionError` from `run` is printed as
`error: ...` with exit status 1. Adding a converter means adding its module: nothing here changes.
"""

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from .folder_writer import ConversionError

MODULE_SUFFIX = "_to_tritonvision"


def converter_modules() -> dict:
    """`source -> module` for every `<source>_to_tritonvision` module in this package, sorted by source."""
    package = __package__ or "tritonvision.conversion"
    modules = {}
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name.endswith(MODULE_SUFFIX):
            module = importlib.import_module(f"{package}.{info.name}")
            modules[getattr(module, "SOURCE", info.name[: -len(MODULE_SUFFIX)])] = module
    return modules


def build_parser(modules: dict | None = None) -> argparse.ArgumentParser:
    modules = converter_modules() if modules is None else modules
    parser = argparse.ArgumentParser(
        prog="tritonvision-convert",
        description="Convert a checkpoint into a tritonvision folder (verified against its source before writing).",
    )
    subparsers = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    for source, module in modules.items():
        subparser = subparsers.add_parser(source, help=getattr(module, "HELP", None))
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
