"""The student prior network: parsing logits and landmark heatmaps from a (degraded or
first-pass restored) 128x128 face, trained on the dlib teacher's labels.

A small encoder-decoder (stride 2 -> 4 -> 8 -> 16, back to 1/2 resolution with skips). The
heads work at half resolution (64x64 for a 128 input). Parsing logits are upsampled
bilinearly. Each landmark has a logit map whose spatial softmax is a probability map; the
landmark is its expectation (soft-argmax, integral regression), and the output heatmap is
the teacher's format drawn at that point (a Gaussian of peak 1, std `heatmap_sigma`), so
MFPSNet sees the same kind of heatmap from the teacher and the student. The whole network,
coordinates and heatmaps included, is one differentiable, exportable graph.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from frsengine.priors.landmarks import NUM_LANDMARKS
from frsengine.priors.rasterize import NUM_CLASSES, heatmaps


@dataclass(frozen=True)
class StudentConfig:
    widths: tuple[int, ...] = (24, 40, 80, 128)   # channels at 1/2, 1/4, 1/8, 1/16
    classes: int = NUM_CLASSES
    landmarks: int = NUM_LANDMARKS
    heatmap_sigma: float = 2.0     # std (pixels) of the output heatmaps' Gaussians
    size: int = 128

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "StudentConfig":
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        return cls(**d)


class StudentOutput(NamedTuple):
    parsing: torch.Tensor    # (B, classes, H, W) logits
    heatmaps: torch.Tensor   # (B, landmarks, H, W), Gaussians of peak 1 at `landmarks`
    landmarks: torch.Tensor  # (B, landmarks, 2) x, y in input pixels (pixel centres)


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.body(x))


class StudentPriorNet(nn.Module):
    def __init__(self, config: StudentConfig = StudentConfig()):
        super().__init__()
        self.config = config
        w1, w2, w3, w4 = config.widths
        self.stem = nn.Sequential(_cbr(3, w1 // 2, 2), _cbr(w1 // 2, w1))          # 1/2
        self.down2 = nn.Sequential(_cbr(w1, w2, 2), _Res(w2))                       # 1/4
        self.down3 = nn.Sequential(_cbr(w2, w3, 2), _Res(w3), _Res(w3))             # 1/8
        self.down4 = nn.Sequential(_cbr(w3, w4, 2), _Res(w4))                       # 1/16
        self.up3 = _cbr(w4 + w3, w3)
        self.up2 = _cbr(w3 + w2, w2)
        self.up1 = _cbr(w2 + w1, w1)
        self.head = nn.Conv2d(w1, config.classes + config.landmarks, 1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward_half(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parsing logits and landmark logit maps at half the input resolution."""
        s1 = self.stem(x * 2 - 1)
        s2 = self.down2(s1)
        s3 = self.down3(s2)
        s4 = self.down4(s3)
        y = self.up3(torch.cat([self._up(s4, s3), s3], 1))
        y = self.up2(torch.cat([self._up(y, s2), s2], 1))
        y = self.up1(torch.cat([self._up(y, s1), s1], 1))
        out = self.head(y)
        return out[:, : self.config.classes], out[:, self.config.classes:]

    @staticmethod
    def soft_argmax(logits_half: torch.Tensor, full: tuple[int, int]) -> torch.Tensor:
        """(B, N, h, w) half-resolution landmark logits -> (B, N, 2) expected points (under the
        spatial softmax) in full-resolution pixels."""
        b, n, h, w = logits_half.shape
        prob = torch.softmax(logits_half.reshape(b, n, h * w), -1).reshape(b, n, h, w)
        xs = (torch.arange(w, dtype=prob.dtype, device=prob.device) + 0.5) * (full[1] / w) - 0.5
        ys = (torch.arange(h, dtype=prob.dtype, device=prob.device) + 0.5) * (full[0] / h) - 0.5
        return torch.stack([(prob.sum(-2) * xs).sum(-1), (prob.sum(-1) * ys).sum(-1)], -1)

    def forward(self, x: torch.Tensor) -> StudentOutput:
        """(B, 3, H, W) RGB in [0, 1] (H, W divisible by 16) -> StudentOutput."""
        parse_half, logits_half = self.forward_half(x)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        parsing = F.interpolate(parse_half, size=size, mode="bilinear", align_corners=False)
        points = self.soft_argmax(logits_half, size)
        return StudentOutput(parsing, heatmaps(points, size, self.config.heatmap_sigma, missing=False), points)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
