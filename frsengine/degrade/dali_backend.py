"""Degradation with an NVIDIA DALI pipeline: GPU when there is one, CPU otherwise.

One pipeline per (batch size, image size, preset, singles, device) is built once and reused;
images and every per-sample parameter go in through `fn.external_source`, so a batch with
different sigmas, LR sizes and JPEG qualities runs in one pass. The graph follows the OpenCV
baseline step by step and stores uint8 after each step:

- blur: two `fn.filter` passes with per-sample kernels, kept in float32 between them: a
  Gaussian is its 1-D kernel along rows then along columns (the baseline's kernel, radius
  ceil(truncate*sigma)); a motion blur is its 2-D kernel then a 1x1 identity. DALI's own
  `fn.gaussian_blur` computes the same but took 40-52 ms per 32x128x128 uint8 batch on the
  2-core CPU against 10-12 ms for the two filter passes, and it cannot apply a motion kernel;
- down/up: `fn.resize`, cubic, per-sample size, antialiasing from the preset when shrinking;
- noise: added in float64 then saturating-cast to uint8 (rounds, clips to 0-255), which
  reproduces the baseline's `clip(rint(img + n))` bit for bit;
- JPEG: `fn.jpeg_compression_distortion` with a per-sample quality.

Noise is drawn outside DALI. DALI's random operators (`fn.noise.*`, `fn.random.*`) take one
seed per operator, and a sample's draws then depend on its slot in the batch and on how many
iterations the pipeline has run, so they cannot be reproduced from the sample's `noise_seed`.
Instead each sample's noise comes from numpy's PCG64 seeded with its `noise_seed`, with the
same draws as the OpenCV baseline: same seed -> bit-identical noise, independent of batch
size, order or device, and the same realisation as the baseline.
"""
from __future__ import annotations

import os

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.types as types
import torch
from nvidia.dali import Pipeline

from frsengine.degrade.opencv_backend import to_uint8_hwc
from frsengine.degrade.params import SINGLE_NOISE_STREAM, SampleParams, gaussian_kernel1d, motion_kernel, numpy_noise
from frsengine.degrade.presets import Preset
from frsengine.errors import FrsError

_IDENTITY_KERNEL = np.ones((1, 1), dtype=np.float32)


def make_noise(p: SampleParams, side: int, per_channel: bool, stream: int = 0) -> np.ndarray:
    """(side, side, 3) float64 noise drawn exactly as the OpenCV baseline draws it (float64 so
    that DALI's `img + n` rounds as the baseline's does)."""
    n = numpy_noise(p, (side, side), per_channel, stream)
    return np.ascontiguousarray(np.broadcast_to(n, (side, side, 3)), dtype=np.float64)


def blur_kernels(p: SampleParams, truncate: float) -> tuple[np.ndarray, np.ndarray]:
    """The two float32 kernels the blur's filter passes apply to one sample (see module doc)."""
    if p.blur_kind == "gaussian":
        g = gaussian_kernel1d(p.blur_sigma, truncate).astype(np.float32)
        return g[None, :], np.ascontiguousarray(g[:, None])
    return motion_kernel(p.motion_size, p.motion_angle).astype(np.float32), _IDENTITY_KERNEL


def _dali_gpu_count() -> int:
    try:
        from nvidia.dali.backend import GetCUDADeviceCount
        return int(GetCUDADeviceCount())
    except Exception:  # no driver: DALI raises rather than returning 0
        return 0


def resolve_device_id(device: str | torch.device | None) -> int | None:
    """DALI device id for `device`: None = GPU when torch and DALI both see one, else CPU."""
    if device is None:
        if torch.cuda.is_available() and _dali_gpu_count() > 0:
            return torch.cuda.current_device()
        return None
    device = torch.device(device)
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        raise FrsError(f"the DALI backend runs on 'cpu' or 'cuda', not '{device}'")
    if not torch.cuda.is_available() or _dali_gpu_count() == 0:
        raise FrsError(f"device '{device}' asked for, but no CUDA GPU is visible to torch and DALI")
    return device.index if device.index is not None else torch.cuda.current_device()


