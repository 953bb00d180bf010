"""The methods an evaluation compares: the baselines and the model packages given.

A package that cannot be read is an error (one line). An MFPSNet package runs only with a prior
function: `student` + `dictionary` (the files `frsengine priors train` / `priors build` write)
make one (`PriorNetwork.mfpsnet_priors`); without them the model is skipped and the reason
recorded in the results.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

LQ_INPUT = "LQ input"
# What the baselines are, as results.json states it.
BASELINES = {
    LQ_INPUT: "the degraded face itself, unchanged (the identity)",
    "bicubic": "the sr task's LQ input: the down-sampled face (r in the preset's range, stored as uint8) "
               "resized back by bicubic interpolation; the other tasks do not change the size, so "
               "bicubic there is the identity, i.e. the LQ input row",
}


@dataclass
class Method:
    """One row of the tables."""

    label: str
    kind: str                      # "baseline" or "model"
    path: str | None = None        # package path for models
    restorer: Any = None           # frsengine.api.Restorer
    info: dict = field(default_factory=dict)
    skipped: str | None = None     # why the model was not evaluated

    @property
    def runnable(self) -> bool:
        return self.skipped is None


def unique_labels(paths: list[str], names: list[str] | None = None) -> list[str]:
    """Row labels: the given names, else the package folder/file name (suffix dropped);
    clashes get ' (2)', ' (3)'."""
    base = list(names) if names else [Path(os.path.normpath(p)).name.removesuffix(".safetensors") or str(p)
                                      for p in paths]
    labels, seen = [], {LQ_INPUT.lower(): 1, "gt": 1}
    for b in base:
        label, n = b, seen.get(b.lower(), 0)
        if n:
            label = f"{b} ({n + 1})"
        seen[b.lower()] = n + 1
        labels.append(label)
    return labels


def make_prior_fn(student: str | os.PathLike | None, dictionary: str | os.PathLike | None) -> Callable | None:
    """MFPSNet's prior function from a student checkpoint and a component dictionary, or None
    when neither is given (one without the other is an error)."""
    from frsengine.errors import FrsError

    if student is None and dictionary is None:
        return None
    if student is None or dictionary is None:
        raise FrsError("MFPSNet priors need both --student (frsengine priors train) and --dictionary "
                       "(frsengine priors build)")
    from frsengine.priors.dictionary import load_dictionary
    from frsengine.priors.module import PriorNetwork
    from frsengine.priors.train import load_checkpoint

    net, _, _ = load_checkpoint(student)
    lookup, _, _ = load_dictionary(dictionary)
    prior = PriorNetwork(net, lookup).eval()
    return prior.mfpsnet_priors


def prior_mismatch(package, prior_fn: Callable) -> str:
    """Why `prior_fn`'s maps do not fit the MFPSNet package's priors ("" when they do): the
    channels of each prior the package was built for, checked on one blank face."""
    import torch

    h, w = package.input_size
    with torch.no_grad():
        maps = prior_fn(torch.zeros(1, 3, h, w))
    wrong = []
    for p in package.meta.get("priors", []):
        got = maps.get(p["name"]) if isinstance(maps, dict) else None
        if got is None:
            wrong.append(f"{p['name']}: missing")
        elif tuple(got.shape[1:]) != (p["channels"], h, w):
            wrong.append(f"{p['name']}: {got.shape[1]} channels at {got.shape[-1]}x{got.shape[-2]}, "
                         f"the package wants {p['channels']} at {w}x{h}")
    if not wrong:
        return ""
    return ("the priors (--student/--dictionary) do not fit this MFPSNet package (" + "; ".join(wrong)
            + "): use priors of the sizes it was trained with")


def load_methods(models: list[str | os.PathLike], *, names: list[str] | None = None, backend: str = "auto",
                 device=None, precision: str | None = None, batch_size: int = 16,
                 prior_fn: Callable | None = None) -> list[Method]:
    """The baseline row and one row per package (loaded now, so that a bad package fails before
    any work). Unreadable packages raise the package loader's one-line error."""
    from frsengine.api import Restorer
    from frsengine.errors import FrsError
    from frsengine.export.package import load_package

    if names is not None and len(names) != len(models):
        raise FrsError(f"{len(names)} --names for {len(models)} --models: give one name per model")
    paths = [str(m) for m in models]
    methods = [Method(LQ_INPUT, "baseline", info={"what": BASELINES[LQ_INPUT]})]
    for label, path in zip(unique_labels(paths, names), paths):
        package = load_package(path)
        info = {"path": path, "network": package.network, "preset": package.preset,
                "input_size": list(package.input_size), "genotype_sha256": package.genotype_hash,
                "weights_sha256": package.weights_hash,
                "training_data": package.meta.get("training_data", "not stated")}
        method = Method(label, "model", path=path, info=info)
        if package.network == "mfpsnet" and prior_fn is None:
            method.skipped = ("MFPSNet package without priors: pass --student and --dictionary "
                              "(frsengine priors train / build) to evaluate it")
        elif package.network == "mfpsnet" and (why := prior_mismatch(package, prior_fn)):
            method.skipped = why
        else:
            method.restorer = Restorer(package, backend=backend, device=device, precision=precision,
                                       batch_size=batch_size,
                                       prior_fn=prior_fn if package.network == "mfpsnet" else None)
            info["backend"] = method.restorer.backend.describe()
        methods.append(method)
    return methods
