"""DeiT (Touvron et al., 2021): a ViT with a distillation token, numerically identical to Transformers' DeiT.

The encoder is ViT's; DeiT adds a second prefix token (distillation) and, for the distilled models, a
second linear head on it whose prediction is averaged with the cls head's at inference.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from .configuration_deit import DeiTConfig
from .modeling_vit import ViTEmbeddings, ViTForImageClassification, ViTModel, ViTPreTrainedModel


class DeiTEmbeddings(ViTEmbeddings):
    """ViT embeddings with `[cls, distillation]` before the patches (position table one longer)."""

    num_prefix_tokens = 2

    def __init__(self, config: DeiTConfig, use_mask_token: bool = False):
        super().__init__(config, use_mask_token=use_mask_token)
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))

    def prefix_tokens(self, batch_size: int) -> torch.Tensor:
        return torch.cat(
            (self.cls_token.expand(batch_size, -1, -1), self.distillation_token.expand(batch_size, -1, -1)), dim=1
        )


class DeiTPreTrainedModel(ViTPreTrainedModel):
    config_class = DeiTConfig
    config: DeiTConfig
    base_model_prefix = "deit"
    _no_split_modules = ["DeiTEmbeddings", "ViTLayer"]
    family_auto_map = {"AutoModel": "DeiTModel", "AutoModelForImageClassification": "DeiTForImageClassification"}


class DeiTModel(DeiTPreTrainedModel, ViTModel):
    """The bare DeiT encoder (`deit.*` tensor names)."""

    embeddings_class = DeiTEmbeddings


class DeiTForImageClassification(DeiTPreTrainedModel, ViTForImageClassification):
    """A linear head on the cls token only (the distillation token is ignored, as in Transformers)."""

    backbone_class = DeiTModel


@dataclass
class DeiTForImageClassificationWithTeacherOutput(ModelOutput):
    """`logits` is the mean of `cls_logits` and `distillation_logits`."""

    logits: torch.FloatTensor | None = None
    cls_logits: torch.FloatTensor | None = None
    distillation_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class DeiTForImageClassificationWithTeacher(DeiTPreTrainedModel):
    """The distilled DeiT: cls and distillation heads, predictions averaged; inference only, as in Transformers.

    Training with a teacher needs the teacher's predictions, which this class does not see, so it has no loss.
    """

    auto_class = "AutoModelForImageClassification"

    def __init__(self, config: DeiTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.deit = DeiTModel(config, add_pooling_layer=False)
        self.cls_classifier = (
            nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.distillation_classifier = (
            nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DeiTForImageClassificationWithTeacherOutput | tuple:
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.deit(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        cls_logits = self.cls_classifier(outputs.last_hidden_state[:, 0])
        distillation_logits = self.distillation_classifier(outputs.last_hidden_state[:, 1])
        output = DeiTForImageClassificationWithTeacherOutput(
            logits=(cls_logits + distillation_logits) / 2,
            cls_logits=cls_logits,
            distillation_logits=distillation_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()
