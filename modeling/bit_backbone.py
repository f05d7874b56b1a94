"""The BiT ResNetV2 (Kolesnikov et al., 2020) that ViT-hybrid runs before its Transformer.

Numerically the network of Transformers 4.x's `BitBackbone` (which ViT-hybrid loaded as its backbone) and
of timm's `ResNetV2`: weight-standardised convolutions, GroupNorm(32) + ReLU, TensorFlow-style "SAME"
padding computed from the input size when the checkpoint was trained with it. Module attribute names are the
checkpoint tensor names (`bit.embedder.convolution`, `bit.encoder.stages.N.layers.M.conv1`, ...).

The backbone settings travel in the model config as a plain dict (the Hub's `backbone_config`, a
Transformers 4.x `BitConfig` dump); `BitSettings` reads it, so no Transformers config class is needed.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN

# Transformers 4.x `BitConfig` defaults: what a `backbone_config` dict means where it leaves a key out.
BIT_DEFAULTS = {
    "model_type": "bit",
    "num_channels": 3,
    "embedding_size": 64,
    "hidden_sizes": [256, 512, 1024, 2048],
    "depths": [3, 4, 6, 3],
    "layer_type": "preactivation",
    "hidden_act": "relu",
    "global_padding": None,
    "num_groups": 32,
    "drop_path_rate": 0.0,
    "embedding_dynamic_padding": False,
    "output_stride": 32,
    "width_factor": 1,
    "out_features": None,
    "out_indices": None,
}
LAYER_TYPES = ("preactivation", "bottleneck")
PADDINGS = (None, "SAME", "VALID")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor` (never below 90% of `value`), as BiT sizes its layers."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass
class BitSettings:
    """The backbone hyper-parameters, read from a (possibly partial) `backbone_config` dict."""

    num_channels: int
    embedding_size: int
    hidden_sizes: list[int]
    depths: list[int]
    layer_type: str
    hidden_act: str
    global_padding: str | None
    num_groups: int
    drop_path_rate: float
    embedding_dynamic_padding: bool
    output_stride: int
    width_factor: int
    out_indices: list[int]

    @property
    def stage_names(self) -> list[str]:
        return ["stem"] + [f"stage{index}" for index in range(1, len(self.depths) + 1)]

    @classmethod
    def from_dict(cls, config: dict) -> "BitSettings":
        values = {**BIT_DEFAULTS, **{k: v for k, v in config.items() if v is not None or k == "global_padding"}}
        if values["model_type"] != "bit":
            raise ValueError(f"only a BiT backbone is supported, got backbone model_type {values['model_type']!r}")
        padding = values["global_padding"].upper() if isinstance(values["global_padding"], str) else None
        if padding not in PADDINGS:
            raise ValueError(f"global_padding must be one of {PADDINGS}, got {values['global_padding']!r}")
        if values["layer_type"] not in LAYER_TYPES:
            raise ValueError(f"layer_type must be one of {LAYER_TYPES}, got {values['layer_type']!r}")
        depths = list(values["depths"])
        stage_names = ["stem"] + [f"stage{index}" for index in range(1, len(depths) + 1)]
        if values["out_features"] is not None:
            unknown = [name for name in values["out_features"] if name not in stage_names]
            if unknown:
                raise ValueError(f"out_features {unknown} are not stages of this backbone ({stage_names})")
            out_indices = [stage_names.index(name) for name in values["out_features"]]
        elif values["out_indices"] is not None:
            out_indices = [index % len(stage_names) for index in values["out_indices"]]
        else:
            out_indices = [len(stage_names) - 1]
        return cls(
            num_channels=values["num_channels"],
            embedding_size=values["embedding_size"],
            hidden_sizes=list(values["hidden_sizes"]),
            depths=depths,
            layer_type=values["layer_type"],
            hidden_act=values["hidden_act"],
            global_padding=padding,
            num_groups=values["num_groups"],
            drop_path_rate=float(values["drop_path_rate"]),
            embedding_dynamic_padding=bool(values["embedding_dynamic_padding"]),
            output_stride=values["output_stride"],
            width_factor=values["width_factor"],
            out_indices=out_indices,
        )

    def to_dict(self) -> dict:
        """The full dict as Transformers 4.x writes a `BitConfig` (`global_padding` upper-case, stage names)."""
        stage_names = self.stage_names
        return {
            "model_type": "bit",
            "num_channels": self.num_channels,
            "embedding_size": self.embedding_size,
            "hidden_sizes": list(self.hidden_sizes),
            "depths": list(self.depths),
            "layer_type": self.layer_type,
            "hidden_act": self.hidden_act,
            "global_padding": self.global_padding,
            "num_groups": self.num_groups,
            "drop_path_rate": self.drop_path_rate,
            "embedding_dynamic_padding": self.embedding_dynamic_padding,
            "output_stride": self.output_stride,
            "width_factor": self.width_factor,
            "stage_names": stage_names,
            "out_features": [stage_names[index] for index in self.out_indices],
            "out_indices": list(self.out_indices),
        }

    def stage_channels(self) -> list[int]:
        """Output channels of the stem and of each stage."""
        stages = [make_divisible(size * self.width_factor) for size in self.hidden_sizes[: len(self.depths)]]
        return [self.embedding_size, *stages]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total padding TensorFlow's "SAME" adds along one axis of length `size`."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


class DynamicPad2d(nn.Module):
    """Pad to TensorFlow "SAME" from the input's own size (extra pixel on the bottom/right), as timm does."""

    def __init__(self, kernel_size: int, stride: int, dilation: int = 1, value: float = 0.0):
        super().__init__()
        self.kernel_size, self.stride, self.dilation, self.value = kernel_size, stride, dilation, value

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        height, width = hidden_states.shape[-2:]
        pad_h = same_padding(height, self.kernel_size, self.stride, self.dilation)
        pad_w = same_padding(width, self.kernel_size, self.stride, self.dilation)
        if pad_h == 0 and pad_w == 0:
            return hidden_states
        padding = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]
        return nn.functional.pad(hidden_states, padding, value=self.value)


