"""ONNX export of a derived FRSNet with a dynamic batch axis, and its check against torch.

The exported graph is the BN-folded network (``frsengine.models.fold_bn``): Conv (+bias), ReLU /
LeakyReLU, pixel (un)shuffle, resizes and adds — standard ONNX ops, no plugin. Input ``lq`` and
output ``restored`` are float32 (N, 3, H, W) in [0, 1]; N is dynamic, H and W are the package's
input size. MFPSNet is not exported: its priors are computed by a Python callable (see
``frsengine.api``), which has no ONNX form yet.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from frsengine.errors import FrsError, MissingDependencyError
from frsengine.io import write_bytes_atomic

INPUT_NAME, OUTPUT_NAME = "lq", "restored"
OPSET = 18
MAX_BATCH = 4096


def _quiet():
    """Silence the exporter's progress lines and warnings (it prints to stdout)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    # "torchvision is not installed. Skipping torchvision::nms" and the like
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    stack.callback(registration.setLevel, level)
    return stack


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: tuple[int, int] = (128, 128),
                opset: int = OPSET) -> Path:
    """Export ``model`` (a derived FRSNet, folded or not: it is folded on a copy) to ``path``
    with a dynamic batch axis. Written atomically; returns the path."""
    import copy

    from frsengine.models import fold_bn

    if getattr(model, "network_name", None) == "mfpsnet":
        raise FrsError("ONNX export of MFPSNet is not supported yet (its priors come from a Python "
                       "function): use the torch or compile backend, or export an FRSNet package")
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "onnx", "ONNX export", "onnx onnxscript") from None
    net = fold_bn(copy.deepcopy(model).cpu().float()).eval()
    h, w = input_size
    example = (torch.rand(2, net.cfg.in_channels, h, w),)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with _quiet():
        program = torch.onnx.export(net, example, None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    opset_version=opset, dynamo=True, dynamic_shapes=({0: batch},),
                                    external_data=False, verbose=False)
    data = program.model_proto.SerializeToString()
    return write_bytes_atomic(path, data)


def ort_session(path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None):
    """An onnxruntime session for ``path`` with every graph optimisation on."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "the onnxruntime backend") from None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads if threads is not None else torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])


@dataclass
class OnnxCheck:
    max_abs_error: float
    batch_sizes: tuple[int, ...]

    def __str__(self) -> str:
        sizes = "/".join(map(str, self.batch_sizes))
        return f"onnxruntime vs torch: max abs error {self.max_abs_error:.2e} (batch {sizes})"


@torch.no_grad()
def check_onnx(path: str | os.PathLike, model: nn.Module, input_size: tuple[int, int],
               batch_sizes: tuple[int, ...] = (1, 3), seed: int = 0) -> OnnxCheck:
    """Run the ONNX file with onnxruntime and ``model`` (eval) with torch on the same random
    batches; return the largest absolute difference of the outputs."""
    session = ort_session(path)
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in batch_sizes:
        x = torch.rand(n, model.cfg.in_channels, *input_size, generator=gen)
        ref = model(x).numpy()
        out = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if out.shape != ref.shape:
            raise FrsError(f"{path}: ONNX output shape {out.shape} differs from torch's {ref.shape}")
        worst = max(worst, float(np.abs(out - ref).max()))
    return OnnxCheck(worst, tuple(batch_sizes))


def cached_onnx(package, root: Path | None = None, tolerance: float = 1e-3) -> Path:
    """The package's ONNX export in the cache (``root`` or ``frsengine.export.tensorrt.cache_dir()``),
    exported and checked against torch on first use; keyed by genotype and weights hashes, input
    size, opset and torch version."""
    from frsengine.export.tensorrt import cache_dir

    h, w = package.input_size
    exporter = f"op{OPSET}-torch{torch.__version__.split('+')[0]}"  # a new exporter re-exports
    path = (root or cache_dir()) / "onnx" / f"{package.genotype_hash[:16]}-{package.weights_hash[:16]}-{h}x{w}-{exporter}.onnx"
    if not path.is_file():
        logging.getLogger("frsengine").info(f"exporting {package.path} to ONNX (first use; cached as {path})")
        model = package.build()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.unchecked")  # processes may export at once
        export_onnx(model, tmp, (h, w))
        check = check_onnx(tmp, model, (h, w), batch_sizes=(1, 2))
        if check.max_abs_error > tolerance:
            tmp.unlink()
            raise FrsError(f"the ONNX export of {package.path} differs from torch ({check}): use backend='torch'")
        tmp.replace(path)
    return path
