"""FRSNet (Fig. 2): the searched supernet ``FRSNetSearch`` and the derived ``FRSNet``.

pixel-unshuffle x8 -> conv -> RDBs (16x16, num_feat) -> upsampling space (-> C ch at 128x128)
-> re-distill (pixel-unshuffle x8, 1x1 conv, LeakyReLU, 1x1 conv) + skip -> RDBs -> conv + skip
-> log2(8) x (nearest x2, conv, LeakyReLU) -> conv_hr -> conv_last.
The output is I_LQ - Z (Eq. 6, ``output='residual'``, default) or conv_last itself
(``output='direct'``, the authors' code).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from frsengine.models.config import FRSNetConfig
from frsengine.models.rdb import ResidualDenseBlock
from frsengine.nas.genotype import Genotype, GenotypeError, SpaceGenotype, validate_genotype
from frsengine.nas.grid import GridPathNet, GridSearchSpace
from frsengine.nas.space import SpaceConfig

SpaceFactory = Callable[[str, SpaceConfig], nn.Module]


class FRSNetTrunk(nn.Module):
    """Everything of FRSNet around the searched upsampling space."""

    network_name = "frsnet"

    def __init__(self, cfg: FRSNetConfig, make_space: SpaceFactory):
        super().__init__()
        self.cfg = cfg
        nf, r = cfg.num_feat, cfg.unshuffle
        self.conv_first = nn.Conv2d(cfg.in_channels * r * r, nf, 3, 1, 1)
        self.rdb_first = nn.Sequential(*[ResidualDenseBlock(nf, cfg.num_grow_ch) for _ in range(cfg.num_rdb)])
        self.upsample_space = make_space("upsample", cfg.upsample)
        cu = cfg.upsample.out_channels * r * r
        self.redistill = nn.Sequential(nn.Conv2d(cu, cu // 3, 1), nn.LeakyReLU(0.2), nn.Conv2d(cu // 3, nf, 1))
        self.rdb_last = nn.Sequential(*[ResidualDenseBlock(nf, cfg.num_grow_ch) for _ in range(cfg.num_rdb)])
        self.conv_after_rdb = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up = nn.ModuleList(nn.Conv2d(nf, nf, 3, 1, 1) for _ in range(int(math.log2(r))))
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, cfg.out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)

    def _check_input(self, x: torch.Tensor) -> None:
        r = self.cfg.unshuffle
        if x.dim() != 4 or x.shape[1] != self.cfg.in_channels or x.shape[-1] % r or x.shape[-2] % r:
            raise ValueError(f"expected input (N, {self.cfg.in_channels}, H, W) with H, W divisible by {r}, "
                             f"got {tuple(x.shape)}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shallow features (after conv_first) and the upsampling space's input (after the RDBs)."""
        self._check_input(x)
        feat = self.conv_first(F.pixel_unshuffle(x, self.cfg.unshuffle))
        return feat, self.rdb_first(feat)

    def reconstruct(self, x: torch.Tensor, feat: torch.Tensor, nas_in: torch.Tensor,
                    space_out: torch.Tensor) -> torch.Tensor:
        """Re-distill the searched features and decode them to the restored image."""
        red = self.redistill(F.pixel_unshuffle(space_out, self.cfg.unshuffle)) + nas_in
        feat = self.conv_after_rdb(self.rdb_last(red)) + feat
        for conv in self.conv_up:
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        z = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return x - z if self.cfg.output == "residual" else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat, nas_in = self.encode(x)
        return self.reconstruct(x, feat, nas_in, self.upsample_space(nas_in))

    def search_spaces(self) -> dict[str, nn.Module]:
        return {"upsample": self.upsample_space}


class ArchParamsMixin:
    """``arch_parameters()`` (alpha, beta of every space) / ``weight_parameters()`` split."""

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for sp in self.search_spaces().values() for p in sp.arch_parameters()]

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]


def search_space_factory(name: str, cfg: SpaceConfig) -> GridSearchSpace:
    return GridSearchSpace(cfg)


def derived_space_config(cfg: SpaceConfig, sp: SpaceGenotype, name: str) -> SpaceConfig:
    """Space config of a derived space: channels from ``cfg``, architecture from the genotype."""
    if sp.kind != cfg.kind:
        raise GenotypeError(f"space {name!r}: genotype kind {sp.kind!r} but the network expects {cfg.kind!r}")
    try:
        return cfg.replace(layers=sp.layers, steps=sp.steps, block_multiplier=sp.block_multiplier,
                           op_set=sp.op_set, levels=sp.levels)
    except ValueError as exc:
        raise GenotypeError(f"space {name!r} does not fit the network's sizes: {exc}") from None


def replace_for_genotype(cfg, **changes):
    """``cfg.replace(**changes)`` where a size conflict is the genotype's fault (GenotypeError)."""
    try:
        return cfg.replace(**changes)
    except ValueError as exc:
        raise GenotypeError(f"genotype does not fit the network's sizes: {exc}") from None


def derived_space_factory(genotype: Genotype) -> SpaceFactory:
    def make(name: str, cfg: SpaceConfig) -> GridPathNet:
        if name not in genotype.spaces:
            raise GenotypeError(f"genotype has no space {name!r} (has: {', '.join(genotype.spaces)})")
        sp = genotype.spaces[name]
        return GridPathNet(derived_space_config(cfg, sp, name), sp.path, sp.cell)
    return make


class FRSNetSearch(ArchParamsMixin, FRSNetTrunk):
    """FRSNet supernet: the upsampling space is a full :class:`GridSearchSpace`."""

    def __init__(self, cfg: FRSNetConfig | None = None):
        super().__init__(cfg or FRSNetConfig(), search_space_factory)


class FRSNet(FRSNetTrunk):
    """Derived FRSNet: the upsampling space is the genotype's path and cell only (no alpha/beta)."""

    def __init__(self, genotype: Genotype, cfg: FRSNetConfig | None = None):
        validate_genotype(genotype)
        if genotype.network != "frsnet":
            raise GenotypeError(f"genotype is for {genotype.network!r}, not frsnet")
        cfg = cfg or FRSNetConfig()
        sp = genotype.spaces["upsample"]
        cfg = replace_for_genotype(cfg, upsample=derived_space_config(cfg.upsample, sp, "upsample"))
        super().__init__(cfg, derived_space_factory(genotype))
        self.genotype = genotype
