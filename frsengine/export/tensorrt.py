"""TensorRT engines from ONNX files, and the cache that keys them.

The TensorRT code is kept thin over the documented Python API (Builder -> network -> OnnxParser
-> builder config with one optimisation profile over the batch axis -> serialised plan; Runtime ->
engine -> execution context with tensor addresses). TensorRT cannot be installed on machines
without an NVIDIA driver, so this part is only exercised on a GPU machine.

An engine only runs on the GPU model and TensorRT version it was built with, so the cache key
(:class:`EngineKey`) holds those along with what defines the network (genotype and weights hashes),
the precision and the shape range.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from frsengine.errors import FrsError, MissingDependencyError
from frsengine.io import write_bytes_atomic

PRECISIONS = ("fp32", "fp16")
ENV_CACHE = "FRSENGINE_CACHE"


def cache_dir() -> Path:
    """Where built ONNX files and engines are kept: $FRSENGINE_CACHE or ~/.cache/frsengine."""
    root = os.environ.get(ENV_CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "frsengine")
    return Path(root)


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise TensorRTMissing() from None
    return tensorrt


class TensorRTMissing(MissingDependencyError):
    def __init__(self):
        FrsError.__init__(self, "TensorRT is not installed: on a machine with an NVIDIA GPU run `.venv/bin/pip install "
                          "tensorrt` (NVIDIA's wheel for your CUDA version); without it use --onnx-only / the "
                          "onnxruntime or torch backend")
        self.package = "tensorrt"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. ``digest`` names the cached file."""

    genotype_sha256: str
    weights_sha256: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    height: int
    width: int
    gpu: str
    tensorrt: str

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise FrsError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise FrsError(f"batch range must satisfy 1 <= min ({self.min_batch}) <= opt ({self.opt_batch}) "
                           f"<= max ({self.max_batch})")

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def shapes(self, channels: int = 3) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((b, channels, self.height, self.width) for b in (self.min_batch, self.opt_batch, self.max_batch))


def current_gpu() -> str:
    """Name and compute capability of CUDA device 0 (what an engine is tied to)."""
    import torch

    if not torch.cuda.is_available():
        raise FrsError("TensorRT engines need an NVIDIA GPU, and torch sees none here: use --onnx-only "
                       "(or the onnxruntime backend)")
    major, minor = torch.cuda.get_device_capability(0)
    return f"{torch.cuda.get_device_name(0)} (sm_{major}{minor})"


def engine_path(key: EngineKey, root: Path | None = None) -> Path:
    return (root or cache_dir()) / "engines" / f"{key.digest()}.engine"


def build_engine(onnx_path: str | os.PathLike, out: str | os.PathLike, key: EngineKey,
                 workspace_gib: float = 4.0, log=print) -> Path:
    """Build a TensorRT engine (plan) from ``onnx_path`` for ``key``'s precision and batch range."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT >= 10 networks are always explicit-batch (the flag is deprecated there).
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FrsError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if key.precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise FrsError(f"TensorRT {trt.__version__} has no FP16 builder flag (strongly typed networks "
                           "only): export an fp16 ONNX model or use --precision fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    channels = network.get_input(0).shape[1]
    lo, opt, hi = key.shapes(channels)
    profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    log(f"building TensorRT {trt.__version__} engine ({key.precision}, batch {key.min_batch}/{key.opt_batch}/"
        f"{key.max_batch}) on {key.gpu}: this takes a while")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise FrsError("TensorRT failed to build the engine (see its messages above)")
    path = write_bytes_atomic(out, bytes(plan))
    write_bytes_atomic(Path(str(path) + ".json"), (json.dumps(asdict(key), indent=2) + "\n").encode())
    return path


def engine_key(package, precision: str, min_batch: int, opt_batch: int, max_batch: int) -> EngineKey:
    """The cache key of ``package``'s engine on this machine's GPU and TensorRT."""
    trt = import_tensorrt()
    h, w = package.input_size
    return EngineKey(package.genotype_hash, package.weights_hash, precision, min_batch, opt_batch, max_batch,
                     h, w, current_gpu(), trt.__version__)


def ensure_engine(package, precision: str, min_batch: int, opt_batch: int, max_batch: int,
                  log=None) -> Path:
    """The cached engine for ``package`` and this key, built (from the cached ONNX export) if missing."""
    from frsengine.export.onnx import cached_onnx

    key = engine_key(package, precision, min_batch, opt_batch, max_batch)
    path = engine_path(key)
    if not path.is_file():
        import logging

        build_engine(cached_onnx(package), path, key, log=log or logging.getLogger("frsengine").info)
    return path


class TensorRTRunner:
    """Runs a serialised engine on torch CUDA tensors (float32 NCHW in, float32 out)."""

    def __init__(self, engine_file: str | os.PathLike):
        trt = import_tensorrt()
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_file).read_bytes())
        if self.engine is None:
            raise FrsError(f"{engine_file}: TensorRT could not load this engine (built for another GPU or "
                           "TensorRT version?): delete it and build again")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def __call__(self, x):
        import torch

        x = x.to("cuda", torch.float32).contiguous()
        self.context.set_input_shape(self.input, tuple(x.shape))
        y = torch.empty(tuple(self.context.get_tensor_shape(self.output)), device="cuda", dtype=torch.float32)
        self.context.set_tensor_address(self.input, x.data_ptr())
        self.context.set_tensor_address(self.output, y.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise FrsError("TensorRT execution failed (see its messages above)")
        return y
