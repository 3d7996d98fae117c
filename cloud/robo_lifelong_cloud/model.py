"""A compact class-segmentation network for a robot CPU, trained from scratch.

Fast-SCNN layout: a shallow "learning to downsample" path to stride 8 (full-detail skip), a deep
path of MobileNetV2 inverted residuals to stride 32 with LR-ASPP's global-context gate, fused at
stride 8 where a 1x1 classifier emits the logits. The logits stay at stride 8 (``OUTPUT_STRIDE``);
the exported graph upsamples them to the frame's size and takes the argmax there (``export.py``).
``embedding`` is the image-level input of unseen-task recognition: the global averages of the deep
(stride-32) features and of the shallow stride-8 ones, side by side. The deep features alone are
what segmentation makes invariant: once an update learned night, dusk and snow frames sat among
the known ones there (AUROC 0.93 / 0.96 after the demo's second round, 0.90 after its third);
the shallow features still see light, colour and texture, and with them those tasks separate
(1.0 / 1.0, and 1.0) while the known frames stay as quiet.

Logit row ``k`` is label-map id ``k``; ``grow_classes`` adds rows for new ids and keeps the old
ones, so an incremental update never changes what an old id means.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from robo_lifelong.errors import ConfigError

OUTPUT_STRIDE = 8


@dataclass(frozen=True)
class SegNetConfig:
    num_classes: int
    in_channels: int = 3  # 3 = RGB, 4 = RGB + depth
    width: float = 1.0  # channel multiplier

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f'num_classes must be >= 2, got {self.num_classes!r}')
        if self.in_channels not in (3, 4):
            raise ConfigError(
                f'in_channels must be 3 (RGB) or 4 (RGB-D), got {self.in_channels!r}'
            )
        if not 0.25 <= self.width <= 4.0:
            raise ConfigError(f'width must be in [0.25, 4], got {self.width!r}')

    def channels(self, base: int) -> int:
        return max(8, int(round(base * self.width / 8)) * 8)

    @property
    def deep_dim(self) -> int:
        return self.channels(128)

    @property
    def shallow_dim(self) -> int:
        return self.channels(48)

    @property
    def embedding_dim(self) -> int:
        return self.deep_dim + self.shallow_dim


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _DSConv(nn.Sequential):
    """Depthwise 3x3 then pointwise 1x1."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(_conv_bn(cin, cin, 3, stride, groups=cin), _conv_bn(cin, cout, 1))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            _conv_bn(cin, mid, 1),
            _conv_bn(mid, mid, 3, stride, groups=mid),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_res else y


class SegNet(nn.Module):
    """``forward(image (N, C_in, H, W))`` -> ``(logits (N, K, ceil(H/8), ceil(W/8)),
    embedding (N, D))``."""

    def __init__(self, config: SegNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.downsample = nn.Sequential(
            _conv_bn(config.in_channels, c(16), 3, 2),
            _DSConv(c(16), c(32), 2),
            _DSConv(c(32), config.shallow_dim, 2),
        )
        self.deep = nn.Sequential(
            _InvertedResidual(config.shallow_dim, c(64), 2),
            _InvertedResidual(c(64), c(64), 1),
            _InvertedResidual(c(64), c(96), 2),
            _InvertedResidual(c(96), c(96), 1),
            _conv_bn(c(96), config.deep_dim, 1),
        )
        # LR-ASPP: image-level context as a channel gate on the deep features
        self.context = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(config.deep_dim, c(64), 1), nn.Sigmoid()
        )
        self.deep_proj = _conv_bn(config.deep_dim, c(64), 1)
        self.skip_proj = nn.Sequential(
            nn.Conv2d(config.shallow_dim, c(64), 1, bias=False), nn.BatchNorm2d(c(64))
        )
        self.fuse = _DSConv(c(64), c(64))
        self.classifier = nn.Conv2d(c(64), config.num_classes, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.downsample(image)
        deep = self.deep(skip)
        embedding = torch.cat([deep.mean(dim=(2, 3)), skip.mean(dim=(2, 3))], dim=1)
        gated = self.deep_proj(deep) * self.context(deep)
        up = F.interpolate(gated, size=skip.shape[2:], mode='bilinear', align_corners=False)
        fused = self.fuse(F.relu(up + self.skip_proj(skip)))
        return self.classifier(fused), embedding


def build_model(config: SegNetConfig, seed: int | None = None) -> SegNet:
    if seed is not None:
        torch.manual_seed(seed)
    return SegNet(config)


def grow_classes(model: SegNet, num_classes: int) -> SegNet:
    """A copy of ``model`` whose classifier has ``num_classes`` rows (>= the current count).

    Rows of existing ids and every other weight are copied exactly. New rows start with zero
    weights and a bias below every old one, so at first they seldom win the argmax and the grown
    model segments like the old one until training teaches it the new classes.
    """
    old = model.config.num_classes
    if num_classes < old:
        raise ConfigError(f'cannot shrink the classifier from {old} to {num_classes} classes')
    grown = SegNet(replace(model.config, num_classes=num_classes))
    state = model.state_dict()
    weight, bias = state.pop('classifier.weight'), state.pop('classifier.bias')
    missing, unexpected = grown.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {'classifier.weight', 'classifier.bias'}:
        raise ConfigError(f'grow_classes: state mismatch (missing {missing}, extra {unexpected})')
    with torch.no_grad():
        grown.classifier.weight.zero_()
        grown.classifier.weight[:old] = weight
        grown.classifier.bias.fill_(float(bias.min()) - 4.0)
        grown.classifier.bias[:old] = bias
    return grown


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_bytes(model: SegNet) -> tuple[bytes, dict]:
    """``(safetensors bytes of the state dict, architecture dict for model_from_weights)``."""
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    return save_tensors(state), asdict(model.config)


def model_from_weights(data: bytes, architecture: dict) -> SegNet:
    """The model ``weights_bytes`` saved (safetensors: no pickle involved)."""
    try:
        model = SegNet(SegNetConfig(**architecture))
        model.load_state_dict(load_tensors(data))
    except (TypeError, RuntimeError) as e:
        raise ConfigError(f'weights do not match architecture {architecture!r}: {e}') from e
    return model.eval()
