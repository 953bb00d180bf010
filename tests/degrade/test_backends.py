"""The torch (batched) and OpenCV (per-image baseline) backends: one contract, same law."""

import pytest
import torch

from frsengine.degrade import SINGLES, Degrader, get_preset
from frsengine.errors import FrsError

from .conftest import psnr, synthetic_faces

BACKENDS = ["torch", "opencv"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_shapes_dtypes_ranges_and_8bit_levels(faces, backend, preset):
    batch = Degrader(preset, backend)(faces, seed=0)
    assert batch.hq.shape == batch.lq_full.shape == (8, 3, 128, 128)
    assert batch.lq_singles.shape == (8, len(SINGLES), 3, 128, 128)
    for t in (batch.hq, batch.lq_full, batch.lq_singles):
        assert t.dtype == torch.float32
        assert t.min() >= 0 and t.max() <= 1
        assert torch.equal(t * 255, (t * 255).round())
    assert len(batch.params) == 8
    assert torch.equal(batch.single("blur"), batch.lq_singles[:, 0])
    assert not torch.equal(batch.lq_full, batch.hq)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_is_bit_identical_other_seed_differs(faces, backend):
    deg = Degrader("reference", backend)
    a, b, c = deg(faces, seed=5), deg(faces, seed=5), deg(faces, seed=6)
    assert torch.equal(a.lq_full, b.lq_full) and torch.equal(a.lq_singles, b.lq_singles)
    assert not torch.equal(a.lq_full, c.lq_full)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_does_not_depend_on_its_batch(faces, backend):
    deg = Degrader("paper", backend)
    whole = deg(faces, seed=1)
    alone = deg(faces[5:6], seed=1, indices=[5])
    assert alone.params == whole.params[5:6]
    # Only float summation order differs between batch sizes: at most one 8-bit level.
    assert (alone.lq_full[0] - whole.lq_full[5]).abs().max() <= 1 / 255 + 1e-6
    assert (alone.lq_full[0] - whole.lq_full[5]).abs().mean() < 0.01 / 255


def _fixed(preset, **over):
    return get_preset(preset, over)


@pytest.mark.parametrize("backend", BACKENDS)
def test_identity_settings_keep_the_image(faces, backend):
    preset = _fixed("paper", **{"blur.sigma": 0.01, "down.scale": 1.0, "noise.sigma": 0.0, "jpeg.quality": 100})
    batch = Degrader(preset, backend)(faces, seed=0)
    assert psnr(batch.lq_full, batch.hq).min() > 40
    assert torch.equal(batch.single("blur"), batch.hq)
    assert torch.equal(batch.single("noise"), batch.hq)
    assert torch.equal(batch.single("downup"), batch.hq)


def _high_freq_energy(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    win = torch.hann_window(n, periodic=False)
    g = x.float().mean(1)
    g = (g - g.mean(dim=(-2, -1), keepdim=True)) * win[:, None] * win[None, :]  # no edge leakage
    f = torch.fft.fftshift(torch.fft.fft2(g), dim=(-2, -1)).abs() ** 2
    yy, xx = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    return (f * ((yy**2 + xx**2) > (n // 4) ** 2)).flatten(1).sum(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_single_changes_only_what_it_should(faces, backend):
    preset = _fixed("paper", **{"blur.sigma": 2.0, "down.scale": 4.0, "noise.sigma": 10.0, "jpeg.quality": 30})
    batch = Degrader(preset, backend)(faces, seed=2)
    hq = batch.hq
    noise = batch.single("noise") - hq
    # Noise only: zero-mean, the right spread, no blurring of the content.
    assert noise.mean(dim=(1, 2, 3)).abs().max() < 0.3 / 255
    assert torch.allclose(noise.std(dim=(1, 2, 3)) * 255, torch.tensor(10.0), rtol=0.08)
    # Blur and down-up keep the mean and remove high frequencies; down-up more at r=4.
    hf = _high_freq_energy(hq)
    for name in ("blur", "downup"):
        out = batch.single(name)
        assert (out.mean(dim=(1, 2, 3)) - hq.mean(dim=(1, 2, 3))).abs().max() < 1.0 / 255
        assert torch.all(_high_freq_energy(out) < 0.05 * hf)
    # JPEG only: keeps the mean, loses detail, and its error lives on the 8x8 grid.
    jpeg = batch.single("jpeg")
    assert (jpeg.mean(dim=(1, 2, 3)) - hq.mean(dim=(1, 2, 3))).abs().max() < 1.0 / 255
    assert torch.all(psnr(jpeg, hq) < 40)
    # The full degradation loses more than its linear parts alone (noise added at low
    # resolution is smoothed by the resize back, so it can beat the noise-only single).
    for name in ("blur", "downup"):
        assert torch.all(psnr(batch.lq_full, hq) < psnr(batch.single(name), hq) + 0.5)


@pytest.mark.parametrize("preset", ["paper", "reference"])
def test_torch_and_opencv_agree_statistically(preset):
    faces = synthetic_faces(24, seed=11)
    t = Degrader(preset, "torch")(faces, seed=3)
    c = Degrader(preset, "opencv")(faces, seed=3)
    assert t.params == c.params
    assert abs(psnr(t.lq_full, t.hq).mean() - psnr(c.lq_full, c.hq).mean()) < 1.5
    for i, name in enumerate(SINGLES):
        d = psnr(t.lq_singles[:, i], t.hq).mean() - psnr(c.lq_singles[:, i], c.hq).mean()
        assert abs(d) < 1.5, (name, float(d))
    # Deterministic steps match the baseline image by image, not just on average.
    assert psnr(t.single("blur"), c.single("blur")).min() > 45
    assert psnr(t.single("downup"), c.single("downup")).min() > (45 if preset == "reference" else 35)
    assert psnr(t.single("jpeg"), c.single("jpeg")).min() > 38


def test_bad_batches_are_rejected_clearly():
    deg = Degrader("paper", "torch")
    with pytest.raises(FrsError, match=r"\(B,3,H,W\)"):
        deg(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(FrsError, match="parameter sets"):
        deg(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), params=deg.params(0, [0]))
    with pytest.raises(FrsError, match="unknown degradation backend"):
        Degrader("paper", "magic")


def test_without_singles(faces):
    batch = Degrader("paper", "torch", singles=False)(faces, seed=0)
    assert batch.lq_singles is None
    with pytest.raises(FrsError, match="without single"):
        batch.single("blur")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_backend_on_cuda_matches_cpu(faces):
    cpu = Degrader("reference", "torch")(faces, seed=4)
    gpu = Degrader("reference", "torch", device="cuda")(faces.cuda(), seed=4)
    assert gpu.lq_full.is_cuda
    # Noise comes from a different generator on CUDA; the deterministic steps agree.
    for name in ("blur", "jpeg", "downup"):
        assert psnr(gpu.single(name).cpu(), cpu.single(name)).min() > 45


@pytest.mark.parametrize("lam", [0.5, 15.0, 30.0])
def test_poisson_sampler_has_the_poisson_law(lam):
    from math import exp, lgamma, log

    from frsengine.degrade.torch_backend import poisson_by_inverse_cdf

    g = torch.Generator().manual_seed(0)
    k = poisson_by_inverse_cdf(lam, (200_000,), g, "cpu")
    assert torch.equal(k, k.round()) and k.min() >= 0
    assert abs(k.mean().item() - lam) < 4 * (lam / 200_000) ** 0.5 + 1e-3
    assert abs(k.var().item() / lam - 1) < 0.03
    mode = int(lam)
    pmf = exp(mode * log(lam) - lam - lgamma(mode + 1))
    assert abs((k == mode).float().mean().item() - pmf) < 0.01
