"""Residual dense block (ESRGAN/BasicSR), the backbone of FRSNet and MFPSNet."""
from __future__ import annotations

import torch
import torch.nn as nn


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs with LeakyReLU(0.2); output = 0.2 * conv5 + x."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(num_feat + i * num_grow_ch, num_grow_ch if i < 4 else num_feat, 3, 1, 1)
            for i in range(5))
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(self.lrelu(conv(torch.cat(feats, 1))))
        return self.convs[-1](torch.cat(feats, 1)) * 0.2 + x
