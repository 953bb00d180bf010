"""The metrics an evaluation reports, on top of `frsengine.metrics` (nothing is re-implemented
here): PSNR, SSIM, MS-SSIM (RGB, or BT.601 luma with y_channel) and the dlib identity distance.

MS-SSIM (5 scales, pytorch-msssim's definition) uses an 11x11 Gaussian window on faces above
160 px and a 7x7 one on faces of 97 to 160 px — the default 128 px —, as `frsengine.metrics.ms_ssim`
does; the window is recorded with the metric (results.json) and in a note of results.md.
A metric that cannot score the set's faces (MS-SSIM below 97 px; dlib missing) is left out of the
tables and the reason recorded."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Metric:
    name: str             # key in results.json
    label: str            # column header
    higher_is_better: bool
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # (restored, gt) -> (N,)
    note: str = ""        # a line for the notes of results.md ("" = none)
    info: dict = field(default_factory=dict)  # how it was computed, kept with the metric in results.json

    def row(self) -> dict:
        """The metric's entry in results.json's "metrics"."""
        out = {"name": self.name, "label": self.label, "higher_is_better": self.higher_is_better}
        if self.info:
            out["info"] = dict(self.info)
        if self.note:
            out["note"] = self.note
        return out


def full_reference_metrics(y_channel: bool = False, size: int | None = None) -> list[Metric]:
    """PSNR, SSIM, MS-SSIM. With `size` (the side of the set's square faces), MS-SSIM is fixed to
    the window `ms_ssim_window(size, size)` picks and says which (info, note); at sizes no window
    fits (<= 96 px) it is left to raise, and check_size leaves it out."""
    from frsengine.errors import FrsError
    from frsengine.metrics import ms_ssim, ms_ssim_window, psnr, ssim
    from frsengine.metrics.full_reference import MS_SSIM_WEIGHTS, WIN_SIGMA

    suffix = " (Y)" if y_channel else ""
    win = None
    if size is not None:
        try:
            win = ms_ssim_window(size, size)
        except FrsError:
            pass
    ms = Metric("ms_ssim", f"MS-SSIM{suffix}", True,
                lambda x, y: ms_ssim(x, y, y_channel=y_channel, win_size=win))
    if win is not None:
        scales = len(MS_SSIM_WEIGHTS)
        ms.info = {"scales": scales, "weights": list(MS_SSIM_WEIGHTS), "win_size": win, "win_sigma": WIN_SIGMA,
                   "size": int(size), "definition": f"pytorch_msssim.ms_ssim(win_size={win})"}
        ms.note = (f"{ms.label}: {scales} scales, {win}x{win} Gaussian window at {size} px (σ = {WIN_SIGMA}, "
                   f"as pytorch-msssim's ms_ssim(win_size={win}); "
                   + ("its default 11x11 window needs sides above 160 px)" if win != 11 else "its default)"))
    return [
        Metric("psnr", f"PSNR{suffix}", True, lambda x, y: psnr(x, y, y_channel=y_channel)),
        Metric("ssim", f"SSIM{suffix}", True, lambda x, y: ssim(x, y, y_channel=y_channel)),
        ms,
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
