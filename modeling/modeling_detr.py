"""DETR (Carion et al., 2020), numerically identical to Transformers' DETR, with the set loss made sync-free.

Module attribute names are the Hub's tensor names (`model.backbone.conv_encoder.model.layer1.0.conv1`,
`self_attn.out_proj`, `layers.N.fc1`, `class_labels_classifier`, `bbox_predictor.layers.N`, ...), which stock
`save_pretrained` writes, so Hub and stock-saved weights load with no renaming. The ResNet backbone is our own
(`detr_backbone.py`, no timm at run time). Position embeddings are added to queries and keys, never values, and
the padding of the pixel mask goes to `kernels.attention.attention` as a key padding mask.

As in Transformers, with `auxiliary_loss=True` the decoder's shared final layer norm is also applied to each
layer's output before it feeds the next layer (`intermediate_hidden_states`), and once more at the end.
"""

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.detr.modeling_detr import DetrModelOutput, DetrObjectDetectionOutput

from ..kernels.attention import attention
from .configuration_detr import DetrConfig
from .detr_backbone import DetrConvModel, DetrFrozenBatchNorm2d
from .detr_loss import detr_loss, targets_from_labels
from .detr_position import DetrLearnedPositionEmbedding, build_position_embedding
from .pretrained import TritonVisionPreTrainedModel


class DetrAttention(nn.Module):
    """Multi-head attention where `query_position` is added to the query input and `key_position` to the keys'.

    Self-attention passes the same tensor and embedding for both; cross-attention passes the encoder memory
    and its spatial embedding as keys. Values never get position embeddings.
    """

    def __init__(self, config: DetrConfig, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = config.d_model // num_heads
        self.dropout = config.attention_dropout
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states,
        query_position=None,
        key_value_states=None,
        key_position=None,
        key_padding_mask=None,
        output_attentions=False,
    ):
        if key_value_states is None:
            key_value_states, key_position = hidden_states, query_position
        query_input = hidden_states if query_position is None else hidden_states + query_position
        key_input = key_value_states if key_position is None else key_value_states + key_position
        output, probs = attention(
            self._heads(self.q_proj(query_input)),
            self._heads(self.k_proj(key_input)),
            self._heads(self.v_proj(key_value_states)),
            key_padding_mask,
            scale=self.head_dim**-0.5,
            dropout_p=self.dropout if self.training else 0.0,
            implementation=self.config._attn_implementation,
            output_attentions=output_attentions,
        )
        return self.out_proj(output.transpose(1, 2).flatten(2)), probs


