"""Installs the repository as the `tritonvision` package.

`api/` is the package itself (its `__init__.py` holds the public names); the other top-level folders map
into it (`modeling/` -> `tritonvision.modeling`, ...): nothing is installed under a bare `modeling` or
`kernels` name (`kernels` is already a PyPI package). No folder in the checkout is named `tritonvision`, so
running Python from the checkout never shadows the installed package.
"""

from setuptools import setup

SUBPACKAGES = ("modeling", "kernels", "conversion", "model_cards")


setup(
    name="tritonvision",
    version="0.1.0",
    description="Vision transformers and DETR for Transformers, with Triton attention and a batched Hungarian matcher",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=["tritonvision", *(f"tritonvision.{name}" for name in SUBPACKAGES)],
    package_dir={"tritonvision": "api", **{f"tritonvision.{name}": name for name in SUBPACKAGES}},
    package_data={"tritonvision.model_cards": ["*.md"]},
    install_requires=[
        "torch>=2.6,<2.15",
        "transformers>=5.0,<6",
        "triton>=3.2",
        "safetensors>=0.4",
        "huggingface_hub>=0.30",
        "pillow>=10",
        "numpy>=1.24",
        "scipy>=1.11",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "timm>=1.0.15",
            "torchvision>=0.21,<0.30",
            "accelerate>=1.0",
            "datasets>=3.0",
            "evaluate>=0.4",
            "pycocotools>=2.0.8",
            "scikit-learn>=1.3",
        ],
    },
    entry_points={
        "console_scripts": [
            "tritonvision-convert=tritonvision.conversion.__main__:main",
            "tritonvision-push=tritonvision.modeling.hub:main",
        ],
    },
)