class WeightStandardizedConv2d(nn.Conv2d):
    """A convolution whose kernel is standardised per output channel (zero mean, unit variance) at every call.

    "SAME" padding is static when the stride is 1 and the kernel odd, and computed per input otherwise.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1, padding=None, eps=1e-8):
        dynamic = False
        if padding == "SAME" and (stride > 1 or (dilation * (kernel_size - 1)) % 2):
            static_padding, dynamic = 0, True
        elif padding == "VALID":
            static_padding = 0
        else:
            static_padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=static_padding,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
        self.pad = DynamicPad2d(kernel_size, stride, dilation) if dynamic else None
        self.eps = eps

    def standardized_weight(self) -> torch.Tensor:
        variance, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (self.weight - mean) * torch.rsqrt(variance + self.eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            hidden_states = self.pad(hidden_states)
        return nn.functional.conv2d(
            hidden_states, self.standardized_weight(), None, self.stride, self.padding, self.dilation, self.groups
        )


class BitGroupNormActivation(nn.GroupNorm):
    """GroupNorm followed by the activation (or nothing, before a residual sum)."""

    def __init__(self, settings: BitSettings, num_channels: int, apply_activation: bool = True):
        super().__init__(settings.num_groups, num_channels, eps=1e-5)
        self.activation = ACT2FN[settings.hidden_act] if apply_activation else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(super().forward(hidden_states))


class BitMaxPool2d(nn.Module):
    """3x3 stride-2 max pool of the stem, padded "SAME" from the input size when asked (zeros, as 4.x)."""

    def __init__(self, dynamic_padding: bool):
        super().__init__()
        self.pad = DynamicPad2d(3, 2) if dynamic_padding else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(self.pad(hidden_states), kernel_size=3, stride=2)


class BitEmbeddings(nn.Module):
    """The stem: 7x7 stride-2 convolution, (GroupNorm + ReLU for the non-pre-activation net), max pool."""

    def __init__(self, settings: BitSettings):
        super().__init__()
        self.num_channels = settings.num_channels
        self.convolution = WeightStandardizedConv2d(
            settings.num_channels, settings.embedding_size, 7, stride=2, padding=settings.global_padding
        )
        self.pooler = BitMaxPool2d(settings.embedding_dynamic_padding)
        same = settings.global_padding == "SAME"
        self.pad = nn.Identity() if same else nn.ConstantPad2d(padding=(1, 1, 1, 1), value=0.0)
        bottleneck = settings.layer_type == "bottleneck"
        self.norm = BitGroupNormActivation(settings, settings.embedding_size) if bottleneck else nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {self.num_channels}, height, width), got {tuple(pixel_values.shape)}"
            )
        return self.pooler(self.norm(self.pad(self.convolution(pixel_values))))


def drop_path(hidden_states: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a sample's residual branch with probability `rate` while training."""
    if rate == 0.0 or not training:
        return hidden_states
    keep = 1.0 - rate
    mask = hidden_states.new_empty((hidden_states.shape[0],) + (1,) * (hidden_states.dim() - 1)).bernoulli_(keep)
    return hidden_states * mask / keep


