"""alpha / beta over a search: one JSON record per epoch and a plot of their evolution."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from frsengine.io import write_bytes_atomic


def snapshot(spaces: dict, epoch: int, step: int) -> dict:
    """softmax(alpha) (edges x ops) and normalised beta (layers x levels x 3) of every space."""
    out = {"epoch": epoch, "step": step, "spaces": {}}
    for name, sp in spaces.items():
        with torch.no_grad():
            out["spaces"][name] = {
                "ops": list(sp.op_set.names),
                "alphas": sp.normalized_alphas().cpu().tolist(),
                "betas": sp.normalized_betas().cpu().tolist(),
            }
    return out


def load(path: Path) -> list[dict]:
    """The records written by :func:`append` (an empty list before the first)."""
    return json.loads(path.read_text()) if path.exists() else []


def append(path: Path, record: dict) -> list[dict]:
    """Add ``record`` to the JSON list at ``path`` (replacing one of the same epoch); atomic."""
    history = load(path)
    history = [r for r in history if r["epoch"] != record["epoch"]] + [record]
    history.sort(key=lambda r: r["epoch"])
    write_bytes_atomic(path, json.dumps(history).encode())
    return history


def plot(history: list[dict], out: Path) -> Path | None:
    """Per space: the mean weight of each op over the cell's edges, and the largest beta of each
    layer (how decided the path is), against the epoch."""
    if not history:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(history[0]["spaces"])
    epochs = [r["epoch"] for r in history]
    # Legends sit beside the axes: loc="best" searches every curve (seconds per plot on a CPU).
    fig, axes = plt.subplots(len(names), 2, figsize=(13, 2.8 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        ops = history[0]["spaces"][name]["ops"]
        a = torch.tensor([r["spaces"][name]["alphas"] for r in history])          # (E, edges, ops)
        for j, op in enumerate(ops):
            axes[row][0].plot(epochs, a[:, :, j].mean(1).tolist(), label=op)
        axes[row][0].set_title(f"{name}: mean softmax(alpha) per op")
        axes[row][0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        b = torch.tensor([r["spaces"][name]["betas"] for r in history])           # (E, L, K, 3)
        peak = b.flatten(2).amax(2)                                               # (E, L)
        for layer in range(peak.shape[1]):
            axes[row][1].plot(epochs, peak[:, layer].tolist(), label=f"layer {layer}")
        axes[row][1].set_title(f"{name}: largest beta per layer")
        axes[row][1].legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
        for ax in axes[row]:
            ax.set_xlabel("epoch")
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
