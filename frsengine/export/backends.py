"""Inference backends: one interface (float32 NCHW faces in [0, 1] in, same out) over

- ``torch``: eager PyTorch, CPU or CUDA; fp32, or fp16/bf16 on CUDA (bf16 also on CPUs with
  AVX512-BF16/AMX, opt-in: it costs accuracy); channels-last memory layout.
- ``compile``: ``torch.compile`` (inductor, weights frozen as constants); batches are padded to the
  batch size so one compiled graph serves every call.
- ``onnxruntime``: the package exported to ONNX (cached), run by onnxruntime's CPU provider.
- ``tensorrt``: a TensorRT engine built from that ONNX file (cached by :class:`EngineKey`), CUDA.

``auto`` picks: on a CUDA device ``tensorrt`` (fp16) when TensorRT imports, else ``torch`` fp16; on
the CPU ``onnxruntime`` for FRSNet packages when onnxruntime/onnx/onnxscript import (falling back to
``torch`` with a warning if the export fails), else ``torch``. Measured on a 2-core Xeon (AMX), one
thread, backends interleaved, batch 32 (8): onnxruntime 1.80x (1.47x) plain eager, eager
channels-last 1.68x (1.31x), compile 2.01x (1.75x) but only after a 25-70 s compile per process and
batch size, which is why auto does not pick it; the ONNX export (~10 s) is cached on disk once.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Callable
import torch
import torch.nn as nn

from frsengine.errors import FrsError
from frsengine.export.package import ModelPackage

BACKENDS = ("torch", "compile", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
log = logging.getLogger("frsengine")
_SAID: set[str] = set()


def say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        log.info(message)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FrsError("device 'cuda' asked for, but torch sees no CUDA device here: use device='cpu'")
    if device.type not in ("cpu", "cuda"):
        raise FrsError(f"device {device} is not supported: use 'cpu' or 'cuda'")
    return device


class Backend:
    """Call with a float32 (N, C, H, W) tensor at the model's size; returns float32 on ``device``."""

    name = "?"

    def __init__(self, device: torch.device, precision: str):
        self.device, self.precision = device, precision

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} ({self.device.type}, {self.precision})"


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32",
                 channels_last: bool = True):
        super().__init__(device, precision)
        if precision == "fp16" and device.type != "cuda":
            raise FrsError("precision fp16 is for CUDA devices; on the CPU use fp32 (or bf16 where the CPU has it)")
        if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
            raise FrsError("this CPU has no bf16 support (AVX512-BF16/AMX) in oneDNN: use fp32")
        self.dtype = _DTYPES[precision]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device, self.dtype, memory_format=self.memory_format).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        return self.forward(x).float().contiguous()


class CompileBackend(TorchBackend):
    name = "compile"

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32", batch_size: int = 16,
                 channels_last: bool = True):
        super().__init__(model, device, precision, channels_last)
        self.batch_size = batch_size
        # freezing: weights become constants, so inductor can pre-pack convolution weights.
        # (CUDA graphs, tried on an H200, made batch-32 fp16 slower in 2 of 2 runs: left off.)
        self.cudagraphs = False
        self.compiled = torch.compile(self.model, dynamic=False, options={"freezing": True})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if n % self.batch_size:  # one static shape: pad instead of recompiling for a short batch
            pad = x[-1:].expand(self.batch_size - n % self.batch_size, *x.shape[1:])
            x = torch.cat([x, pad]).contiguous(memory_format=self.memory_format)
        outs = []
        for i in range(0, x.shape[0], self.batch_size):
            y = self.compiled(x[i:i + self.batch_size])
            outs.append(y.clone() if self.cudagraphs else y)  # the next replay overwrites a graph's output
        return (torch.cat(outs) if len(outs) > 1 else outs[0])[:n]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, package: ModelPackage, device: torch.device, threads: int | None = None):
        if device.type != "cpu":
            raise FrsError("the onnxruntime backend runs on the CPU here: use device='cpu' (or backend "
                           "'tensorrt'/'torch' on the GPU)")
        super().__init__(device, "fp32")
        from frsengine.export.onnx import INPUT_NAME, OUTPUT_NAME, cached_onnx, ort_session

        self.path = cached_onnx(package)
        self.session = ort_session(self.path, threads)
        self.input, self.output = INPUT_NAME, OUTPUT_NAME

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run([self.output], {self.input: x})[0])


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, package: ModelPackage, device: torch.device, precision: str = "fp16",
                 batch_size: int = 16):
        if device.type != "cuda":
            raise FrsError("the tensorrt backend needs a CUDA device: use device='cuda' or another backend")
        if precision not in ("fp32", "fp16"):
            raise FrsError(f"the tensorrt backend builds fp32 or fp16 engines, not {precision}")
        super().__init__(device, precision)
        from frsengine.export.tensorrt import TensorRTRunner, ensure_engine

        self.batch_size = batch_size
        self.engine = ensure_engine(package, precision, 1, batch_size, batch_size)
        self.runner = TensorRTRunner(self.engine)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.runner(x[i:i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(outs) if len(outs) > 1 else outs[0]


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16 or AMX): then bf16 on the CPU is fast."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def onnxruntime_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def make_backend(package: ModelPackage, name: str = "auto", device: str | torch.device | None = None,
                 precision: str | None = None, batch_size: int = 16,
                 wrap: Callable[[nn.Module], nn.Module] | None = None) -> Backend:
    """The backend ``name`` (or the ``auto`` choice) for ``package`` on ``device``. ``wrap``
    turns the built network into what torch backends run (MFPSNet + its prior function)."""
    if name not in ("auto", *BACKENDS):
        raise FrsError(f"unknown backend {name!r}: use one of auto, {', '.join(BACKENDS)}")
    if precision is not None and precision not in PRECISIONS:
        raise FrsError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if name == "onnxruntime" and device is None:
        device = "cpu"
    dev = resolve_device(device)
    auto = name == "auto"
    if package.network == "mfpsnet" and name in ("onnxruntime", "tensorrt"):
        raise FrsError(f"backend {name!r} cannot run MFPSNet packages yet (priors come from a Python "
                       "function): use backend='torch' or 'compile'")
    if auto:
        if dev.type == "cuda":
            name = "tensorrt" if tensorrt_available() and package.network == "frsnet" else "torch"
            precision = precision or "fp16"
        elif package.network == "frsnet" and precision in (None, "fp32") and onnxruntime_available():
            try:
                backend = OnnxRuntimeBackend(package, dev)
            except Exception as exc:  # an export the checker refuses, a missing op...: eager still works
                log.warning(f"backend auto: onnxruntime unavailable for this model ({str(exc).splitlines()[0]}); "
                            "using torch")
            else:
                say_once(f"backend auto: using {backend.describe()}")
                return backend
            name = "torch"
        else:
            name = "torch"
    precision = precision or "fp32"
    if name == "tensorrt" and not tensorrt_available():
        from frsengine.export.tensorrt import import_tensorrt

        import_tensorrt()  # raises the "install tensorrt" error
    if name in ("torch", "compile"):
        model = package.build()
        model = wrap(model) if wrap is not None else model
        backend: Backend = (TorchBackend(model, dev, precision) if name == "torch"
                            else CompileBackend(model, dev, precision, batch_size))
    elif name == "onnxruntime":
        backend = OnnxRuntimeBackend(package, dev)
    else:
        backend = TensorRTBackend(package, dev, precision, batch_size)
    if auto:
        say_once(f"backend auto: using {backend.describe()}")
    return backend
