"""Network configurations and the preset registry (config -> registry -> constructor).

Defaults follow the paper; where the paper is silent, the authors' code (see DESIGN.md's reference
facts). Presets:

- ``default``: paper sizes (LU=6, LP=6, LF=8, B=3, fusion grid sized like the prior modules,
  Eq. 5 betas without 2/3, Gaussian std 1 arch init, output I_LQ - Z as Eq. 6, activations between
  the dictionary / fusion convs, one 24->8 conv per prior).
- ``reference``: the authors' code (2/3 border betas, 1e-3 arch init, direct conv_last output,
  LF=6 with filter 48, one shared 24->8 prior conv, no activations in the dictionary / fusion convs).
- ``tiny``: same structure, few channels/layers, for tests (FRSNet supernet ~0.9 GFLOPs at 128x128).
- ``small``: CPU-sized (FRSNet supernet ~9.6 GFLOPs at 128x128), the search-step benchmark default.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from frsengine.nas.space import SpaceConfig


@dataclass(frozen=True)
class PriorConfig:
    """One facial prior input of MFPSNet.

    mode 'image': conv(concat(image, prior)) -> prior_in_channels; mode 'features': a conv stack
    (``hidden``) on the prior alone (the dictionary features, 256 -> 174 -> 90 -> 8 in the authors').
    """

    name: str
    channels: int
    mode: str = "image"
    hidden: tuple[int, ...] = ()

    def __post_init__(self):
        if self.mode not in ("image", "features"):
            raise ValueError(f"prior {self.name!r}: mode must be 'image' or 'features', got {self.mode!r}")


@dataclass(frozen=True)
class FRSNetConfig:
    """FRSNet: pixel-unshuffle, conv, RDBs, upsampling space, re-distill, RDBs, x2 upsampling convs."""

    in_channels: int = 3
    out_channels: int = 3
    num_feat: int = 64
    num_grow_ch: int = 32
    num_rdb: int = 3
    unshuffle: int = 8
    output: str = "residual"          # 'residual': I_LQ - Z (Eq. 6); 'direct': conv_last (authors)
    upsample: SpaceConfig = field(default_factory=lambda: SpaceConfig("upsample", 64, 64, layers=6))

    def __post_init__(self):
        if self.output not in ("residual", "direct"):
            raise ValueError(f"output must be 'residual' or 'direct', got {self.output!r}")
        if self.unshuffle != 2 ** (self.upsample.levels - 1):
            raise ValueError(f"unshuffle {self.unshuffle} must equal 2^(levels-1) = "
                             f"{2 ** (self.upsample.levels - 1)} so the upsampling space ends at input size")
        if self.output == "residual" and self.in_channels != self.out_channels:
            raise ValueError("residual output needs in_channels == out_channels")
        if self.upsample.in_channels != self.num_feat:
            raise ValueError(f"upsample.in_channels ({self.upsample.in_channels}) must equal num_feat ({self.num_feat})")

    def replace(self, **changes):
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


# The priors frsengine.priors produces: 10 parsing classes from landmark polygons, 68 landmark
# heatmaps, 64-channel component-dictionary features (docs/priors.md). The authors' files had 19
# parsing classes, 71 heatmaps and 256 dictionary channels (256 -> 174 -> 90 -> 8 convs; ours
# scale that by 1/4): the `reference` preset keeps their sizes.
DEFAULT_PRIORS = (
    PriorConfig("parsing", 10),
    PriorConfig("heatmap", 68),
    PriorConfig("dictionary", 64, mode="features", hidden=(48, 24)),
)
AUTHORS_PRIORS = (
    PriorConfig("parsing", 19),
    PriorConfig("heatmap", 71),
    PriorConfig("dictionary", 256, mode="features", hidden=(174, 90)),
)


@dataclass(frozen=True)
class MFPSNetConfig(FRSNetConfig):
    """MFPSNet = FRSNet + one prior search module per prior + a fusion module, run for ``passes``."""

    priors: tuple[PriorConfig, ...] = DEFAULT_PRIORS
    prior_in_channels: int = 8         # channels entering each prior module's stem
    prior_feat_channels: int = 8       # each prior's output (24 ch) is reduced to this before fusion
    share_prior_conv: bool = False     # authors: one conv8 shared by all priors
    prior: SpaceConfig = field(default_factory=lambda: SpaceConfig("prior", 8, 8, layers=6))
    # Paper: the fusion module follows "the exact configurations of the prior search module" (filter
    # multiplier 8) except LF = 8. The authors' retrain code uses filter 48 (= its input width), which
    # makes the fusion supernet ~0.84 G parameters; that is the `reference` preset.
    fusion: SpaceConfig = field(default_factory=lambda: SpaceConfig("fusion", 48, 8, layers=8))
    fusion_hidden: int = 48            # fusion output -> fusion_hidden -> upsample.out_channels
    dict_activation: bool = True       # LeakyReLU between the dictionary convs (authors: none)
    fusion_activation: bool = True     # LeakyReLU between the two fusion convs (authors: none)
    passes: int = 2

    def __post_init__(self):
        super().__post_init__()
        if self.passes < 1:
            raise ValueError("passes must be >= 1")
        if not self.priors:
            raise ValueError("MFPSNet needs at least one prior")
        names = [p.name for p in self.priors]
        if len(set(names)) != len(names) or {"upsample", "fusion"} & set(names):
            raise ValueError(f"prior names must be unique and not 'upsample'/'fusion': {names}")
        if self.prior.in_channels != self.prior_in_channels:
            raise ValueError("prior.in_channels must equal prior_in_channels")
        want = self.upsample.out_channels + len(self.priors) * self.prior_feat_channels
        if self.fusion.in_channels != want:
            raise ValueError(f"fusion.in_channels must be {want} (upsample output + priors x prior_feat_channels)")


def _frsnet_default() -> FRSNetConfig:
    return FRSNetConfig()


def _frsnet_reference() -> FRSNetConfig:
    return FRSNetConfig(output="direct", upsample=SpaceConfig(
        "upsample", 64, 64, layers=6, border_beta_scale=2 / 3, arch_init_std=1e-3))


def _tiny_upsample(**kw) -> SpaceConfig:
    return SpaceConfig("upsample", 16, 16, layers=3, steps=2, block_multiplier=2, **kw)


def _frsnet_tiny() -> FRSNetConfig:
    return FRSNetConfig(num_feat=16, num_grow_ch=8, num_rdb=1, upsample=_tiny_upsample())


def _frsnet_small() -> FRSNetConfig:
    return FRSNetConfig(num_feat=32, num_grow_ch=16, num_rdb=2,
                        upsample=SpaceConfig("upsample", 32, 32, layers=4, steps=3, block_multiplier=3))


def _mfpsnet_default() -> MFPSNetConfig:
    return MFPSNetConfig()


def _mfpsnet_reference() -> MFPSNetConfig:
    ref = dict(border_beta_scale=2 / 3, arch_init_std=1e-3)
    return MFPSNetConfig(
        output="direct", share_prior_conv=True, dict_activation=False, fusion_activation=False,
        priors=AUTHORS_PRIORS,
        upsample=SpaceConfig("upsample", 64, 64, layers=6, **ref),
        prior=SpaceConfig("prior", 8, 8, layers=6, **ref),
        fusion=SpaceConfig("fusion", 48, 48, layers=6, **ref))


def _mfpsnet_tiny() -> MFPSNetConfig:
    up = _tiny_upsample()
    priors = (PriorConfig("parsing", 5), PriorConfig("heatmap", 4),
              PriorConfig("dictionary", 8, mode="features", hidden=(6,)))
    return MFPSNetConfig(
        num_feat=16, num_grow_ch=8, num_rdb=1, upsample=up, priors=priors,
        prior_in_channels=4, prior_feat_channels=2, fusion_hidden=8,
        prior=SpaceConfig("prior", 4, 2, layers=3, steps=2, block_multiplier=2),
        fusion=SpaceConfig("fusion", up.out_channels + 3 * 2, 4, layers=3, steps=2, block_multiplier=2))


def _mfpsnet_small() -> MFPSNetConfig:
    up = SpaceConfig("upsample", 32, 32, layers=4)
    return MFPSNetConfig(
        num_feat=32, num_grow_ch=16, num_rdb=2, upsample=up, prior_in_channels=4, prior_feat_channels=4,
        fusion_hidden=16, prior=SpaceConfig("prior", 4, 2, layers=4, steps=2, block_multiplier=2),
        fusion=SpaceConfig("fusion", up.out_channels + 3 * 4, 4, layers=4, steps=2, block_multiplier=2))


PRESETS: dict[str, dict[str, Callable[[], FRSNetConfig]]] = {
    "frsnet": {"default": _frsnet_default, "reference": _frsnet_reference,
               "tiny": _frsnet_tiny, "small": _frsnet_small},
    "mfpsnet": {"default": _mfpsnet_default, "reference": _mfpsnet_reference,
                "tiny": _mfpsnet_tiny, "small": _mfpsnet_small},
}


def get_config(network: str, preset: str = "default") -> FRSNetConfig:
    """Configuration of ``network`` ('frsnet' / 'mfpsnet') for a named preset."""
    if network not in PRESETS:
        raise KeyError(f"unknown network {network!r}; known: {', '.join(PRESETS)}")
    presets = PRESETS[network]
    if preset not in presets:
        raise KeyError(f"unknown preset {preset!r} for {network}; known: {', '.join(presets)}")
    return presets[preset]()
