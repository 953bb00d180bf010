"""ONNX export of the prior modules (student network, dictionary lookup), batch axis dynamic."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from frsengine.errors import MissingDependencyError

OPSET = 17  # grid_sample needs 16+


def export_onnx(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: str | os.PathLike,
                input_names: list[str], output_names: list[str], opset: int = OPSET) -> Path:
    """Export `module` (in eval mode) with the TorchScript-based exporter; every input's and
    output's first axis is the dynamic batch axis."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingDependencyError("onnx", "ONNX export") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    axes = {name: {0: "batch"} for name in [*input_names, *output_names]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    return path
