"""What every model class of this package shares: attention selection and saving as a remote-code folder.

A saved folder must load with `AutoModel.from_pretrained(folder, trust_remote_code=True)` on a machine
without this package, so `save_pretrained` also writes the code files and an `auto_map` naming them.
"""

from transformers import PreTrainedModel

from ..kernels.attention import IMPLEMENTATIONS, register_with_transformers
from .remote_code import auto_map_entry, module_file, write_code_folder

# "triton" must be a known implementation wherever this file is imported: installed or as remote code.
register_with_transformers()


class TritonVisionPreTrainedModel(PreTrainedModel):
    """Base class: `attn_implementation` is one of eager / sdpa / triton, "triton" by default.

    "triton" runs the fused Triton kernel on CUDA tensors and PyTorch SDPA elsewhere, so it is the right
    default on every device. Subclasses set `auto_class` (the Auto class that loads them) and families set
    `family_auto_map` (Auto class -> class name, for the classes of the same modeling file).
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _can_set_attn_implementation_cached_value = True
    auto_class: str | None = None
    family_auto_map: dict[str, str] = {}

    def get_correct_attn_implementation(self, requested_attention: str | None, is_init_check: bool = False) -> str:
        if requested_attention is None:
            return "triton"
        if requested_attention not in IMPLEMENTATIONS:
            raise ValueError(
                f'attn_implementation="{requested_attention}" is not supported by {type(self).__name__}; '
                f"choose one of {IMPLEMENTATIONS}"
            )
        return requested_attention

    def remote_code_auto_map(self) -> dict[str, str]:
        """The `auto_map` of a saved folder: the family's classes, this class for its own Auto class."""
        module_name = type(self).__module__.rsplit(".", 1)[-1]
        auto_map = {"AutoConfig": auto_map_entry(type(self.config))}
        auto_map.update({auto: f"{module_name}.{name}" for auto, name in self.family_auto_map.items()})
        if self.auto_class is not None:
            auto_map[self.auto_class] = auto_map_entry(type(self))
        return auto_map

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights and config as Transformers does, plus the code files a remote-code load needs."""
        self.config.auto_map = self.remote_code_auto_map()
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            write_code_folder([module_file(type(self)), module_file(type(self.config))], save_directory)

    def push_to_hub(
        self,
        repo_id: str,
        processor=None,
        card=None,
        private: bool = False,
        token: str | None = None,
        dry_run_dir=None,
        commit_message: str | None = None,
    ):
        """Publish this model as a repository that loads with `trust_remote_code=True`, with its model card.

        Same as `tritonvision.push_to_hub(self, repo_id, ...)`: weights, config, code, the processor if given,
        and a README from `model_cards/`, in one commit (or written to `dry_run_dir`).
        """
        from .hub import DEFAULT_COMMIT_MESSAGE, push_to_hub

        return push_to_hub(
            self,
            repo_id,
            processor=processor,
            card=card,
            private=private,
            token=token,
            dry_run_dir=dry_run_dir,
            commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
        )
