"""Training checkpoints: one safetensors file holding everything a resumed run needs.

Tensors: ``model/<name>`` (parameters and buffers), ``optim/<opt>/<param index>/<key>``
(optimizer state), ``rng/torch`` and ``rng/cuda/<device>``. The header's metadata holds JSON:
the format, the run's config, the position (epoch, batch in epoch, global step) and each
optimizer's hyper-parameters. Files are written to a temporary name and renamed, so a kill at any
moment leaves either the old or the new checkpoint. Loading reads tensors and JSON only: nothing
is unpickled.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from frsengine.errors import FrsError
from frsengine.io import write_bytes_atomic

FORMAT = "frsengine.train.checkpoint/1"


class CheckpointError(FrsError):
    """A training checkpoint that cannot be used."""


def _optimizer_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{name}/{idx}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}/{key}"] = value
    # A learning rate held as a device tensor (frsengine.train.search_graph) is saved as its value.
    groups = [{k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


# How an optimizer runs, not what it has learnt: a resumed run keeps its own (a checkpoint of a
# CUDA-graph search, fused SGD and capturable Adam, resumes as a plain search and back).
EXECUTION_FLAGS = ("foreach", "fused", "capturable", "differentiable")


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                    position: dict[str, Any], config: dict, extra: dict | None = None) -> Path:
    """Write the checkpoint atomically; returns its path."""
    from safetensors.torch import save

    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_meta = {}
    for name, opt in optimizers.items():
        t, meta = _optimizer_tensors(name, opt)
        tensors.update(t)
        optim_meta[name] = meta
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = state
    metadata = {"format": FORMAT, "position": json.dumps(position), "config": json.dumps(config),
                "optimizers": json.dumps(optim_meta), "extra": json.dumps(extra or {})}
    path = Path(path)
    write_bytes_atomic(path, save(tensors, metadata=metadata))
    return path


class Checkpoint:
    """A loaded checkpoint: ``position``, ``config``, ``extra`` and the tensors."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]):
        self.path = path
        self.tensors = tensors
        try:
            self.position = json.loads(meta["position"])
            self.config = json.loads(meta["config"])
            self.optimizers = json.loads(meta["optimizers"])
            self.extra = json.loads(meta.get("extra", "{}"))
        except (KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"checkpoint '{path}' has a damaged header ({exc}): resume from an older "
                                  "one or start over") from None

    def model_state(self) -> dict[str, torch.Tensor]:
        return {k[len("model/"):]: v for k, v in self.tensors.items() if k.startswith("model/")}

    def restore_model(self, model: torch.nn.Module) -> None:
        state = self.model_state()
        want = model.state_dict()
        missing = sorted(set(want) - set(state))
        unexpected = sorted(set(state) - set(want))
        if missing or unexpected:
            raise CheckpointError(f"checkpoint '{self.path}' does not fit this model ({len(missing)} tensors missing, "
                                  f"e.g. {(missing or unexpected)[0]!r}; {len(unexpected)} unexpected): was it written "
                                  "with another config?")
        for k, v in state.items():
            if want[k].shape != v.shape:
                raise CheckpointError(f"checkpoint '{self.path}': {k} has shape {tuple(v.shape)}, the model needs "
                                      f"{tuple(want[k].shape)}: was it written with another config?")
        model.load_state_dict(state)

    def restore_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        if name not in self.optimizers:
            raise CheckpointError(f"checkpoint '{self.path}' has no state for optimizer '{name}'")
        meta = self.optimizers[name]
        prefix = f"optim/{name}/"
        state: dict[int, dict[str, Any]] = {}
        for k, v in self.tensors.items():
            if k.startswith(prefix):
                idx, key = k[len(prefix):].split("/", 1)
                state.setdefault(int(idx), {})[key] = v
        for k, v in meta["scalars"].items():
            idx, key = k.split("/", 1)
            state.setdefault(int(idx), {})[key] = v
        groups = [{**saved, **{k: mine[k] for k in EXECUTION_FLAGS if k in mine}}
                  for saved, mine in zip(meta["param_groups"], opt.param_groups)]
        groups += meta["param_groups"][len(groups):]   # a count mismatch is load_state_dict's to report
        try:
            opt.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint '{self.path}': optimizer '{name}' does not fit ({exc})") from None

    def restore_rng(self) -> None:
        torch.set_rng_state(self.tensors["rng/torch"])
        cuda = [self.tensors[k] for k in sorted(self.tensors) if k.startswith("rng/cuda/")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint (tensors + JSON header); raises CheckpointError with what to do."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist: check --resume (a run folder or a "
                              "checkpoint file)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"'{path}' is not a frsengine training checkpoint (format "
                                      f"{meta.get('format')!r}, expected {FORMAT!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({exc}): it may be truncated; resume from "
                              "another checkpoint of the run") from None
    return Checkpoint(path, tensors, meta)
