"""LPIPS (Zhang et al. 2018) with VGG16 or AlexNet features, from a weights file the user supplies.

frsengine does not download the ImageNet backbones nor the learned linear layers. The network is
defined here with the tensor names of the reference package's ``lpips.LPIPS(net=...).state_dict()``,
so one line converts it (see docs/metrics.md):

    save_file(lpips.LPIPS(net="vgg").state_dict(), "lpips_vgg.safetensors")

Names: ``net.sliceK.I.weight`` / ``.bias`` for conv layer I of torchvision's ``features`` in slice K,
``linK.model.1.weight`` (1, C_K, 1, 1) for the linear layers, optionally ``scaling_layer.shift`` /
``.scale`` (fixed constants) and ``lins.K.model.1.weight`` (the reference lists each linear layer
twice; the copy is ignored). The distance: both images scaled to [-1, 1] and normalised per
channel, features at 5 depths unit-normalised along channels, squared differences weighted by the
non-negative linear layers, averaged over space and summed over depths; 0 for identical images.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn as nn

from frsengine.errors import FrsError
from frsengine.metrics.weights import user_weights
from frsengine.metrics.full_reference import MetricInputError

ENV_VAR = "FRSENGINE_LPIPS_WEIGHTS"
MIN_SIDE = 32
# Per-slice layers of torchvision's vgg16().features / alexnet().features, by their index there:
# ("conv", index, in, out, kernel, stride, padding), ("relu",), ("pool", kernel, stride).
_VGG = [
    [("conv", 0, 3, 64), ("conv", 2, 64, 64)],
    [("pool",), ("conv", 5, 64, 128), ("conv", 7, 128, 128)],
    [("pool",), ("conv", 10, 128, 256), ("conv", 12, 256, 256), ("conv", 14, 256, 256)],
    [("pool",), ("conv", 17, 256, 512), ("conv", 19, 512, 512), ("conv", 21, 512, 512)],
    [("pool",), ("conv", 24, 512, 512), ("conv", 26, 512, 512), ("conv", 28, 512, 512)],
]
_ALEX = [
    [("conv", 0, 3, 64, 11, 4, 2)],
    [("pool", 3, 2), ("conv", 3, 64, 192, 5, 1, 2)],
    [("pool", 3, 2), ("conv", 6, 192, 384, 3, 1, 1)],
    [("conv", 8, 384, 256, 3, 1, 1)],
    [("conv", 10, 256, 256, 3, 1, 1)],
]
NETS = {"vgg": _VGG, "alex": _ALEX}


class _Slice(nn.Module):
    """Layers of one slice, registered under their torchvision indices (so names match lpips')."""

    def __init__(self, spec, start: int):
        super().__init__()
        index = start
        for layer in spec:
            if layer[0] == "conv":
                _, at, cin, cout, *ksp = layer
                assert at == index, (at, index)  # the spec's indices are torchvision's
                k, s, p = ksp or (3, 1, 1)
                self.add_module(str(index), nn.Conv2d(cin, cout, k, s, p))
                self.add_module(str(index + 1), nn.ReLU())
                index += 2
            else:
                k, s = layer[1:] or (2, 2)
                self.add_module(str(index), nn.MaxPool2d(k, s))
                index += 1

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x


class _Backbone(nn.Module):
    def __init__(self, spec):
        super().__init__()
        start = 0
        for k, s in enumerate(spec, 1):
            self.add_module(f"slice{k}", _Slice(s, start))
            start += sum(2 if layer[0] == "conv" else 1 for layer in s)

    def forward(self, x) -> list[torch.Tensor]:
        feats = []
        for s in self.children():
            x = s(x)
            feats.append(x)
        return feats


class _ScalingLayer(nn.Module):
    """The reference's fixed per-channel normalisation of [-1, 1] input."""

    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.shift) / self.scale


