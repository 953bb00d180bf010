"""Component dictionary (DFDNet-like): k-means atoms of HQ component features, looked up by
soft nearest-atom attention and pasted back at the component boxes.

Encoder: :class:`ComponentEncoder`, a fixed, seeded random convolution stack (3x3 stride-2
conv, ReLU, 3x3 stride-2 conv, ReLU; He-normal weights from a seeded generator, no training).
Why not a trained one: the dictionary must be reproducible from (seed, data) with no training
run to schedule or resume, random ReLU convolutions keep local structure well enough for
k-means to group crops by appearance, and MFPSNet's dictionary prior module is trained on top
of these features anyway. The weights are stored in the dictionary file, so a lookup never
depends on a random-number generator's implementation.

Lookup (:class:`DictionaryLookup`), all batched tensor ops with no roi_align: crop each
component of the (first-pass restored) face with a sampling grid built from the box (no
affine_grid), encode it, cosine similarity to the component's atoms, softmax over atoms at
temperature tau, weighted sum of atoms, optional AdaIN to the crop's channel statistics (as
DFDNet), and paste back at the box with grid_sample into a (B, C, H, W) map (zero outside the
boxes, averaged where boxes overlap). Differentiable in the image and the boxes; exports to
ONNX (opset 17).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from frsengine.errors import FrsError
from frsengine.priors.rasterize import COMPONENTS


@dataclass(frozen=True)
class DictionaryConfig:
    channels: int = 64        # feature channels (the MFPSNet dictionary prior's input width)
    hidden: int = 32          # channels of the encoder's first conv
    crop: int = 32            # component crops are resampled to crop x crop pixels
    atoms: int = 64           # K, k-means atoms per component
    temperature: float = 0.05  # softmax temperature of the cosine-similarity attention
    adain: bool = True        # re-normalise the looked-up features to the crop's statistics
    seed: int = 0
    kmeans_iters: int = 30

    @property
    def feat(self) -> int:
        return self.crop // 4


class ComponentEncoder(nn.Module):
    """Fixed random features: conv3x3/2 -> ReLU -> conv3x3/2 -> ReLU, inputs in [0, 1]."""

    def __init__(self, channels: int = 64, hidden: int = 32, seed: int | None = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, hidden, 3, 2, 1)
        self.conv2 = nn.Conv2d(hidden, channels, 3, 2, 1)
        if seed is not None:
            g = torch.Generator().manual_seed(seed)
            for conv in (self.conv1, self.conv2):
                fan_in = conv.in_channels * 9
                conv.weight.data = torch.randn(conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
                conv.bias.data.zero_()
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        return F.relu(self.conv2(F.relu(self.conv1(x))))


def crop_grid(boxes: torch.Tensor, crop: int, height: int, width: int) -> torch.Tensor:
    """(..., 3) boxes (cx, cy, side) in pixels -> (..., crop, crop, 2) grid_sample grid
    (align_corners=False) that resamples the box to crop x crop."""
    steps = (torch.arange(crop, dtype=boxes.dtype, device=boxes.device) + 0.5) / crop - 0.5  # (-0.5, 0.5)
    cx, cy, side = boxes[..., 0:1], boxes[..., 1:2], boxes[..., 2:3]
    xs = cx + steps * side  # (..., crop)
    ys = cy + steps * side
    u = (2 * xs + 1) / width - 1
    v = (2 * ys + 1) / height - 1
    return torch.stack([u[..., None, :].expand(*u.shape[:-1], crop, crop),
                        v[..., :, None].expand(*v.shape[:-1], crop, crop)], -1)


def crop_components(images: torch.Tensor, boxes: torch.Tensor, crop: int) -> torch.Tensor:
    """(B, 3, H, W) images, (B, N, 3) boxes -> (B, N, 3, crop, crop) bilinear crops (border
    pixels repeated outside the image)."""
    b, c, h, w = images.shape
    n = boxes.shape[1]
    grid = crop_grid(boxes, crop, h, w).reshape(b, n * crop, crop, 2)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, c, n, crop, crop).permute(0, 2, 1, 3, 4)


def paste_grid(boxes: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3) boxes -> the (B, H, W, 2) grid that reads a box-aligned map back at image pixels,
    and the (B, 1, H, W) mask of the pixels inside the box."""
    xs = torch.arange(width, dtype=boxes.dtype, device=boxes.device)
    ys = torch.arange(height, dtype=boxes.dtype, device=boxes.device)
    u = 2 * (xs - boxes[:, 0:1]) / boxes[:, 2:3]  # (B, W), +-1 at the box edges
    v = 2 * (ys - boxes[:, 1:2]) / boxes[:, 2:3]  # (B, H)
    grid = torch.stack([u[:, None, :].expand(-1, height, -1), v[:, :, None].expand(-1, -1, width)], -1)
    inside = ((u.abs() <= 1).to(boxes.dtype)[:, None, :] * (v.abs() <= 1).to(boxes.dtype)[:, :, None])
    return grid, inside[:, None]


