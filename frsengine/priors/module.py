"""The three MFPSNet priors from one face batch, as one torch graph: the student's parsing
probabilities and landmark heatmaps, and the dictionary features looked up at the component
boxes of the student's landmarks."""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import nn

from frsengine.priors.dictionary import DictionaryLookup
from frsengine.priors.rasterize import component_boxes
from frsengine.priors.student import StudentPriorNet


class Priors(NamedTuple):
    parsing: torch.Tensor     # (B, 10, H, W) class probabilities (softmax of the student's logits)
    heatmaps: torch.Tensor    # (B, 68, H, W) Gaussians of peak 1 at the landmarks
    dictionary: torch.Tensor  # (B, C, H, W) looked-up component features, zero off the boxes
    landmarks: torch.Tensor   # (B, 68, 2)
    boxes: torch.Tensor       # (B, 4, 3) component boxes (cx, cy, side)


class PriorNetwork(nn.Module):
    """forward(face (B, 3, H, W) in [0, 1], e.g. the first-pass restoration) -> Priors.
    Gradients reach the face through every prior (the student's weights train or not as the
    caller chooses; the dictionary is frozen). Exports to ONNX as one graph."""

    def __init__(self, student: StudentPriorNet, lookup: DictionaryLookup):
        super().__init__()
        self.student = student
        self.lookup = lookup

    def forward(self, face: torch.Tensor) -> Priors:
        out = self.student(face)
        boxes = component_boxes(out.landmarks)
        return Priors(torch.softmax(out.parsing, 1), out.heatmaps, self.lookup(face, boxes), out.landmarks, boxes)

    def mfpsnet_priors(self, face: torch.Tensor) -> dict[str, torch.Tensor]:
        """The priors keyed as MFPSNet's default ``PriorConfig`` names them: pass
        ``prior_fn=prior_network.mfpsnet_priors`` and pass 2 computes its priors in-graph from pass 1."""
        p = self(face)
        return {"parsing": p.parsing, "heatmap": p.heatmaps, "dictionary": p.dictionary}


def load_prior_network(student: str | os.PathLike, dictionary: str | os.PathLike) -> PriorNetwork:
    """PriorNetwork from a student checkpoint (`frsengine priors train`) and a dictionary file
    (`frsengine priors build`), frozen and in eval mode."""
    from frsengine.priors.dictionary import load_dictionary
    from frsengine.priors.train import load_checkpoint

    model, _, _ = load_checkpoint(student)
    lookup, _, _ = load_dictionary(dictionary)
    net = PriorNetwork(model, lookup).eval()
    net.requires_grad_(False)
    return net