class _Lin(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        # Index 1: the reference puts a Dropout at 0 (identity at evaluation).
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS distance; ``LPIPS.from_file(path)`` builds and loads one. ``forward(x, y)`` takes
    (N, 3, H, W) RGB in [0, 1] (H, W >= 32) and returns (N,) float32, lower is closer."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {', '.join(NETS)}, got {net!r}")
        self.net_name = net
        self.scaling_layer = _ScalingLayer()
        self.net = _Backbone(NETS[net])
        for k, s in enumerate(NETS[net]):
            self.add_module(f"lin{k}", _Lin([layer for layer in s if layer[0] == "conv"][-1][3]))
        self.requires_grad_(False).eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None, net: str | None = None) -> "LPIPS":
        """Load from a safetensors file (``path``, else ``$FRSENGINE_LPIPS_WEIGHTS``); the net
        is told by the first conv's kernel (11: alex, 3: vgg) unless given."""
        from safetensors.torch import load_file

        path = weights_path(path)
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for foreign or broken files
            raise FrsError(f"LPIPS weights '{path}' are not a readable safetensors file ({exc}): convert "
                           "them as docs/metrics.md shows") from None
        first = state.get("net.slice1.0.weight")
        if net is None:
            net = "alex" if first is not None and first.shape[-1] == 11 else "vgg"
        model = cls(net)
        # The reference's state_dict also lists each linear layer under lins.K (a ModuleList of
        # the same modules); the scaling constants are fixed and may be carried or not.
        renamed = {}
        for k, v in state.items():
            if k.startswith("lins."):
                k = "lin" + k[len("lins."):]
                if k in state:
                    continue
            renamed[k] = v
        state = renamed
        for k in ("scaling_layer.shift", "scaling_layer.scale"):
            state.setdefault(k, model.state_dict()[k])
        expected = model.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            detail = "; ".join(f"{what}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                               for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                  ("wrong shape", wrong)) if keys)
            raise FrsError(f"LPIPS weights '{path}' do not fit LPIPS-{net} ({detail}): save "
                           f"lpips.LPIPS(net='{net}').state_dict() as docs/metrics.md shows")
        model.load_state_dict(state)
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or x.shape != y.shape \
                or x.dim() != 4 or x.shape[1] != 3 or min(x.shape[2:]) < MIN_SIDE or not x.is_floating_point():
            shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (x, y)]
            raise MetricInputError(f"lpips: x and y must be float RGB images (N, 3, H, W) of one shape, in "
                                   f"[0, 1], H and W >= {MIN_SIDE}; got {shapes[0]} and {shapes[1]}")
        n = x.shape[0]
        both = torch.cat([x, y]).to(self.scaling_layer.shift.device, torch.float32)
        feats = self.net(self.scaling_layer(both * 2 - 1))
        total = 0
        for k, f in enumerate(feats):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = (f[:n] - f[n:]).pow(2)
            total = total + getattr(self, f"lin{k}").model(d).mean((1, 2, 3))
        return total


def weights_path(path: str | os.PathLike | None = None) -> Path:
    """The LPIPS weights file: ``path``, else ``$FRSENGINE_LPIPS_WEIGHTS``; a clear error if neither."""
    return user_weights(path, ENV_VAR, "LPIPS", f"LPIPS needs VGG/AlexNet + linear-layer weights, which frsengine cannot "
                        f"download: pass weights=PATH or set {ENV_VAR} to a .safetensors file (docs/metrics.md "
                        "says how to make one from the lpips package)",
                        "check the path, or make the file as docs/metrics.md shows")


@functools.lru_cache(maxsize=2)
def _cached(path: str, mtime: float) -> LPIPS:
    return LPIPS.from_file(path)


def lpips(x: torch.Tensor, y: torch.Tensor, *, weights: str | os.PathLike | None = None) -> torch.Tensor:
    """LPIPS of each (N, 3, H, W) pair in [0, 1], (N,) on x's device; the model is loaded once
    per weights file and moved to x's device."""
    path = weights_path(weights)
    model = _cached(str(path.resolve()), path.stat().st_mtime).to(x.device)
    with torch.no_grad():
        return model(x, y)
