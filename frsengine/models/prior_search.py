"""The authors' own search model: a fixed (derived) upsampler and one searched prior module.

The authors did not search MFPSNet whole: their search script trains FRSNet with a fixed upsampling
path plus one "AutoPrior" grid over the parsing prior (6 layers, filter multiplier 8, block
multiplier 3, 3 steps; 17.6 M parameters, 108 architecture parameters, 70.8 GFLOPs forward per 128x128
image). This module rebuilds that configuration from our parts, so search-step figures can be put
beside theirs: the upsampler is the derived path of an FRSNet genotype, the prior enters as
conv(concat(image, prior)) -> prior grid -> conv to ``prior_feat_channels``, and a plain two-conv
fusion (no fusion search: all 108 arch parameters are the prior grid's) brings concat(upsampler
output, prior feature) back to the upsampler's width before the re-distill. With
``configs/genotypes/frsnet-seed0.json`` as the upsampler it has 17.84 M parameters and 71.8 GFLOPs (`frsengine genotype stats` counting).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from frsengine.models.config import MFPSNetConfig, PriorConfig
from frsengine.models.frsnet import (ArchParamsMixin, FRSNetTrunk, derived_space_config,
                                     replace_for_genotype)
from frsengine.nas.genotype import Genotype, GenotypeError, validate_genotype
from frsengine.nas.grid import GridPathNet, GridSearchSpace
from frsengine.nas.space import SpaceConfig


def authors_search_config(prior: PriorConfig = PriorConfig("parsing", 19)) -> MFPSNetConfig:
    """Sizes of the authors' search model (one prior, one pass, prior grid F=8, L=6, B=3)."""
    return MFPSNetConfig(priors=(prior,), passes=1, prior_in_channels=8, prior_feat_channels=8,
                         prior=SpaceConfig("prior", 8, 8, layers=6),
                         fusion=SpaceConfig("fusion", 24 + 8, 8, layers=1), fusion_hidden=48)


class PriorSearchNet(ArchParamsMixin, FRSNetTrunk):
    """FRSNet with a fixed upsampling path and one searched prior module (the authors' search model)."""

    network_name = "prior_search"

    def __init__(self, upsampler: Genotype, cfg: MFPSNetConfig | None = None):
        validate_genotype(upsampler)
        if upsampler.network != "frsnet":
            raise GenotypeError(f"the fixed upsampler must come from an frsnet genotype, got {upsampler.network!r}")
        cfg = cfg or authors_search_config()
        if len(cfg.priors) != 1:
            raise ValueError(f"the prior search model takes exactly one prior, got {len(cfg.priors)}")
        sp = upsampler.spaces["upsample"]
        cfg = replace_for_genotype(cfg, upsample=derived_space_config(cfg.upsample, sp, "upsample"))
        super().__init__(cfg, lambda name, c: GridPathNet(c, sp.path, sp.cell))
        self.prior = cfg.priors[0]
        if self.prior.mode != "image":
            raise ValueError("the prior search model takes an image-like prior (mode 'image')")
        self.prior_input = nn.Conv2d(cfg.in_channels + self.prior.channels, cfg.prior_in_channels, 3, 1, 1)
        self.prior_space = GridSearchSpace(cfg.prior)
        self.prior_out = nn.Conv2d(cfg.prior.out_channels, cfg.prior_feat_channels, 3, 1, 1)
        width = cfg.upsample.out_channels
        self.fusion_convs = nn.Sequential(
            nn.Conv2d(width + cfg.prior_feat_channels, cfg.fusion_hidden, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(cfg.fusion_hidden, width, 3, 1, 1))

    def forward(self, x: torch.Tensor, priors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        prior = priors[self.prior.name]
        if prior.shape[1] != self.prior.channels or prior.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"prior {self.prior.name!r}: expected (N, {self.prior.channels}, {x.shape[-2]}, "
                             f"{x.shape[-1]}), got {tuple(prior.shape)}")
        feat, nas_in = self.encode(x)
        up = self.upsample_space(nas_in)
        p = self.prior_out(self.prior_space(self.prior_input(torch.cat([x, prior], 1))))
        return self.reconstruct(x, feat, nas_in, self.fusion_convs(torch.cat([up, p], 1)))

    def search_spaces(self) -> dict[str, nn.Module]:
        return {self.prior.name: self.prior_space}