def build_pipeline(batch_size: int, size: int, preset: Preset, singles: bool,
                   device_id: int | None) -> Pipeline:
    """The DALI graph of `preset`'s full degradation (and the singles, stacked)."""
    gpu = device_id is not None
    # Synchronous, non-prefetching execution: every run() consumes exactly the batch just fed.
    pipe = Pipeline(batch_size=batch_size, num_threads=max(1, min(8, os.cpu_count() or 1)),
                    device_id=device_id, seed=0, prefetch_queue_depth=1,
                    exec_async=False, exec_pipelined=False)
    with pipe:
        def source(name, dtype, layout=None, to_gpu=False):
            node = fn.external_source(name=name, dtype=dtype, layout=layout)
            return node.gpu() if to_gpu and gpu else node

        hq = source("hq", types.UINT8, "HWC", to_gpu=True)
        # Kernels stay on the CPU: DALI's GPU filter copies CPU filters to the device itself.
        kernel_a, kernel_b = source("kernel_a", types.FLOAT), source("kernel_b", types.FLOAT)
        lr_size, quality = source("lr_size", types.FLOAT), source("quality", types.INT32)

        def blur(x):
            x = fn.filter(fn.filter(x, kernel_a, dtype=types.FLOAT), kernel_b)
            return fn.cast(x, dtype=types.UINT8)  # saturating cast: rounds and clips

        def resize(x, side, antialias):
            return fn.resize(x, size=side, interp_type=types.INTERP_CUBIC, antialias=antialias)

        def jpeg(x):
            return fn.jpeg_compression_distortion(x, quality=quality)

        def add_noise(x, noise):
            return fn.cast(x + noise, dtype=types.UINT8)  # saturating cast: rounds and clips

        blurred = blur(hq)
        cur, resized = hq, False
        for op in preset.order:
            if op == "blur":
                cur = blurred if cur is hq else blur(cur)
            elif op == "down":
                cur, resized = resize(cur, lr_size, preset.down.antialias), True
            elif op == "noise":
                cur = add_noise(cur, source("noise", types.FLOAT64, "HWC", to_gpu=True))
            elif op == "jpeg":
                cur = jpeg(cur)
        full = resize(cur, [size, size], False) if resized else cur
        outputs = [full]
        if singles:
            noisy = add_noise(hq, source("noise_single", types.FLOAT64, "HWC", to_gpu=True))
            down_up = resize(resize(hq, lr_size, preset.down.antialias), [size, size], False)
            outputs.append(fn.stack(blurred, noisy, jpeg(hq), down_up))
        pipe.set_outputs(*outputs)
    pipe.build()
    return pipe


class DaliBackend:
    """Runs a preset's degradations as a cached DALI pipeline (GPU if available, else CPU)."""

    name = "dali"

    def __init__(self, device: str | torch.device | None = None):
        self.device_id = resolve_device_id(device)
        self.device = torch.device("cpu") if self.device_id is None else torch.device("cuda", self.device_id)
        self._pipes: dict[tuple, Pipeline] = {}

    def _pipeline(self, batch_size: int, size: int, preset: Preset, singles: bool) -> Pipeline:
        key = (batch_size, size, preset, singles, self.device_id)
        if key not in self._pipes:
            self._pipes[key] = build_pipeline(batch_size, size, preset, singles, self.device_id)
        return self._pipes[key]

    def run(self, hq: torch.Tensor, params: list[SampleParams], preset: Preset,
            singles: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, _, h, w = hq.shape
        if h != w:
            raise ValueError(f"degradation expects square HQ images, got {h}x{w}")
        pipe = self._pipeline(b, h, preset, singles)
        per_channel = preset.noise.per_channel
        # Where the noise lands: on the LR image when "down" comes before it.
        noise_on_lr = preset.order.index("down") < preset.order.index("noise")

        pipe.feed_input("hq", to_uint8_hwc(hq))
        kernels = [blur_kernels(p, preset.blur.truncate) for p in params]
        pipe.feed_input("kernel_a", [k[0] for k in kernels])
        pipe.feed_input("kernel_b", [k[1] for k in kernels])
        pipe.feed_input("lr_size", np.array([[p.lr_size(h)] * 2 for p in params], dtype=np.float32))
        pipe.feed_input("quality", np.array([p.jpeg_quality for p in params], dtype=np.int32))
        pipe.feed_input("noise", [make_noise(p, p.lr_size(h) if noise_on_lr else h, per_channel)
                                  for p in params])
        if singles:
            pipe.feed_input("noise_single", [make_noise(p, h, per_channel, SINGLE_NOISE_STREAM)
                                             for p in params])
        outs = [self._to_torch(o) for o in pipe.run()]
        full = outs[0].permute(0, 3, 1, 2).float().div_(255.0)  # (B,H,W,3) -> (B,3,H,W)
        if not singles:
            return full, None
        return full, outs[1].permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B,4,H,W,3) -> (B,4,3,H,W)

    def _to_torch(self, tensor_list) -> torch.Tensor:
        """A uniform-shape DALI batch as a uint8 torch tensor on the pipeline's device."""
        if self.device_id is None:
            return torch.from_numpy(tensor_list.as_array())
        from nvidia.dali.plugin.pytorch import feed_ndarray
        dense = tensor_list.as_tensor()  # one (B, ...) tensor: feed_ndarray wants a dense shape
        out = torch.empty(dense.shape(), dtype=torch.uint8, device=self.device)
        feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(self.device))
        return out
