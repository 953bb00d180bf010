"""Drawing a genotype (network paths and cells) to an image with matplotlib."""
from __future__ import annotations

from pathlib import Path

from frsengine.errors import MissingDependencyError
from frsengine.nas.genotype import Genotype, SpaceGenotype

_RATE_WORD = {"upsample": "up", "prior": "down", "fusion": "down"}


def _draw_path(ax, name: str, sp: SpaceGenotype) -> None:
    L, K = sp.layers, sp.levels
    for layer in range(-1, L):
        for k in range(K):
            exists = (k == 0) if layer == -1 else k <= layer + 1
            if exists:
                ax.plot(layer, k, "o", color="0.8", ms=7, zorder=1)
    xs = list(range(-1, L))
    ys = [0, *sp.path]
    ax.plot(xs, ys, "-o", color="tab:red", lw=2.5, ms=9, zorder=2)
    ax.set_xticks(xs, ["stem", *[str(i) for i in range(L)]])
    ax.set_yticks(range(K), [f"x{2 ** k}" for k in range(K)])
    ax.set_ylim(-0.5, K - 0.5)
    if sp.kind == "upsample":
        ax.invert_yaxis()   # finer levels drawn lower, as in Fig. 3
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{_RATE_WORD[sp.kind]}sampling rate")
    ax.set_title(f"{name} ({sp.kind}) path {list(sp.path)}")
    ax.grid(alpha=0.3)


def _draw_cell(ax, sp: SpaceGenotype) -> None:
    B = sp.steps
    pos = {0: (0.0, 0.8), 1: (0.0, 0.2)}
    for b in range(B):
        pos[2 + b] = ((b + 1) / (B + 1), 0.5 + (0.25 if b % 2 else -0.25) * (b > 0))
    pos["out"] = (1.0, 0.5)
    names = {0: "H(l-2)", 1: "H(l-1)", **{2 + b: f"block {b}" for b in range(B)}, "out": "concat"}
    for b, i, op in sp.cell:
        (x0, y0), (x1, y1) = pos[i], pos[2 + b]
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color="tab:blue", lw=1.4))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, op, fontsize=7, ha="center", va="center",
                bbox=dict(fc="white", ec="none", alpha=0.8))
    for b in range(B - sp.block_multiplier, B):
        (x0, y0), (x1, y1) = pos[2 + b], pos["out"]
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color="0.6", ls="--"))
    for key, (x, y) in pos.items():
        ax.text(x, y, names[key], ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="lightyellow", ec="0.3"))
    ax.set_xlim(-0.15, 1.15)
    ax.set_ylim(0.0, 1.0)
    ax.axis("off")
    ax.set_title("cell")


def draw_genotype(genotype: Genotype, out: str | Path, dpi: int = 110) -> Path:
    """Draw every space's path and cell into one PNG (one row per space); returns the path."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "drawing genotypes") from None
    n = len(genotype.spaces)
    fig, axes = plt.subplots(n, 2, figsize=(12, 3.2 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1.1, 1]})
    for row, (name, sp) in enumerate(genotype.spaces.items()):
        _draw_path(axes[row][0], name, sp)
        _draw_cell(axes[row][1], sp)
    fig.suptitle(f"{genotype.network} genotype")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
