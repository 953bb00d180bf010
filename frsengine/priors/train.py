"""Training the student prior network on the teacher's labels, with on-the-fly degradation.

Each step draws its batch from numpy's generator seeded with (seed, step) and degrades it with
`Degrader(preset)` at (seed, epoch=step, face index), so a resumed run sees exactly the batches
an uninterrupted one would. A fraction of each batch stays clean (the student must also work on
HQ and first-pass restored faces). Checkpoints are safetensors (model, Adam state, and the step,
settings and loss history as JSON metadata), written to a temporary file and renamed.

Loss: cross-entropy of the parsing logits (upsampled to full size) + `heat_weight` x the
cross-entropy between each landmark's spatial softmax (half resolution) and the teacher's
Gaussian (std sigma/2 there) normalised to sum 1 (a dense signal from the first step, as DSNT's
regulariser) + `coord_weight` x L1 of the soft-argmax landmarks (in units of the image side).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from frsengine.errors import FrsError
from frsengine.priors.rasterize import heatmaps, parsing_maps
from frsengine.priors.student import StudentConfig, StudentPriorNet

CHECKPOINT_FORMAT = "frsengine.priors.student/1"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clean_fraction: float = 0.2
    sigma: float = 2.0            # heatmap std in full-resolution pixels
    heat_weight: float = 0.2
    coord_weight: float = 20.0
    preset: str = "paper"
    seed: int = 0
    checkpoint_every: int = 100


def _optimizer(model: StudentPriorNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over 50 steps, then cosine decay to 5 % of lr."""
    if step < 50:
        return cfg.lr * (step + 1) / 50
    t = (step - 50) / max(cfg.steps - 50, 1)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(t, 1.0))))


