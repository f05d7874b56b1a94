"""One command for a lent GPU: the `gpu`-marked tests, then every benchmark, into one results file.

Run on a CUDA machine from the repository root (package installed):

    python benchmarks/gpu_check.py [--out benchmarks/results/<date>-<device>.md] [--skip-tests]

It runs `pytest -m gpu` (Triton kernels compiled for real: attention forward/backward at every model shape,
the matcher on thousands of ragged problems against SciPy, DETR loss capture in a CUDA graph), then
`attention.py`, `matcher.py`, `detr.py` and `compile.py`, each writing its table; the tables are joined
under a header with the device, driver, CUDA, torch, triton and transformers versions and the date. On a
machine without CUDA it says so and exits 0 without writing anything.
"""

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("attention.py", "matcher.py", "detr.py", "compile.py")


def _versions() -> str:
    import transformers
    import triton

    driver = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"device: {torch.cuda.get_device_name()}; driver {driver or 'unknown'}; CUDA {torch.version.cuda}; "
        f"torch {torch.__version__}; triton {triton.__version__}; transformers {transformers.__version__}; "
        f"date {datetime.date.today()}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="results file (default: benchmarks/results/<date>-<device>.md)")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu_check.py needs a CUDA GPU; none found, nothing run.")
        return 0

    device_slug = torch.cuda.get_device_name().replace(" ", "-").lower()
    out = Path(args.out or HERE / "results" / f"{datetime.date.today()}-{device_slug}.md")
    sections = [f"# GPU check\n\n{_versions()}\n"]
    status = 0
    if not args.skip_tests:
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "tests"], capture_output=True, text=True
        )
        status |= tests.returncode
        tail = "\n".join(tests.stdout.strip().splitlines()[-15:])
        sections.append(f"## gpu-marked tests (exit {tests.returncode})\n\n```\n{tail}\n```\n")
    with tempfile.TemporaryDirectory() as scratch:
        for name in BENCHMARKS:
            table = Path(scratch) / f"{name}.md"
            run = subprocess.run([sys.executable, str(HERE / name), "--out", str(table)], text=True)
            status |= run.returncode
            body = table.read_text() if table.exists() else f"(no table: exit {run.returncode})"
            sections.append(f"## {name}\n\n{body}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(sections), encoding="utf-8")
    print(f"wrote {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
