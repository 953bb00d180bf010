"""MFPSNet (Fig. 4): FRSNet plus one searched prior module per facial prior and a searched fusion
module, run for ``passes`` passes with shared weights (the authors' ``iter_num=2``).

Pass 1 is FRSNet on the LQ face. Every later pass restores the previous pass's output again, now
with the priors: each prior enters as conv(concat(image, prior)) (or a conv stack on the prior
alone, for dictionary features) -> its prior module -> conv to ``prior_feat_channels``; the fusion
module takes concat(upsampling-space output, prior features) and two convs bring it back to the
upsampling-space width before the re-distill. Priors are given as tensors (at the image's size) or
computed in-graph from the previous pass's output by ``prior_fn`` (the paper's order).
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn as nn

from frsengine.models.config import MFPSNetConfig, PriorConfig
from frsengine.models.frsnet import (ArchParamsMixin, FRSNetTrunk, SpaceFactory, derived_space_config,
                                     derived_space_factory, replace_for_genotype,
                                     search_space_factory)
from frsengine.nas.genotype import Genotype, GenotypeError, validate_genotype

PriorFn = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]


def _prior_input(p: PriorConfig, img_channels: int, out_channels: int, activation: bool) -> nn.Module:
    if p.mode == "image":
        return nn.Conv2d(img_channels + p.channels, out_channels, 3, 1, 1)
    widths = (p.channels, *p.hidden, out_channels)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if i and activation:
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv2d(a, b, 3, 1, 1))
    return nn.Sequential(*layers)


class MFPSNetTrunk(FRSNetTrunk):
    network_name = "mfpsnet"

    def __init__(self, cfg: MFPSNetConfig, make_space: SpaceFactory):
        super().__init__(cfg, make_space)
        self.prior_input = nn.ModuleDict({
            p.name: _prior_input(p, cfg.in_channels, cfg.prior_in_channels, cfg.dict_activation)
            for p in cfg.priors})
        self.prior_spaces = nn.ModuleDict({p.name: make_space(p.name, cfg.prior) for p in cfg.priors})
        if cfg.share_prior_conv:
            self.prior_out_shared = nn.Conv2d(self.prior_spaces[cfg.priors[0].name].cfg.out_channels, cfg.prior_feat_channels, 3, 1, 1)
        else:
            self.prior_out = nn.ModuleDict({
                p.name: nn.Conv2d(self.prior_spaces[p.name].cfg.out_channels, cfg.prior_feat_channels, 3, 1, 1)
                for p in cfg.priors})
        self.fusion_space = make_space("fusion", cfg.fusion)
        fusion_out = self.fusion_space.cfg.out_channels
        self.fusion_convs = nn.Sequential(
            nn.Conv2d(fusion_out, cfg.fusion_hidden, 3, 1, 1),
            *([nn.LeakyReLU(0.2)] if cfg.fusion_activation else []),
            nn.Conv2d(cfg.fusion_hidden, cfg.upsample.out_channels, 3, 1, 1))

    def _prior_feature(self, name: str, image: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        p = next(p for p in self.cfg.priors if p.name == name)
        if prior.shape[-2:] != image.shape[-2:] or prior.shape[1] != p.channels:
            raise ValueError(f"prior {name!r}: expected (N, {p.channels}, {image.shape[-2]}, {image.shape[-1]}), "
                             f"got {tuple(prior.shape)}")
        inp = torch.cat([image, prior], 1) if p.mode == "image" else prior
        y = self.prior_spaces[name](self.prior_input[name](inp))
        conv = self.prior_out_shared if self.cfg.share_prior_conv else self.prior_out[name]
        return conv(y)

    def restore_once(self, x: torch.Tensor, priors: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """One pass: FRSNet when ``priors`` is None, else with prior and fusion modules."""
        feat, nas_in = self.encode(x)
        up = self.upsample_space(nas_in)
        if priors is not None:
            missing = [p.name for p in self.cfg.priors if p.name not in priors]
            if missing:
                raise ValueError(f"missing prior(s) {', '.join(missing)}")
            feats = [up] + [self._prior_feature(p.name, x, priors[p.name]) for p in self.cfg.priors]
            up = self.fusion_convs(self.fusion_space(torch.cat(feats, 1)))
        return self.reconstruct(x, feat, nas_in, up)

    def forward(self, x: torch.Tensor, priors: Mapping[str, torch.Tensor] | None = None,
                prior_fn: PriorFn | None = None, use_priors: bool = True) -> tuple[torch.Tensor, ...]:
        """Return every pass's output (the last one is the result; the loss covers all).

        Passes after the first use ``prior_fn(previous output)`` when given, else ``priors``.
        ``use_priors=False``: one pass without priors (FRSNet), as retraining does before the priors
        are switched in (Sec. 4.2).
        """
        if not use_priors:
            return (self.restore_once(x, None),)
        if priors is None and prior_fn is None:
            raise ValueError("MFPSNet needs priors (tensors) or prior_fn (a callable on the pass-1 output)")
        outputs = []
        image = x
        for i in range(self.cfg.passes):
            use = i > 0 or self.cfg.passes == 1
            p = (prior_fn(image) if prior_fn is not None else priors) if use else None
            image = self.restore_once(image, p)
            outputs.append(image)
        return tuple(outputs)

    def search_spaces(self) -> dict[str, nn.Module]:
        return {"upsample": self.upsample_space, **dict(self.prior_spaces.items()), "fusion": self.fusion_space}


class MFPSNetSearch(ArchParamsMixin, MFPSNetTrunk):
    """MFPSNet supernet: upsampling, prior and fusion spaces are full grids."""

    def __init__(self, cfg: MFPSNetConfig | None = None):
        super().__init__(cfg or MFPSNetConfig(), search_space_factory)


class MFPSNet(MFPSNetTrunk):
    """Derived MFPSNet built from a genotype (paths and chosen ops only)."""

    def __init__(self, genotype: Genotype, cfg: MFPSNetConfig | None = None):
        validate_genotype(genotype)
        if genotype.network != "mfpsnet":
            raise GenotypeError(f"genotype is for {genotype.network!r}, not mfpsnet")
        cfg = cfg or MFPSNetConfig()
        names = {p.name for p in cfg.priors}
        prior_names = set(genotype.spaces) - {"upsample", "fusion"}
        if prior_names != names:
            raise GenotypeError(f"genotype prior spaces {sorted(prior_names)} do not match the network's "
                                f"priors {sorted(names)}")
        up = derived_space_config(cfg.upsample, genotype.spaces["upsample"], "upsample")
        fusion = replace_for_genotype(derived_space_config(cfg.fusion, genotype.spaces["fusion"], "fusion"),
                                      in_channels=up.out_channels + len(cfg.priors) * cfg.prior_feat_channels)
        # Prior spaces may differ per prior; cfg.prior only supplies their channel sizes.
        cfg = replace_for_genotype(cfg, upsample=up, fusion=fusion)
        if cfg.share_prior_conv and len({genotype.spaces[n].block_multiplier for n in names}) > 1:
            raise GenotypeError("share_prior_conv needs the same block_multiplier in every prior space")
        super().__init__(cfg, derived_space_factory(genotype))
        self.genotype = genotype
