"""Configuration behaviour shared by this package's model families.

Our classes carry model types of their own (Transformers' `vit`, `deit`, `detr` are taken), yet they load
the Hub's `config.json` files written under the stock types. Those stock types are accepted as aliases
instead of being warned about.
"""

from typing import ClassVar

from transformers import PreTrainedConfig


class HubCompatibleConfig(PreTrainedConfig):
    """A config that also accepts the listed stock `model_type` values of the Hub checkpoints."""

    hub_model_types: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") in cls.hub_model_types:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs
