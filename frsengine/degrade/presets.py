"""Degradation presets: the parameter ranges and the order of the operations.

`paper` follows Eq. 10 of the paper, `I_full = JPEG_q((I_HQ * k_sigma) down_r + n_delta)`,
then a resize back to the HQ size. The paper gives no ranges; ours follow the works it
cites for this model (DFDNet/PSFRGAN family): Gaussian sigma 0.2-5, r 1-8 (bicubic with
antialiasing, as MATLAB/PIL), Gaussian noise delta 0-15 (0-255 units), JPEG quality 40-90.

`reference` reproduces the authors' `degrade.py` (imgaug): Gaussian blur sigma 3-8 or motion
blur k 10-20 -> per-channel noise (Gaussian scale 20-40, Laplace scale 20-40, or Poisson
lambda 15-30 with a random sign) -> JPEG (imgaug `compression` 50-85, i.e. quality 15-50)
-> x0.5 cubic resize (no antialiasing, as OpenCV) -> cubic resize back.

Every range can be overridden with `with_overrides({"noise.sigma": (5, 10), ...})`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from frsengine.errors import FrsError

OPS = ("blur", "down", "noise", "jpeg")
# Names of the single degradations, in the order they are stacked in batches.
SINGLES = ("blur", "noise", "jpeg", "downup")


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float

    def __post_init__(self):
        if not self.lo <= self.hi:
            raise FrsError(f"bad range [{self.lo}, {self.hi}]: low end above high end")


@dataclass(frozen=True)
class BlurSpec:
    gaussian_p: float = 1.0  # probability of Gaussian blur; otherwise motion blur
    sigma: Range = Range(0.2, 5.0)
    motion_size: Range = Range(10, 20)  # motion-blur line length in pixels (integer)
    truncate: float = 3.0  # Gaussian kernel radius = ceil(truncate * sigma)


@dataclass(frozen=True)
class DownSpec:
    scale: Range = Range(1.0, 8.0)  # r: LR side = round(HQ side / r)
    antialias: bool = True  # bicubic with antialiasing (PIL/MATLAB) vs plain cubic (OpenCV)


@dataclass(frozen=True)
class NoiseSpec:
    # probabilities of gaussian, laplace, poisson; sigma/scale in 0-255 units
    kinds: tuple[tuple[str, float], ...] = (("gaussian", 1.0),)
    sigma: Range = Range(0.0, 15.0)
    laplace_scale: Range = Range(20.0, 40.0)
    poisson_lam: Range = Range(15.0, 30.0)
    per_channel: bool = True


@dataclass(frozen=True)
class JpegSpec:
    quality: Range = Range(40, 90)  # integer quality factor, libjpeg scale


@dataclass(frozen=True)
class Preset:
    name: str
    order: tuple[str, ...]  # a permutation of OPS; the resize back to HQ size comes last
    blur: BlurSpec = field(default_factory=BlurSpec)
    down: DownSpec = field(default_factory=DownSpec)
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    jpeg: JpegSpec = field(default_factory=JpegSpec)

    def __post_init__(self):
        if sorted(self.order) != sorted(OPS):
            raise FrsError(f"preset order {self.order} must be a permutation of {OPS}")
        kinds = dict(self.noise.kinds)
        unknown = set(kinds) - {"gaussian", "laplace", "poisson"}
        if unknown:
            raise FrsError(f"unknown noise kind(s) {sorted(unknown)}: use gaussian, laplace, poisson")
        if abs(sum(kinds.values()) - 1.0) > 1e-6:
            raise FrsError(f"noise kind probabilities must sum to 1, got {self.noise.kinds}")
        if self.down.scale.lo < 1.0:
            raise FrsError("down.scale must be >= 1 (an LR image is never larger than the HQ one)")

    def with_overrides(self, overrides: dict[str, object]) -> "Preset":
        """Return a copy with dotted keys replaced, e.g. {"noise.sigma": (5, 10)}."""
        preset = self
        for key, value in overrides.items():
            preset = _replace_dotted(preset, key.split("."), value, key)
        return preset

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _replace_dotted(obj, parts, value, key):
    names = {f.name: f for f in dataclasses.fields(obj)}
    if parts[0] not in names:
        raise FrsError(f"unknown preset key '{key}': valid keys at this level are {sorted(names)}")
    current = getattr(obj, parts[0])
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise FrsError(f"unknown preset key '{key}'")
        return dataclasses.replace(obj, **{parts[0]: _replace_dotted(current, parts[1:], value, key)})
    if isinstance(current, Range):
        lo, hi = (value, value) if isinstance(value, (int, float)) else value
        value = Range(float(lo), float(hi))
    elif parts[0] == "kinds":
        value = tuple((str(k), float(p)) for k, p in (value.items() if isinstance(value, dict) else value))
    elif parts[0] == "order":
        value = tuple(value)
    elif isinstance(current, bool):
        value = bool(value)
    elif isinstance(current, float):
        value = float(value)
    return dataclasses.replace(obj, **{parts[0]: value})


PRESETS: dict[str, Preset] = {
    "paper": Preset(name="paper", order=("blur", "down", "noise", "jpeg")),
    "reference": Preset(
        name="reference",
        order=("blur", "noise", "jpeg", "down"),
        blur=BlurSpec(gaussian_p=0.5, sigma=Range(3.0, 8.0), motion_size=Range(10, 20)),
        down=DownSpec(scale=Range(2.0, 2.0), antialias=False),
        noise=NoiseSpec(
            kinds=(("gaussian", 1 / 3), ("laplace", 1 / 3), ("poisson", 1 / 3)),
            sigma=Range(20.0, 40.0),
            laplace_scale=Range(20.0, 40.0),
            poisson_lam=Range(15.0, 30.0),
        ),
        jpeg=JpegSpec(quality=Range(15, 50)),
    ),
}


def get_preset(name_or_preset: str | Preset, overrides: dict[str, object] | None = None) -> Preset:
    """Look a preset up by name (see PRESETS) and apply dotted-key overrides."""
    if isinstance(name_or_preset, Preset):
        preset = name_or_preset
    else:
        try:
            preset = PRESETS[name_or_preset]
        except KeyError:
            raise FrsError(
                f"unknown degradation preset '{name_or_preset}': choose one of {sorted(PRESETS)}"
            ) from None
    return preset.with_overrides(overrides or {})


def parse_override(text: str) -> tuple[str, object]:
    """Parse a CLI override `key=value` or `key=lo,hi` (e.g. `noise.sigma=5,10`)."""
    if "=" not in text:
        raise FrsError(f"bad override '{text}': write key=value or key=lo,hi, e.g. noise.sigma=5,10")
    key, raw = text.split("=", 1)
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    try:
        if key.endswith("kinds"):
            # noise.kinds=gaussian:0.5,poisson:0.5
            return key, tuple((k, float(p)) for k, p in (item.split(":") for item in parts))
        if key.endswith("order"):
            return key, tuple(parts)
        if key.endswith("antialias") or key.endswith("per_channel"):
            return key, parts[0].lower() in ("1", "true", "yes")
        nums = [float(p) for p in parts]
    except ValueError:
        raise FrsError(f"bad override '{text}': values must be numbers") from None
    if len(nums) == 1:
        return key, nums[0]
    if len(nums) == 2:
        return key, (nums[0], nums[1])
    raise FrsError(f"bad override '{text}': give one value or a range lo,hi")