class DictionaryLookup(nn.Module):
    """Image + component boxes -> dictionary feature map (see the module docstring).

    forward(images (B, 3, H, W) in [0, 1], boxes (B, 4, 3) (cx, cy, side) in pixels, in
    COMPONENTS order) -> (B, C, H, W).
    """

    def __init__(self, atoms: torch.Tensor, config: DictionaryConfig, encoder: ComponentEncoder | None = None):
        super().__init__()
        n, k, c, s, s2 = atoms.shape
        if n != len(COMPONENTS) or c != config.channels or s != config.feat or s2 != s:
            raise FrsError(f"atoms of shape {tuple(atoms.shape)} do not match the dictionary settings "
                           f"({len(COMPONENTS)}, K, {config.channels}, {config.feat}, {config.feat})")
        self.config = config
        self.encoder = encoder or ComponentEncoder(config.channels, config.hidden, config.seed)
        self.register_buffer("atoms", atoms.float())
        self.register_buffer("keys", F.normalize(atoms.float().reshape(n, k, -1), dim=-1))

    def attention(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, N, C, s, s) features -> (B, N, K) softmax weights over each component's atoms."""
        q = F.normalize(feats.flatten(2), dim=-1)
        sim = torch.einsum("bnd,nkd->bnk", q, self.keys)
        return torch.softmax(sim / self.config.temperature, dim=-1)

    def component_features(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Looked-up (B, N, C, s, s) features and the (B, N, K) attention."""
        b = images.shape[0]
        n, k, c, s, _ = self.atoms.shape
        crops = crop_components(images, boxes, self.config.crop)              # (B, N, 3, S, S)
        feats = self.encoder(crops.reshape(b * n, 3, self.config.crop, self.config.crop)).reshape(b, n, c, s, s)
        attn = self.attention(feats)
        out = torch.einsum("bnk,nkd->bnd", attn, self.atoms.reshape(n, k, -1)).reshape(b, n, c, s, s)
        if self.config.adain:
            mu_o, sd_o = out.mean((-1, -2), keepdim=True), out.std((-1, -2), keepdim=True)
            mu_f, sd_f = feats.mean((-1, -2), keepdim=True), feats.std((-1, -2), keepdim=True)
            out = (out - mu_o) / (sd_o + 1e-5) * sd_f + mu_f
        return out, attn

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        feats, _ = self.component_features(images, boxes)
        total = torch.zeros(images.shape[0], feats.shape[2], h, w, dtype=feats.dtype, device=feats.device)
        cover = torch.zeros(images.shape[0], 1, h, w, dtype=feats.dtype, device=feats.device)
        for i in range(len(COMPONENTS)):
            grid, inside = paste_grid(boxes[:, i], h, w)
            total = total + F.grid_sample(feats[:, i], grid, mode="bilinear", padding_mode="border",
                                          align_corners=False) * inside
            cover = cover + inside
        return total / cover.clamp(min=1.0)


# ----------------------------------------------------------------------------- building


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded k-means++ then Lloyd iterations on (N, D) rows. Returns (centroids (k, D),
    assignment (N,)). An empty cluster is re-seeded at the row farthest from its centroid."""
    n = x.shape[0]
    if n < k:
        raise FrsError(f"k-means needs at least K={k} samples, got {n}: use more faces or a smaller --atoms")
    g = torch.Generator().manual_seed(seed)
    x = x.float()
    sq = (x * x).sum(1)
    centres = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    d2 = (sq - 2 * x @ centres[0] + centres[0] @ centres[0]).clamp(min=0)
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        c = x[torch.multinomial(probs, 1, generator=g)].squeeze(0)
        centres.append(c)
        d2 = torch.minimum(d2, (sq - 2 * x @ c + c @ c).clamp(min=0))
    cent = torch.stack(centres)
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        dist = sq[:, None] - 2 * x @ cent.T + (cent * cent).sum(1)[None]
        assign = dist.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        new = sums / counts.clamp(min=1)[:, None].float()
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = dist.gather(1, assign[:, None]).squeeze(1).topk(len(empty)).indices
            new[empty] = x[far]
        if torch.allclose(new, cent):
            cent = new
            break
        cent = new
    dist = sq[:, None] - 2 * x @ cent.T + (cent * cent).sum(1)[None]
    return cent, dist.argmin(1)


@torch.no_grad()
def build_dictionary(images: torch.Tensor, boxes: torch.Tensor, config: DictionaryConfig,
                     batch_size: int = 256, progress=None) -> dict[str, torch.Tensor]:
    """Atoms from HQ faces: (M, 3, H, W) float images in [0, 1] (or uint8) and (M, 4, 3) boxes.

    Spherical k-means (on L2-normalised features, matching the cosine lookup); an atom is the
    mean of its members' features. Also keeps, per atom, the member crop nearest to it
    (`medoid`, uint8, for pictures) and its member count. Returns the tensors to save."""
    encoder = ComponentEncoder(config.channels, config.hidden, config.seed)
    n_comp, s = len(COMPONENTS), config.feat
    feats, crops = [], []
    for start in range(0, images.shape[0], batch_size):
        img = images[start:start + batch_size]
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        cr = crop_components(img, boxes[start:start + batch_size].float(), config.crop)
        b = cr.shape[0]
        f = encoder(cr.reshape(b * n_comp, 3, config.crop, config.crop)).reshape(b, n_comp, -1)
        feats.append(f)
        crops.append((cr * 255).round().clamp(0, 255).to(torch.uint8))
        if progress is not None:
            progress(b)
    feats_all, crops_all = torch.cat(feats), torch.cat(crops)
    out: dict[str, torch.Tensor] = {}
    for i, name in enumerate(COMPONENTS):
        f = feats_all[:, i]
        unit = F.normalize(f, dim=-1)
        _, assign = kmeans(unit, config.atoms, config.kmeans_iters, config.seed + i)
        counts = torch.bincount(assign, minlength=config.atoms)
        atoms = torch.zeros(config.atoms, f.shape[1]).index_add_(0, assign, f) / counts.clamp(min=1)[:, None]
        sim = unit @ F.normalize(atoms, dim=-1).T
        sim = torch.where(assign[:, None] == torch.arange(config.atoms)[None], sim, torch.full_like(sim, -2.0))
        medoid = sim.argmax(0)
        out[f"atoms.{name}"] = atoms.reshape(config.atoms, config.channels, s, s).contiguous()
        out[f"counts.{name}"] = counts
        out[f"medoid.{name}"] = crops_all[medoid, i].contiguous()
    for key, value in encoder.state_dict().items():
        out[f"encoder.{key}"] = value.contiguous()
    return out


def save_dictionary(path: str | os.PathLike, tensors: dict[str, torch.Tensor], config: DictionaryConfig,
                    info: dict | None = None) -> Path:
    """Write the dictionary as safetensors with the settings as JSON metadata (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "frsengine.priors.dictionary/1", "config": json.dumps(asdict(config)),
            "components": json.dumps(list(COMPONENTS)), "info": json.dumps(info or {})}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_dictionary(path: str | os.PathLike) -> tuple[DictionaryLookup, dict[str, torch.Tensor], dict]:
    """(lookup module, all stored tensors, info) from a dictionary file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FrsError(f"dictionary '{path}' does not exist: build one with `frsengine priors build`")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise FrsError(f"'{path}' is not a safetensors file ({exc}): rebuild it with `frsengine priors build`") from None
    if meta.get("format") != "frsengine.priors.dictionary/1":
        raise FrsError(f"'{path}' is not an frsengine component dictionary: rebuild it with `frsengine priors build`")
    config = DictionaryConfig(**json.loads(meta["config"]))
    encoder = ComponentEncoder(config.channels, config.hidden, seed=None)
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")})
    atoms = torch.stack([tensors[f"atoms.{name}"] for name in COMPONENTS])
    return DictionaryLookup(atoms, config, encoder), tensors, json.loads(meta.get("info", "{}"))
