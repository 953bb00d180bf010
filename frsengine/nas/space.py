"""Configuration of one network-level search space and the three ways the grid is used."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# Space kind -> grid orientation. 'up': level k has 2^k times the input resolution and 1/2^k of the
# channels (upsampling rates relative to the 16x16 features); 'down': level k has 1/2^k of the
# resolution and 2^k times the channels (downsampling rates; resolution-preserving output).
SPACE_KINDS = {"upsample": "up", "prior": "down", "fusion": "down"}


@dataclass(frozen=True)
class SpaceConfig:
    """Sizes of one grid search space (all configurable; defaults are the paper's).

    kind: 'upsample' (LU), 'prior' (LP) or 'fusion' (LF).
    in_channels: channels entering the stem (e.g. 64 RDB features, 8 per prior).
    filter_multiplier: per-block width at level 0 (the authors' ``filter_multiplier``).
    steps: blocks per cell (B). block_multiplier: concatenated block outputs per cell.
    border_beta_scale: factor on the 2-way softmax of border nodes (1.0 = Eq. 5; authors: 2/3).
    arch_init_std: std of the Gaussian alpha/beta initialisation (paper: 1; authors: 1e-3).
    """

    kind: str
    in_channels: int
    filter_multiplier: int
    layers: int = 6
    steps: int = 3
    block_multiplier: int = 3
    levels: int = 4
    op_set: str = "default"
    border_beta_scale: float = 1.0
    arch_init_std: float = 1.0

    def __post_init__(self):
        if self.kind not in SPACE_KINDS:
            raise ValueError(f"unknown space kind {self.kind!r}; known: {', '.join(SPACE_KINDS)}")
        if self.layers < 1 or self.steps < 1 or self.levels < 2:
            raise ValueError("layers and steps must be >= 1, levels >= 2")
        if not 1 <= self.block_multiplier <= self.steps:
            raise ValueError(f"block_multiplier must be in 1..steps, got {self.block_multiplier}")
        if self.orientation == "up" and self.filter_multiplier % 2 ** (self.levels - 1):
            raise ValueError(f"upsample filter_multiplier {self.filter_multiplier} must be divisible "
                             f"by {2 ** (self.levels - 1)} (channels halve per level)")

    @property
    def orientation(self) -> str:
        return SPACE_KINDS[self.kind]

    def level_filters(self) -> list[int]:
        """Per-block width of each level."""
        f = self.filter_multiplier
        if self.orientation == "up":
            return [f // 2 ** k for k in range(self.levels)]
        return [f * 2 ** k for k in range(self.levels)]

    def level_channels(self) -> list[int]:
        """Node (cell output) channels of each level."""
        return [self.block_multiplier * f for f in self.level_filters()]

    @property
    def out_channels(self) -> int:
        """Channels of the space's output (the finest level's node width)."""
        return min(self.level_channels())

    def replace(self, **changes) -> "SpaceConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)
