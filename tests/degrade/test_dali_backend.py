"""The DALI degradation backend: contract, determinism, and agreement with the OpenCV baseline.

The CPU pipeline (device_id=None) runs everywhere DALI installs; the GPU test needs CUDA.
"""
import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali", reason="nvidia-dali-cuda130 is not installed")

from frsengine.degrade import SINGLES, Degrader, get_backend, get_preset, sample_params  # noqa: E402
from frsengine.degrade.dali_backend import DaliBackend  # noqa: E402
from frsengine.degrade.opencv_backend import OpenCVBackend  # noqa: E402

PRESETS = ("paper", "reference")


def natural_images(b: int, n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images with a natural-image (1/f^2) power spectrum, in [0,1].

    Band-limited images (e.g. noise enlarged from 8x8) would exaggerate the one known
    difference, DALI's cubic (a=-0.5) vs OpenCV's (a=-0.75): both are near-exact there and
    PSNRs of 40-50 dB differ by several dB; photos and 1/f^2 fields differ by < 0.5 dB.
    """
    rng = np.random.default_rng(seed)
    f2 = np.fft.fftfreq(n)[:, None] ** 2 + np.fft.fftfreq(n)[None] ** 2
    amp = 1.0 / np.maximum(f2, 1.0 / n**2)
    x = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(b, 3, n, n))) * amp))
    x = (x - x.mean((2, 3), keepdims=True)) / x.std((2, 3), keepdims=True) * 0.18 + 0.5
    return torch.from_numpy(x).float().clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.cpu() - b.cpu()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


@pytest.fixture(scope="module")
def backend():
    return DaliBackend("cpu")


@pytest.fixture(scope="module")
def hq():
    return natural_images(8, 64)


@pytest.mark.parametrize("name", PRESETS)
def test_shapes_dtypes_ranges(backend, hq, name):
    preset = get_preset(name)
    params = sample_params(preset, 0, range(4))
    full, singles = backend.run(hq[:4], params, preset, singles=True)
    assert full.shape == (4, 3, 64, 64) and full.dtype == torch.float32
    assert singles.shape == (4, len(SINGLES), 3, 64, 64) and singles.dtype == torch.float32
    for x in (full, singles):
        assert x.device.type == "cpu" and 0.0 <= x.min() and x.max() <= 1.0
        assert torch.equal(x, (x * 255).round() / 255)  # uint8 levels
    full_only, none = backend.run(hq[:4], params, preset, singles=False)
    assert none is None and torch.equal(full_only, full)


def test_deterministic_per_sample(backend, hq):
    preset = get_preset("reference")
    params = sample_params(preset, 7, range(4))
    a = backend.run(hq[:4], params, preset)
    b = DaliBackend("cpu").run(hq[:4], params, preset)  # a fresh pipeline
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # A sample's output depends on its parameters only, not on the batch around it.
    c = backend.run(hq[2:4], params[2:4], preset)
    assert torch.equal(c[0], a[0][2:4]) and torch.equal(c[1], a[1][2:4])
    d = backend.run(hq[:4], sample_params(preset, 8, range(4)), preset)
    assert not torch.equal(d[1][:, SINGLES.index("noise")], a[1][:, SINGLES.index("noise")])


def test_noise_and_blur_match_baseline(backend, hq):
    """Noise is drawn exactly as the baseline draws it; blur uses the baseline's kernels."""
    preset = get_preset("reference")  # Gaussian and motion blur; three noise kinds
    params = sample_params(preset, 3, range(8))
    assert {p.blur_kind for p in params} == {"gaussian", "motion"}
    _, dali = backend.run(hq, params, preset)
    _, ocv = OpenCVBackend().run(hq, params, preset)
    i_noise, i_blur = SINGLES.index("noise"), SINGLES.index("blur")
    assert torch.equal(dali[:, i_noise], ocv[:, i_noise])
    assert (dali[:, i_blur] - ocv[:, i_blur]).abs().max() <= 1.0 / 255 + 1e-6


@pytest.mark.parametrize("name", PRESETS)
def test_psnr_close_to_opencv_baseline(backend, hq, name):
    preset = get_preset(name)
    params = sample_params(preset, 11, range(len(hq)))
    full_d, singles_d = backend.run(hq, params, preset)
    full_o, singles_o = OpenCVBackend().run(hq, params, preset)
    outputs = {"full": (full_d, full_o)}
    outputs.update({s: (singles_d[:, i], singles_o[:, i]) for i, s in enumerate(SINGLES)})
    for label, (d, o) in outputs.items():
        gap = float(psnr(d, hq).mean() - psnr(o, hq).mean())
        assert abs(gap) <= 1.5, f"{name}/{label}: DALI vs OpenCV mean PSNR differs by {gap:+.2f} dB"


def test_pipelines_are_cached(hq):
    be = DaliBackend("cpu")
    preset = get_preset("paper")
    for seed in range(2):
        be.run(hq[:4], sample_params(preset, seed, range(4)), preset)
    assert len(be._pipes) == 1
    be.run(hq[:2], sample_params(preset, 0, range(2)), preset)
    assert len(be._pipes) == 2


def test_registry_and_degrader(hq):
    assert isinstance(get_backend("dali", device="cpu"), DaliBackend)
    deg = Degrader("paper", backend="dali", device="cpu")
    batch = deg((hq[:2] * 255).round().to(torch.uint8), seed=1)
    assert batch.lq_full.shape == (2, 3, 64, 64) and batch.single("downup").shape == (2, 3, 64, 64)


def test_rejects_non_square(backend):
    preset = get_preset("paper")
    with pytest.raises(ValueError, match="square"):
        backend.run(torch.rand(1, 3, 32, 48), sample_params(preset, 0, [0]), preset)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (DALI GPU pipeline)")
def test_gpu_pipeline_matches_cpu(hq):
    preset = get_preset("reference")
    params = sample_params(preset, 5, range(len(hq)))
    gpu = DaliBackend("cuda")
    full_g, singles_g = gpu.run(hq, params, preset)
    assert full_g.device.type == "cuda" and singles_g.shape == (len(hq), len(SINGLES), 3, 64, 64)
    again = gpu.run(hq, params, preset)
    assert torch.equal(full_g, again[0]) and torch.equal(singles_g, again[1])
    full_c, singles_c = DaliBackend("cpu").run(hq, params, preset)
    i_noise = SINGLES.index("noise")
    assert torch.equal(singles_g[:, i_noise].cpu(), singles_c[:, i_noise])
    # Filters, resampling and the JPEG round trip are separate CPU/GPU implementations.
    for d, c in ((full_g, full_c), (singles_g, singles_c)):
        assert abs(float(psnr(d, hq).mean() - psnr(c, hq).mean())) <= 0.5