class BitDownsampleConv(nn.Module):
    """1x1 projection of the shortcut where a stage changes width or resolution (normed unless pre-activation)."""

    def __init__(self, settings: BitSettings, in_channels: int, out_channels: int, stride: int, preact: bool):
        super().__init__()
        self.conv = WeightStandardizedConv2d(
            in_channels, out_channels, 1, stride=stride, padding=settings.global_padding
        )
        self.norm = nn.Identity() if preact else BitGroupNormActivation(settings, out_channels, apply_activation=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(hidden_states))


class BitBottleneckLayer(nn.Module):
    """ResNet v1.5 bottleneck (norm after each conv, ReLU after the sum): the layer of ViT-hybrid's backbone."""

    def __init__(self, settings, in_channels, out_channels, stride, dilation, drop_path_rate, is_first_layer):
        super().__init__()
        mid_channels = make_divisible(out_channels * 0.25)
        padding = settings.global_padding
        self.downsample = (
            BitDownsampleConv(settings, in_channels, out_channels, stride, preact=False) if is_first_layer else None
        )
        self.conv1 = WeightStandardizedConv2d(in_channels, mid_channels, 1, padding=padding)
        self.norm1 = BitGroupNormActivation(settings, mid_channels)
        self.conv2 = WeightStandardizedConv2d(
            mid_channels, mid_channels, 3, stride=stride, dilation=dilation, padding=padding
        )
        self.norm2 = BitGroupNormActivation(settings, mid_channels)
        self.conv3 = WeightStandardizedConv2d(mid_channels, out_channels, 1, padding=padding)
        self.norm3 = BitGroupNormActivation(settings, out_channels, apply_activation=False)
        self.drop_path_rate = drop_path_rate
        self.activation = ACT2FN[settings.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shortcut = hidden_states if self.downsample is None else self.downsample(hidden_states)
        hidden_states = self.norm1(self.conv1(hidden_states))
        hidden_states = self.norm2(self.conv2(hidden_states))
        hidden_states = self.norm3(self.conv3(hidden_states))
        return self.activation(drop_path(hidden_states, self.drop_path_rate, self.training) + shortcut)


class BitPreActivationBottleneckLayer(nn.Module):
    """ResNet v2 pre-activation bottleneck (norm + ReLU before each conv), the layer of the BiT classifiers."""

    def __init__(self, settings, in_channels, out_channels, stride, dilation, drop_path_rate, is_first_layer):
        super().__init__()
        mid_channels = make_divisible(out_channels * 0.25)
        padding = settings.global_padding
        self.downsample = (
            BitDownsampleConv(settings, in_channels, out_channels, stride, preact=True) if is_first_layer else None
        )
        self.norm1 = BitGroupNormActivation(settings, in_channels)
        self.conv1 = WeightStandardizedConv2d(in_channels, mid_channels, 1, padding=padding)
        self.norm2 = BitGroupNormActivation(settings, mid_channels)
        self.conv2 = WeightStandardizedConv2d(mid_channels, mid_channels, 3, stride=stride, padding=padding)
        self.norm3 = BitGroupNormActivation(settings, mid_channels)
        self.conv3 = WeightStandardizedConv2d(mid_channels, out_channels, 1, padding=padding)
        self.drop_path_rate = drop_path_rate

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        preactivated = self.norm1(hidden_states)
        shortcut = hidden_states if self.downsample is None else self.downsample(preactivated)
        hidden_states = self.conv1(preactivated)
        hidden_states = self.conv2(self.norm2(hidden_states))
        hidden_states = self.conv3(self.norm3(hidden_states))
        return drop_path(hidden_states, self.drop_path_rate, self.training) + shortcut


class BitStage(nn.Module):
    def __init__(self, settings, in_channels, out_channels, stride, dilation, depth, drop_path_rates):
        super().__init__()
        layer_class = BitBottleneckLayer if settings.layer_type == "bottleneck" else BitPreActivationBottleneckLayer
        first_dilation = 1 if dilation in (1, 2) else 2
        self.layers = nn.Sequential()
        for index in range(depth):
            self.layers.add_module(
                str(index),
                layer_class(
                    settings,
                    in_channels if index == 0 else out_channels,
                    out_channels,
                    stride=stride if index == 0 else 1,
                    dilation=first_dilation if index == 0 else dilation,
                    drop_path_rate=drop_path_rates[index],
                    is_first_layer=index == 0,
                ),
            )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_states)


