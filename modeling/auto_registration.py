"""Registers this package's classes with Transformers' Auto classes (done once by `import tritonvision`).

Each family is one row: its config, the Auto model classes it fills, and its image processor. A family
added to the package adds its row here.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForObjectDetection,
)

AUTO_MODEL_CLASSES = {
    "AutoModel": AutoModel,
    "AutoModelForImageClassification": AutoModelForImageClassification,
    "AutoModelForObjectDetection": AutoModelForObjectDetection,
}


def families():
    """(config class, {Auto class name: model class or classes}, image processor class) for every family."""
    from . import (
        DeiTConfig,
        DeiTForImageClassification,
        DeiTForImageClassificationWithTeacher,
        DeiTImageProcessor,
        DeiTModel,
        DetrConfig,
        DetrForObjectDetection,
        DetrImageProcessor,
        DetrModel,
        ViTConfig,
        ViTForImageClassification,
        ViTHybridConfig,
        ViTHybridForImageClassification,
        ViTHybridImageProcessor,
        ViTHybridModel,
        ViTImageProcessor,
        ViTModel,
    )

    rows = [
        (
            ViTConfig,
            {"AutoModel": ViTModel, "AutoModelForImageClassification": ViTForImageClassification},
            ViTImageProcessor,
        ),
        (
            DeiTConfig,
            # A tuple: Transformers picks the one named in `config.architectures`.
            {
                "AutoModel": DeiTModel,
                "AutoModelForImageClassification": (
                    DeiTForImageClassification,
                    DeiTForImageClassificationWithTeacher,
                ),
            },
            DeiTImageProcessor,
        ),
        (
            ViTHybridConfig,
            {"AutoModel": ViTHybridModel, "AutoModelForImageClassification": ViTHybridForImageClassification},
            ViTHybridImageProcessor,
        ),
        (
            DetrConfig,
            {"AutoModel": DetrModel, "AutoModelForObjectDetection": DetrForObjectDetection},
            DetrImageProcessor,
        ),
    ]
    return rows


def register_auto_classes() -> None:
    """Idempotent: registering twice (or after a remote-code load) overwrites with the same classes."""
    for config_class, models, processor_class in families():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for auto_name, model_class in models.items():
            AUTO_MODEL_CLASSES[auto_name].register(config_class, model_class, exist_ok=True)
        # One class for both backends: ours runs on PIL/NumPy, and Transformers would otherwise pick its own
        # torchvision class for the "torchvision" backend.
        AutoImageProcessor.register(
            config_class,
            image_processor_classes={"pil": processor_class, "torchvision": processor_class},
            exist_ok=True,
        )