def feed_forward(layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """fc1 -> activation -> fc2 with DETR's dropouts; `fc1`/`fc2` sit on the layer itself (the Hub names)."""
    hidden_states = layer.activation_fn(layer.fc1(hidden_states))
    hidden_states = nn.functional.dropout(hidden_states, p=layer.activation_dropout, training=layer.training)
    hidden_states = layer.fc2(hidden_states)
    return nn.functional.dropout(hidden_states, p=layer.dropout, training=layer.training)


class DetrEncoderLayer(GradientCheckpointingLayer):
    """Post-norm: x = LN(x + SelfAttn(x + pos, x + pos, x)), then x = LN(x + FFN(x))."""

    def __init__(self, config: DetrConfig):
        super().__init__()
        self.self_attn = DetrAttention(config, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.fc1 = nn.Linear(config.d_model, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)
        self.activation_fn = ACT2FN[config.activation_function]
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout

    def forward(self, hidden_states, key_padding_mask=None, spatial_position_embeddings=None, output_attentions=False):
        residual = hidden_states
        hidden_states, probs = self.self_attn(
            hidden_states,
            spatial_position_embeddings,
            key_padding_mask=key_padding_mask,
            output_attentions=output_attentions,
        )
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = self.self_attn_layer_norm(residual + hidden_states)
        hidden_states = self.final_layer_norm(hidden_states + feed_forward(self, hidden_states))
        if self.training:
            # Transformers clamps only when something overflowed; clamping always is the same and needs no sync.
            clamp_value = torch.finfo(hidden_states.dtype).max - 1000
            hidden_states = hidden_states.clamp(min=-clamp_value, max=clamp_value)
        return hidden_states, probs


class DetrDecoderLayer(GradientCheckpointingLayer):
    """Self-attention over the queries, cross-attention to the encoder memory, feed-forward; each post-norm."""

    def __init__(self, config: DetrConfig):
        super().__init__()
        self.self_attn = DetrAttention(config, config.decoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.encoder_attn = DetrAttention(config, config.decoder_attention_heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.fc1 = nn.Linear(config.d_model, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, config.d_model)
        self.final_layer_norm = nn.LayerNorm(config.d_model)
        self.activation_fn = ACT2FN[config.activation_function]
        self.dropout = config.dropout
        self.activation_dropout = config.activation_dropout

    def forward(
        self,
        hidden_states,
        query_padding_mask=None,
        spatial_position_embeddings=None,
        object_queries_position_embeddings=None,
        encoder_hidden_states=None,
        encoder_padding_mask=None,
        output_attentions=False,
    ):
        residual = hidden_states
        hidden_states, self_probs = self.self_attn(
            hidden_states,
            object_queries_position_embeddings,
            key_padding_mask=query_padding_mask,
            output_attentions=output_attentions,
        )
        hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
        hidden_states = self.self_attn_layer_norm(residual + hidden_states)
        cross_probs = None
        if encoder_hidden_states is not None:
            residual = hidden_states
            hidden_states, cross_probs = self.encoder_attn(
                hidden_states,
                object_queries_position_embeddings,
                encoder_hidden_states,
                spatial_position_embeddings,
                key_padding_mask=encoder_padding_mask,
                output_attentions=output_attentions,
            )
            hidden_states = nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)
            hidden_states = self.encoder_attn_layer_norm(residual + hidden_states)
        hidden_states = self.final_layer_norm(hidden_states + feed_forward(self, hidden_states))
        return hidden_states, self_probs, cross_probs


class DetrEncoder(nn.Module):
    def __init__(self, config: DetrConfig):
        super().__init__()
        self.dropout = config.dropout
        self.layers = nn.ModuleList([DetrEncoderLayer(config) for _ in range(config.encoder_layers)])

    def forward(
        self,
        inputs_embeds,
        key_padding_mask,
        spatial_position_embeddings,
        output_attentions=False,
        output_hidden_states=False,
    ):
        hidden_states = nn.functional.dropout(inputs_embeds, p=self.dropout, training=self.training)
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, probs = layer(
                hidden_states, key_padding_mask, spatial_position_embeddings, output_attentions
            )
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_attentions += (probs,)
        return hidden_states, all_hidden, all_attentions


class DetrDecoder(nn.Module):
    """Decoder layers and the shared final layer norm (see the module docstring for `auxiliary_loss`)."""

    def __init__(self, config: DetrConfig):
        super().__init__()
        self.auxiliary_loss = config.auxiliary_loss
        self.layers = nn.ModuleList([DetrDecoderLayer(config) for _ in range(config.decoder_layers)])
        self.layernorm = nn.LayerNorm(config.d_model)

    def forward(
        self,
        queries,
        query_padding_mask,
        spatial_position_embeddings,
        object_queries_position_embeddings,
        encoder_hidden_states,
        encoder_padding_mask,
        output_attentions=False,
        output_hidden_states=False,
    ):
        hidden_states = queries
        all_hidden = (hidden_states,) if output_hidden_states else None
        self_attentions = () if output_attentions else None
        cross_attentions = () if output_attentions else None
        intermediate = () if self.auxiliary_loss else None
        for layer in self.layers:
            hidden_states, self_probs, cross_probs = layer(
                hidden_states,
                query_padding_mask,
                spatial_position_embeddings,
                object_queries_position_embeddings,
                encoder_hidden_states,
                encoder_padding_mask,
                output_attentions,
            )
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                self_attentions += (self_probs,)
                cross_attentions += (cross_probs,)
            if self.auxiliary_loss:
                hidden_states = self.layernorm(hidden_states)
                intermediate += (hidden_states,)
        hidden_states = self.layernorm(hidden_states)
        if output_hidden_states:  # Transformers reports the final, normalised state as the last one
            all_hidden = all_hidden[:-1] + (hidden_states,)
        intermediate = torch.stack(intermediate) if self.auxiliary_loss else None
        return hidden_states, all_hidden, self_attentions, cross_attentions, intermediate


class DetrMLPPredictionHead(nn.Module):
    """`num_layers` linear layers with ReLU between them (the box head: 3 layers, 4 outputs)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x) if index == len(self.layers) - 1 else nn.functional.relu(layer(x))
        return x


def _padding_from_keep_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Transformers' 1 = keep / 0 = padding mask as a key padding mask (True = padding)."""
    return None if mask is None else ~mask.to(torch.bool)


class DetrPreTrainedModel(TritonVisionPreTrainedModel):
    config_class = DetrConfig
    config: DetrConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DetrConvEncoder", "DetrEncoderLayer", "DetrDecoderLayer"]
    _keys_to_ignore_on_load_unexpected = [r"num_batches_tracked"]
    family_auto_map = {"AutoModel": "DetrModel", "AutoModelForObjectDetection": "DetrForObjectDetection"}

    @torch.no_grad()
    def _init_weights(self, module):
        """Normal(0, init_std) for linear, conv and embedding weights; identity frozen batch norm."""
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, DetrLearnedPositionEmbedding):
            init.uniform_(module.row_embeddings.weight)
            init.uniform_(module.column_embeddings.weight)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, DetrFrozenBatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)


class DetrModel(DetrPreTrainedModel):
    """Backbone, input projection, encoder and decoder; `last_hidden_state` is the decoder's `(B, Q, d_model)`."""

    auto_class = "AutoModel"

    def __init__(self, config: DetrConfig):
        super().__init__(config)
        self.backbone = DetrConvModel(config)
        self.position_embedding = build_position_embedding(config)
        self.query_position_embeddings = nn.Embedding(config.num_queries, config.d_model)
        self.input_projection = nn.Conv2d(self.backbone.intermediate_channel_sizes[-1], config.d_model, kernel_size=1)
        self.encoder = DetrEncoder(config)
        self.decoder = DetrDecoder(config)
        self.post_init()

    def freeze_backbone(self):
        for parameter in self.backbone.conv_encoder.model.parameters():
            parameter.requires_grad_(False)

    def unfreeze_backbone(self):
        for parameter in self.backbone.conv_encoder.model.parameters():
            parameter.requires_grad_(True)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DetrModelOutput | tuple:
        """`pixel_mask (B, H, W)`: 1 for real pixels, 0 for padding (all real if None)."""
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if pixel_values is None and inputs_embeds is None:
            raise ValueError("You have to specify either pixel_values or inputs_embeds")

        if inputs_embeds is None:
            if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.backbone_num_channels:
                raise ValueError(
                    f"pixel_values must be (batch, {self.config.backbone_num_channels}, height, width), "
                    f"got {tuple(pixel_values.shape)}"
                )
            batch_size, _, height, width = pixel_values.shape
            device = pixel_values.device
            if pixel_mask is None:
                pixel_mask = torch.ones((batch_size, height, width), device=device)
            elif tuple(pixel_mask.shape) != (batch_size, height, width):
                raise ValueError(f"pixel_mask must be {(batch_size, height, width)}, got {tuple(pixel_mask.shape)}")
            feature_map, mask = self.backbone(pixel_values, pixel_mask)[-1]
            flattened_features = self.input_projection(feature_map).flatten(2).transpose(1, 2)
            spatial_position_embeddings = (
                self.position_embedding(feature_map.shape, device, pixel_values.dtype, mask).flatten(2).transpose(1, 2)
            )
            flattened_mask = mask.flatten(1)
        else:
            batch_size, seq_len = inputs_embeds.shape[:2]
            device = inputs_embeds.device
            flattened_features = inputs_embeds
            side = int(seq_len**0.5)  # as Transformers: a square feature map is assumed
            shape = torch.Size([batch_size, self.config.d_model, side, side])
            spatial_position_embeddings = (
                self.position_embedding(shape, device, inputs_embeds.dtype).flatten(2).transpose(1, 2)
            )
            if pixel_mask is not None:
                mask = nn.functional.interpolate(pixel_mask[None].float(), size=(side, side)).to(torch.bool)[0]
                flattened_mask = mask.flatten(1)
            else:
                flattened_mask = torch.ones((batch_size, seq_len), device=device, dtype=torch.bool)
        encoder_padding_mask = ~flattened_mask.to(torch.bool)

        if encoder_outputs is None:
            encoder_last, encoder_hidden, encoder_attentions = self.encoder(
                flattened_features,
                encoder_padding_mask,
                spatial_position_embeddings,
                output_attentions,
                output_hidden_states,
            )
        else:
            encoder_last = encoder_outputs[0]
            encoder_hidden = getattr(encoder_outputs, "hidden_states", None)
            encoder_attentions = getattr(encoder_outputs, "attentions", None)

        object_queries_position_embeddings = self.query_position_embeddings.weight.unsqueeze(0).repeat(batch_size, 1, 1)
        queries = (
            decoder_inputs_embeds
            if decoder_inputs_embeds is not None
            else torch.zeros_like(object_queries_position_embeddings)
        )
        last_hidden_state, decoder_hidden, decoder_attentions, cross_attentions, intermediate = self.decoder(
            queries,
            _padding_from_keep_mask(decoder_attention_mask),
            spatial_position_embeddings,
            object_queries_position_embeddings,
            encoder_last,
            encoder_padding_mask,
            output_attentions,
            output_hidden_states,
        )
        output = DetrModelOutput(
            last_hidden_state=last_hidden_state,
            decoder_hidden_states=decoder_hidden,
            decoder_attentions=decoder_attentions,
            cross_attentions=cross_attentions,
            encoder_last_hidden_state=encoder_last,
            encoder_hidden_states=encoder_hidden,
            encoder_attentions=encoder_attentions,
            intermediate_hidden_states=intermediate,
        )
        return output if return_dict else output.to_tuple()


class DetrForObjectDetection(DetrPreTrainedModel):
    """DETR with the class head (`num_labels + 1`, the last is no-object) and the 3-layer sigmoid box head.

    `labels` is Transformers' list of dicts (`class_labels (n,)`, normalised cxcywh `boxes (n, 4)`) or the
    padded dict `{"class_labels": (B, T), "boxes": (B, T, 4), "num_targets": (B,)}` that needs no host sync.
    `matcher_backend` ("auto", "triton" or "scipy") is handed to `kernels.hungarian`.
    """

    auto_class = "AutoModelForObjectDetection"
    matcher_backend = "auto"

    def __init__(self, config: DetrConfig):
        super().__init__(config)
        self.model = DetrModel(config)
        self.class_labels_classifier = nn.Linear(config.d_model, config.num_labels + 1)
        self.bbox_predictor = DetrMLPPredictionHead(config.d_model, config.d_model, 4, num_layers=3)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs=None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels=None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> DetrObjectDetectionOutput | tuple:
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.model(
            pixel_values,
            pixel_mask=pixel_mask,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        sequence_output = outputs.last_hidden_state
        logits = self.class_labels_classifier(sequence_output)
        pred_boxes = self.bbox_predictor(sequence_output).sigmoid()

        loss, loss_dict, auxiliary_outputs = None, None, None
        if labels is not None:
            auxiliary_logits = auxiliary_boxes = None
            if self.config.auxiliary_loss:
                intermediate = outputs.intermediate_hidden_states[:-1]
                auxiliary_logits = self.class_labels_classifier(intermediate)
                auxiliary_boxes = self.bbox_predictor(intermediate).sigmoid()
                auxiliary_outputs = [
                    {"logits": layer_logits, "pred_boxes": layer_boxes}
                    for layer_logits, layer_boxes in zip(auxiliary_logits, auxiliary_boxes)
                ]
            class_labels, boxes, num_targets = targets_from_labels(labels, logits.device)
            loss, loss_dict = detr_loss(
                logits,
                pred_boxes,
                class_labels,
                boxes,
                num_targets,
                self.config,
                auxiliary_logits,
                auxiliary_boxes,
                backend=self.matcher_backend,
            )

        output = DetrObjectDetectionOutput(
            loss=loss,
            loss_dict=loss_dict,
            logits=logits,
            pred_boxes=pred_boxes,
            auxiliary_outputs=auxiliary_outputs,
            last_hidden_state=outputs.last_hidden_state,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return output if return_dict else output.to_tuple()
