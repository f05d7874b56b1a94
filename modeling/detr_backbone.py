"""DETR's convolutional backbone: a timm-layout ResNet with frozen batch norm, written without timm.

The module names are timm's (`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.downsample.0/1`, ...), which is the
layout of the Hub's facebook/detr-resnet-50 checkpoint under `model.backbone.conv_encoder.model.`. Batch norm
statistics and affine parameters are buffers (frozen, as in DETR); the stem and the first stage are frozen
too (`requires_grad=False`), as DETR and Transformers train it. Dilation (DC5) follows timm's `output_stride`
rule: once the network stride reaches `output_stride`, later stages keep their resolution and dilate instead.
"""

import torch
from torch import nn

from .configuration_detr import RESNET_DEPTHS, DetrConfig

STAGE_WIDTHS = (64, 128, 256, 512)


class DetrFrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters: `x * scale + shift`, eps 1e-5 (as Transformers)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + 1e-5).rsqrt()
        shift = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + shift


def _conv(in_channels, out_channels, kernel_size, stride=1, dilation=1) -> nn.Conv2d:
    padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, bias=False)


class DetrBasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convolutions and a shortcut."""

    expansion = 1

    def __init__(self, in_channels, planes, stride, downsample, dilation, first_dilation):
        super().__init__()
        self.conv1 = _conv(in_channels, planes, 3, stride, first_dilation)
        self.bn1 = DetrFrozenBatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, 1, dilation)
        self.bn2 = DetrFrozenBatchNorm2d(planes)
        self.downsample = downsample
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(x)) + shortcut)


class DetrBottleneck(nn.Module):
    """ResNet-50/101 block (v1.5: the stride sits on the 3x3 convolution): 1x1, 3x3, 1x1 and a shortcut."""

    expansion = 4

    def __init__(self, in_channels, planes, stride, downsample, dilation, first_dilation):
        super().__init__()
        self.conv1 = _conv(in_channels, planes, 1)
        self.bn1 = DetrFrozenBatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride, first_dilation)
        self.bn2 = DetrFrozenBatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = DetrFrozenBatchNorm2d(planes * 4)
        self.downsample = downsample
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.act(self.bn3(self.conv3(x)) + shortcut)


class DetrResNet(nn.Module):
    """The ResNet trunk (no pooling head): returns the feature maps of the four stages."""

    def __init__(self, block_type: str, depths: tuple[int, ...], num_channels: int = 3, output_stride: int = 32):
        super().__init__()
        block_class = DetrBottleneck if block_type == "bottleneck" else DetrBasicBlock
        self.conv1 = nn.Conv2d(num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = DetrFrozenBatchNorm2d(64)
        self.act1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels, net_stride, dilation, prev_dilation = 64, 4, 1, 1
        self.channels = []
        for stage_index, (planes, num_blocks) in enumerate(zip(STAGE_WIDTHS, depths)):
            stride = 1 if stage_index == 0 else 2
            if net_stride >= output_stride:
                dilation *= stride
                stride = 1
            else:
                net_stride *= stride
            out_channels = planes * block_class.expansion
            downsample = None
            if stride != 1 or in_channels != out_channels:
                downsample = nn.Sequential(
                    _conv(in_channels, out_channels, 1, stride), DetrFrozenBatchNorm2d(out_channels)
                )
            blocks = []
            for block_index in range(num_blocks):
                blocks.append(
                    block_class(
                        in_channels,
                        planes,
                        stride if block_index == 0 else 1,
                        downsample if block_index == 0 else None,
                        dilation,
                        prev_dilation,
                    )
                )
                prev_dilation = dilation
                in_channels = out_channels
            self.add_module(f"layer{stage_index + 1}", nn.Sequential(*blocks))
            self.channels.append(out_channels)

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(pixel_values))))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


class DetrConvEncoder(nn.Module):
    """ResNet features plus the pixel mask downsampled (nearest) to each feature map; True = real pixel."""

    def __init__(self, config: DetrConfig):
        super().__init__()
        block_type, depths = RESNET_DEPTHS[config.backbone_name]
        self.model = DetrResNet(block_type, depths, config.backbone_num_channels, config.output_stride)
        self.intermediate_channel_sizes = list(self.model.channels)
        # DETR trains layer2-4 only; the stem and layer1 stay as pretrained.
        for name, parameter in self.model.named_parameters():
            if not name.startswith(("layer2", "layer3", "layer4")):
                parameter.requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for feature_map in self.model(pixel_values):
            mask = nn.functional.interpolate(pixel_mask[None].float(), size=feature_map.shape[-2:]).to(torch.bool)[0]
            out.append((feature_map, mask))
        return out


class DetrConvModel(nn.Module):
    """Holds the encoder under the name `conv_encoder`, as the Hub checkpoints do (`backbone.conv_encoder.model`)."""

    def __init__(self, config: DetrConfig):
        super().__init__()
        self.conv_encoder = DetrConvEncoder(config)

    @property
    def intermediate_channel_sizes(self) -> list[int]:
        return self.conv_encoder.intermediate_channel_sizes

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor):
        return self.conv_encoder(pixel_values, pixel_mask)
