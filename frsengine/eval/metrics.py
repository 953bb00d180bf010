"""The metrics an evaluation reports, on top of `frsengine.metrics` (nothing is re-implemented
here): PSNR, SSIM, MS-SSIM (RGB, or BT.601 luma with y_channel) and the dlib identity distance.

A metric that cannot score the set's faces (MS-SSIM needs sides above 160 px; dlib missing) is
left out of the tables and the reason recorded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Metric:
    name: str             # key in results.json
    label: str            # column header
    higher_is_better: bool
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # (restored, gt) -> (N,)
    note: str = ""


def full_reference_metrics(y_channel: bool = False) -> list[Metric]:
    from frsengine.metrics import ms_ssim, psnr, ssim

    suffix = " (Y)" if y_channel else ""
    return [
        Metric("psnr", f"PSNR{suffix}", True, lambda x, y: psnr(x, y, y_channel=y_channel)),
        Metric("ssim", f"SSIM{suffix}", True, lambda x, y: ssim(x, y, y_channel=y_channel)),
        Metric("ms_ssim", f"MS-SSIM{suffix}", True, lambda x, y: ms_ssim(x, y, y_channel=y_channel)),
    ]


def check_size(metrics: list[Metric], size: int) -> tuple[list[Metric], dict[str, str]]:
    """The metrics that can score size x size faces, and {name: why not} for the others."""
    from frsengine.errors import FrsError

    probe = torch.full((1, 3, size, size), 0.5)
    kept, omitted = [], {}
    for m in metrics:
        try:
            m.fn(probe, probe)
        except FrsError as exc:
            omitted[m.name] = str(exc)
        else:
            kept.append(m)
    return kept, omitted


class IdentityScorer:
    """dlib descriptor distance between each restored face and its ground truth, as
    `frsengine.metrics.identity.identity_distance` computes it; the ground truth's descriptors
    are computed once per chunk of the set (the HQ faces are the same for every task)."""

    name, label, higher_is_better = "identity", "ID dist.", False

    def __init__(self):
        from frsengine.metrics.identity import face_descriptors

        self._describe = face_descriptors
        self._gt: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, restored: torch.Tensor, gt: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(distances (n,), no-face flags (n, 2) for (restored, gt)) of the chunk of the set that
        begins at face `start`."""
        if start not in self._gt:
            self._gt[start] = self._describe(gt)
        gt_desc, gt_fallback = self._gt[start]
        desc, fallback = self._describe(restored)
        return (desc - gt_desc).norm(dim=1), torch.stack([fallback, gt_fallback], 1)


def identity_scorer() -> tuple[IdentityScorer | None, str]:
    """(scorer, "") or (None, why the identity column is left out)."""
    from frsengine.errors import FrsError

    try:
        scorer = IdentityScorer()
        from frsengine.face.dlib_models import face_descriptor_model

        face_descriptor_model()  # the model file must be there
    except ImportError as exc:
        return None, f"identity distance left out: {exc}"
    except FrsError as exc:
        return None, f"identity distance left out: {exc}"
    return scorer, ""