def save_checkpoint(path: str | os.PathLike, model: StudentPriorNet, optimizer: torch.optim.Optimizer | None,
                    meta: dict) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            for k, v in optimizer.state.get(p, {}).items():
                tensors[f"optim.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    metadata = {"format": CHECKPOINT_FORMAT, "student": json.dumps(model.config.to_json()), "meta": json.dumps(meta)}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[StudentPriorNet, dict, dict[str, torch.Tensor]]:
    """(model in eval mode, metadata, optimizer tensors) from a student checkpoint."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FrsError(f"student checkpoint '{path}' does not exist: train one with `frsengine priors train`")
    try:
        with safe_open(str(path), framework="pt") as fh:
            md = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise FrsError(f"'{path}' is not a safetensors file ({exc}): point --student at a checkpoint "
                       "written by `frsengine priors train`") from None
    if md.get("format") != CHECKPOINT_FORMAT:
        raise FrsError(f"'{path}' is not a student prior checkpoint (format {md.get('format')!r})")
    model = StudentPriorNet(StudentConfig.from_json(json.loads(md["student"])))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model.eval()
    return model, json.loads(md["meta"]), {k: v for k, v in tensors.items() if k.startswith("optim.")}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for key, value in tensors.items():
        _, i, name = key.split(".", 2)
        optimizer.state[params[int(i)]][name] = value.clone()


def train_student(faces: torch.Tensor, points: np.ndarray, out: str | os.PathLike, cfg: TrainConfig,
                  student: StudentConfig = StudentConfig(), data_info: dict | None = None,
                  progress: bool = True, report: Callable[[str], None] = print,
                  device: str | torch.device = "cpu") -> Path:
    """Train (or resume) a student on (N, 3, S, S) uint8 faces and their (N, 68, 2) teacher
    landmarks in the same frame; writes `out` every `checkpoint_every` steps and at the end.
    On a CUDA `device` the model, the degradation and the losses run there (the faces stay in
    host memory); the batches are the same as on the CPU, the arithmetic is not bit-identical."""
    from tqdm import tqdm

    from frsengine.degrade import Degrader

    out = Path(out)
    n, _, size, _ = faces.shape
    if size != student.size:
        raise FrsError(f"faces are {size}x{size} but the student is configured for {student.size}")
    if n < cfg.batch_size:
        raise FrsError(f"only {n} labelled faces for a batch of {cfg.batch_size}: use more faces")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the initial weights depend on the seed only
        model = StudentPriorNet(student)
    device = torch.device(device)
    model.to(device)
    optimizer = _optimizer(model, cfg)
    history: list[list[float]] = []
    start = 0
    if out.exists():
        old, meta, opt_tensors = load_checkpoint(out)
        if meta.get("train") != json.loads(json.dumps(asdict(cfg))) or old.config != student:
            raise FrsError(f"'{out}' was trained with other settings: delete it to start over, or pass "
                           "the same settings to resume")
        model.load_state_dict(old.state_dict())
        # as Optimizer.load_state_dict: moments on the parameters' device, the step count on the CPU
        _restore_optimizer(optimizer, {k: v if k.endswith(".step") else v.to(device) for k, v in opt_tensors.items()})
        start, history = int(meta["step"]), meta.get("history", [])
        report(f"resuming from step {start} of {cfg.steps} ({out})")
    parsing_all = torch.from_numpy(parsing_maps(points, size))
    points_t = torch.from_numpy(points.astype(np.float32))
    degrader = Degrader(cfg.preset, "torch", singles=False, device=device)
    model.train()
    meta = {"train": asdict(cfg), "data": data_info or {}, "step": start, "history": history}
    t0, window = time.perf_counter(), []
    bar = tqdm(range(start, cfg.steps), desc="student", unit="step", disable=not progress,
               initial=start, total=cfg.steps)
    for step in bar:
        rng = np.random.default_rng([cfg.seed, step])
        idx = rng.choice(n, cfg.batch_size, replace=False)
        hq = faces[idx].to(device).float() / 255.0
        lq = degrader(hq, seed=cfg.seed, indices=idx.tolist(), epoch=step).lq_full.to(device)
        clean = torch.from_numpy(rng.random(cfg.batch_size) < cfg.clean_fraction).to(device)
        x = torch.where(clean[:, None, None, None], hq, lq)
        parse_half, heat_logits = model.forward_half(x)
        half = heat_logits.shape[-1]
        pts = points_t[idx].to(device)
        target = heatmaps((pts + 0.5) * (half / size) - 0.5, half, cfg.sigma * half / size).flatten(2)
        target = target / target.sum(-1, keepdim=True).clamp(min=1e-12)
        logits = F.interpolate(parse_half, size=(size, size), mode="bilinear", align_corners=False)
        loss_parse = F.cross_entropy(logits, parsing_all[idx].to(device).long())
        loss_heat = -(target * torch.log_softmax(heat_logits.flatten(2), -1)).sum(-1).mean()
        coords = model.soft_argmax(heat_logits, (size, size))
        loss_coord = (coords - pts).abs().mean() / size
        loss = loss_parse + cfg.heat_weight * loss_heat + cfg.coord_weight * loss_coord
        for g in optimizer.param_groups:
            g["lr"] = _lr_at(step, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        window.append([loss.item(), loss_parse.item(), loss_heat.item(), loss_coord.item() * size])
        bar.set_postfix(loss=f"{loss.item():.3f}", px=f"{loss_coord.item() * size:.2f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            mean = np.mean(window, 0).tolist()
            history.append([done] + [round(v, 5) for v in mean])
            window = []
            meta.update(step=done, history=history, seconds=meta.get("seconds", 0.0) + time.perf_counter() - t0)
            t0 = time.perf_counter()
            save_checkpoint(out, model, optimizer, meta)
            report(f"step {done}: loss {mean[0]:.4f} (parsing CE {mean[1]:.4f}, heatmap CE {mean[2]:.3f}, "
                   f"landmark L1 {mean[3]:.2f} px)")
    bar.close()
    return out
