"""The compact audio tower for the edge: log-mel in the graph, a MobileNetV3-style CNN, a linear
projection into the shared image/text space, L2-normalised output.

Sized for a Jetson Orin Nano and a Raspberry Pi 5 (about 1-5 M parameters at the default width,
a few tens of MFLOPs per 3 s window), with only ops TensorRT 10.3 supports: Conv, BatchNorm
(folded at export), ReLU/HardSwish, global pooling, MatMul.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from biovita.frontend import ClapFrontendSpec, FrontendSpec, frontend_spec
from trainer.models.frontend import frontend_module


@dataclass
class CompactConfig:
    """Architecture of the compact tower; saved with every checkpoint (open_clip style)."""

    embed_dim: int = 512
    stem_channels: int = 32
    # (expansion, out_channels, stride) per inverted-residual block
    blocks: list[tuple[int, int, int]] = field(
        default_factory=lambda: [
            (2, 32, 2),
            (4, 48, 2),
            (4, 48, 1),
            (4, 96, 2),
            (4, 96, 1),
            (6, 160, 2),
            (6, 160, 1),
        ]
    )
    head_channels: int = 640
    dropout: float = 0.1
    frontend: FrontendSpec | ClapFrontendSpec = field(default_factory=FrontendSpec)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frontend"] = self.frontend.model_dump()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CompactConfig:
        d = dict(d)
        d["frontend"] = frontend_spec(d.get("frontend"))
        d["blocks"] = [tuple(b) for b in d.get("blocks", cls().blocks)]
        return cls(**d)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(8, channels // 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, expansion: int, c_out: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.residual = stride == 1 and c_in == c_out
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Hardswish(inplace=True),
            SqueezeExcite(hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class CompactAudioTower(nn.Module):
    """Raw PCM ``[B, samples]`` at ``frontend.sample_rate`` -> unit-norm ``[B, embed_dim]``."""

    def __init__(self, config: CompactConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or CompactConfig()
        self.logmel = frontend_module(config.frontend)
        # Per-recording gain differs wildly in the field; a BatchNorm over the log-mel learns the
        # global level while the per-example mean removal below makes the tower gain-invariant.
        self.input_norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = [
            nn.Conv2d(1, config.stem_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(config.stem_channels),
            nn.Hardswish(inplace=True),
        ]
        c = config.stem_channels
        for expansion, c_out, stride in config.blocks:
            layers.append(InvertedResidual(c, expansion, c_out, stride))
            c = c_out
        layers += [
            nn.Conv2d(c, config.head_channels, 1, bias=False),
            nn.BatchNorm2d(config.head_channels),
            nn.Hardswish(inplace=True),
        ]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.project = nn.Linear(2 * config.head_channels, config.embed_dim)

    def embed_unnormalised(self, pcm: torch.Tensor) -> torch.Tensor:
        mel = self.logmel(pcm)
        mel = mel - mel.mean(dim=(1, 2), keepdim=True)
        x = self.features(self.input_norm(mel.unsqueeze(1)))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.project(self.dropout(pooled))

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.embed_unnormalised(pcm), dim=-1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
