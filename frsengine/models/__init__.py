"""FRSNet / MFPSNet: supernets, derived networks, presets and a model registry."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from frsengine.models.config import FRSNetConfig, MFPSNetConfig, PriorConfig, get_config, PRESETS
from frsengine.models.fold import fold_bn
from frsengine.models.frsnet import FRSNet, FRSNetSearch
from frsengine.models.mfpsnet import MFPSNet, MFPSNetSearch
from frsengine.nas.genotype import Genotype

SUPERNETS: dict[str, Callable[..., nn.Module]] = {"frsnet": FRSNetSearch, "mfpsnet": MFPSNetSearch}
DERIVED: dict[str, Callable[..., nn.Module]] = {"frsnet": FRSNet, "mfpsnet": MFPSNet}


def build_supernet(network: str, preset: str = "default", **overrides) -> nn.Module:
    """Supernet of ``network`` ('frsnet' / 'mfpsnet') with a preset's sizes (fields overridable)."""
    cfg = get_config(network, preset)
    return SUPERNETS[network](cfg.replace(**overrides) if overrides else cfg)


def build_derived(genotype: Genotype, preset: str = "default", **overrides) -> nn.Module:
    """Derived network of ``genotype``; channel sizes come from the preset."""
    cfg = get_config(genotype.network, preset)
    return DERIVED[genotype.network](genotype, cfg.replace(**overrides) if overrides else cfg)


__all__ = ["FRSNet", "FRSNetSearch", "MFPSNet", "MFPSNetSearch", "FRSNetConfig", "MFPSNetConfig",
           "PriorConfig", "PRESETS", "get_config", "build_supernet", "build_derived", "fold_bn"]