class BitEncoder(nn.Module):
    """The stages: the first keeps the stem's stride 4, each later one halves the resolution (until `output_stride`)."""

    def __init__(self, settings: BitSettings):
        super().__init__()
        channels = settings.stage_channels()
        total = sum(settings.depths)
        rates = [settings.drop_path_rate * index / max(total - 1, 1) for index in range(total)]
        self.stages = nn.ModuleList()
        current_stride, dilation, start = 4, 1, 0
        for index, depth in enumerate(settings.depths):
            stride = 1 if index == 0 else 2
            if current_stride >= settings.output_stride:
                dilation, stride = dilation * stride, 1
            self.stages.append(
                BitStage(settings, channels[index], channels[index + 1], stride, dilation, depth, rates[start:])
            )
            current_stride *= stride
            start += depth

    def forward(self, hidden_states: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, in order."""
        outputs = []
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            outputs.append(hidden_states)
        return outputs


class BitModel(nn.Module):
    """Stem and stages; no classifier.

    The pre-activation net's final `norm` is kept for its weights but, as in Transformers' `BitBackbone`,
    not applied to the feature maps a backbone returns.
    """

    def __init__(self, settings: BitSettings):
        super().__init__()
        self.embedder = BitEmbeddings(settings)
        self.encoder = BitEncoder(settings)
        preact = settings.layer_type == "preactivation"
        self.norm = BitGroupNormActivation(settings, settings.stage_channels()[-1]) if preact else nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """`[stem, stage1, ..., stageN]` feature maps."""
        stem = self.embedder(pixel_values)
        return [stem, *self.encoder(stem)]


class BitBackbone(nn.Module):
    """Feature maps of the configured stages (`out_features`), as Transformers' `BitBackbone` returns them."""

    def __init__(self, settings: BitSettings):
        super().__init__()
        self.settings = settings
        self.bit = BitModel(settings)
        self.channels = [settings.stage_channels()[index] for index in settings.out_indices]

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feature_maps = self.bit(pixel_values)
        return tuple(feature_maps[index] for index in self.settings.out_indices)
