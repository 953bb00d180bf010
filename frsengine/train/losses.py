"""The restoration loss of Eq. 9: L1 + lambda_per * L1 between VGG-19 features.

VGG-19 is defined here (no torchvision) with torchvision's layer numbering, so its weights load
from a safetensors file holding torchvision's ``features.N.weight`` / ``features.N.bias`` tensors
(convert once elsewhere with ``safetensors.torch.save_file({k: v for k, v in
vgg19(weights=...).state_dict().items() if k.startswith('features.')}, 'vgg19.safetensors')``).
Nothing is downloaded: without a weights file the perceptual term is off, and the run says so once.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from frsengine.errors import FrsError

log = logging.getLogger("frsengine.train")

# Output channels per conv, 'M' = max-pool: VGG-19 ("E") as torchvision numbers its `features`.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    """torchvision index -> BasicSR-style name (conv1_1, relu1_1, pool1, ...)."""
    names, block, conv = [], 1, 1
    for v in _VGG19:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYERS = tuple(_layer_names())


class VGG19Features(nn.Module):
    """VGG-19 ``features`` up to ``layer`` (a name from VGG19_LAYERS, e.g. 'conv5_4', taken before
    its ReLU as BasicSR's perceptual loss does); input RGB in [0, 1], ImageNet-normalised inside."""

    def __init__(self, layer: str = "conv5_4"):
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise FrsError(f"unknown VGG-19 layer '{layer}' (known: {', '.join(VGG19_LAYERS)})")
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG19:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers[:VGG19_LAYERS.index(layer) + 1])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def load_vgg19(path: str | os.PathLike, layer: str = "conv5_4") -> VGG19Features:
    """VGG19Features with weights from a safetensors file of torchvision-named tensors (frozen, eval)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FrsError(f"VGG-19 weights '{path}' do not exist: give loss.vgg_weights a safetensors file "
                       "of torchvision's vgg19 'features.*' tensors, or set it to null to train without "
                       "the perceptual term")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise FrsError(f"'{path}' is not a safetensors file ({exc}): convert the VGG-19 weights to "
                       "safetensors (see frsengine.train.losses)") from None
    net = VGG19Features(layer)
    want = net.features.state_dict()
    prefixed = {f"features.{k}": v for k, v in want.items()}
    missing = [k for k in prefixed if k not in state]
    if missing:
        raise FrsError(f"'{path}' lacks {len(missing)} VGG-19 tensors (e.g. {missing[0]}): is it torchvision's "
                       "vgg19 (not vgg16 / vgg19_bn)?")
    for k, v in prefixed.items():
        if state[k].shape != v.shape:
            raise FrsError(f"'{path}': {k} has shape {tuple(state[k].shape)}, VGG-19 needs {tuple(v.shape)}")
    net.features.load_state_dict({k: state[f"features.{k}"] for k in want})
    net.requires_grad_(False)
    return net.eval()


class RestorationLoss(nn.Module):
    """Eq. 9 summed over a model's outputs (MFPSNet's two passes; FRSNet's one):
    ``sum_k l1 * |y_k - gt|_1 + perceptual * |phi(y_k) - phi(gt)|_1``."""

    def __init__(self, l1: float = 1.0, perceptual: float = 0.0, vgg: VGG19Features | None = None):
        super().__init__()
        self.l1, self.perceptual = float(l1), float(perceptual)
        self.vgg = vgg if self.perceptual > 0 else None

    @classmethod
    def from_config(cls, cfg) -> "RestorationLoss":
        """From a LossConfig; logs once when the perceptual term is off for lack of weights."""
        if cfg.perceptual > 0 and not cfg.vgg_weights:
            log.warning("perceptual loss is off: no VGG-19 weights given (loss.vgg_weights); "
                        "training with L1 only")
            return cls(cfg.l1, 0.0)
        vgg = load_vgg19(cfg.vgg_weights, cfg.vgg_layer) if cfg.perceptual > 0 else None
        return cls(cfg.l1, cfg.perceptual, vgg)

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outputs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        loss = sum(self.l1 * F.l1_loss(y, target) for y in outputs)
        if self.vgg is not None:
            with torch.no_grad():
                ft = self.vgg(target)
            loss = loss + sum(self.perceptual * F.l1_loss(self.vgg(y), ft) for y in outputs)
        return loss
