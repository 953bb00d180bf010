"""PSNR / SSIM / MS-SSIM against scikit-image and pytorch-msssim, plus known cases."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as ref_ms_ssim
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from frsengine.errors import FrsError
from frsengine.metrics import (
    METRICS, HIGHER_IS_BETTER, MetricInputError, ms_ssim, ms_ssim_window, psnr, rgb_to_y, ssim,
)

TOL = 1e-4


def _pair(kind, n, c, h, w, seed=0):
    """A reference batch and a degraded copy, both in [0, 1] float64."""
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        x = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    else:  # smooth: upsampled coarse noise, the statistics of a blurry photo
        coarse = torch.rand(n, c, max(h // 8, 2), max(w // 8, 2), generator=g, dtype=torch.float64)
        x = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    y = (x + 0.08 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


def _hwc(t):
    return t.permute(1, 2, 0).numpy()


def _sk_ssim(a, b, data_range):
    return structural_similarity(_hwc(a), _hwc(b), channel_axis=2, data_range=data_range,
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


CASES = [("random", 2, 3, 32, 48), ("smooth", 2, 3, 64, 64), ("random", 1, 1, 11, 17),
         ("smooth", 3, 1, 40, 23)]


@pytest.mark.parametrize("kind,n,c,h,w", CASES)
def test_psnr_ssim_match_skimage(kind, n, c, h, w):
    x, y = _pair(kind, n, c, h, w)
    got_p, got_s = psnr(x, y), ssim(x, y)
    assert got_p.shape == got_s.shape == (n,) and got_p.dtype == torch.float64
    for i in range(n):
        assert got_p[i].item() == pytest.approx(
            peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(), data_range=1.0), abs=TOL)
        assert got_s[i].item() == pytest.approx(_sk_ssim(x[i], y[i], 1.0), abs=TOL)


def test_data_range_255_and_uint8():
    x, y = _pair("smooth", 2, 3, 32, 32)
    x8, y8 = (t.mul(255).round().to(torch.uint8) for t in (x, y))
    got_p, got_s = psnr(x8, y8, data_range=255), ssim(x8, y8, data_range=255)
    for i in range(2):
        a, b = x8[i].numpy(), y8[i].numpy()
        assert got_p[i].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=TOL)
        ref = structural_similarity(a.transpose(1, 2, 0), b.transpose(1, 2, 0), channel_axis=2,
                                    data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert got_s[i].item() == pytest.approx(ref, abs=TOL)
    # The same images on a [0, 1] scale score the same.
    assert torch.allclose(ssim(x8 / 255.0, y8 / 255.0), got_s, atol=1e-10)


@pytest.mark.parametrize("h,w", [(161, 161), (176, 203)])
def test_ms_ssim_matches_pytorch_msssim(h, w):
    for kind in ("random", "smooth"):
        x, y = _pair(kind, 2, 3, h, w, seed=1)
        ref = ref_ms_ssim(x, y, data_range=1.0, size_average=False)
        got = ms_ssim(x, y)
        assert got.shape == (2,)
        assert torch.allclose(got, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("h,w", [(128, 128), (97, 97), (128, 131), (160, 203)])
def test_ms_ssim_small_images_use_win7_as_pytorch_msssim(h, w):
    """Smaller side 97..160 px (128-px faces): 5 scales with pytorch-msssim's win_size=7."""
    assert ms_ssim_window(h, w) == 7
    for kind in ("random", "smooth"):
        x, y = _pair(kind, 2, 3, h, w, seed=2)
        ref = ref_ms_ssim(x, y, data_range=1.0, size_average=False, win_size=7)
        got = ms_ssim(x, y)
        assert got.shape == (2,) and got.dtype == torch.float64
        assert torch.allclose(got, ref, atol=TOL, rtol=0)
        assert torch.equal(got, ms_ssim(x, y, win_size=7))
    # uint8 on the 255 scale, and luma
    x8, y8 = (t.mul(255).round().to(torch.uint8) for t in _pair("smooth", 1, 3, h, w, seed=3))
    ref = ref_ms_ssim(x8.double(), y8.double(), data_range=255, size_average=False, win_size=7)
    assert torch.allclose(ms_ssim(x8, y8, data_range=255), ref, atol=TOL, rtol=0)
    x, y = _pair("smooth", 1, 3, h, w, seed=4)
    ref = ref_ms_ssim(rgb_to_y(x), rgb_to_y(y), data_range=255.0, size_average=False, win_size=7)
    assert torch.allclose(ms_ssim(x, y, y_channel=True), ref, atol=TOL, rtol=0)
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_explicit_win_size_is_kept():
    x, y = _pair("smooth", 2, 3, 176, 176, seed=5)
    assert ms_ssim_window(176, 176) == 11
    assert torch.equal(ms_ssim(x, y), ms_ssim(x, y, win_size=11))
    ref7 = ref_ms_ssim(x, y, data_range=1.0, size_average=False, win_size=7)
    got7 = ms_ssim(x, y, win_size=7)  # above 160 px too, when asked
    assert torch.allclose(got7, ref7, atol=TOL, rtol=0) and not torch.allclose(got7, ms_ssim(x, y), atol=1e-6)
    ref5 = ref_ms_ssim(x[..., :128, :128], y[..., :128, :128], data_range=1.0, size_average=False, win_size=5)
    assert torch.allclose(ms_ssim(x[..., :128, :128], y[..., :128, :128], win_size=5), ref5, atol=TOL, rtol=0)


def test_ms_ssim_window_rule():
    assert [ms_ssim_window(h, w) for h, w in [(161, 161), (512, 200), (160, 400), (128, 128), (97, 500)]] == \
        [11, 11, 7, 7, 7]
    for h, w in [(96, 128), (128, 96), (16, 16)]:
        with pytest.raises(MetricInputError, match="97x97"):
            ms_ssim_window(h, w)
    for bad in [(128.0, 128), (0, 128), (True, 128)]:
        with pytest.raises(MetricInputError, match="positive integer"):
            ms_ssim_window(*bad)


def test_ms_ssim_y_channel_and_identity():
    x, y = _pair("smooth", 1, 3, 168, 168)
    ref = ref_ms_ssim(rgb_to_y(x), rgb_to_y(y), data_range=255.0, size_average=False)
    assert torch.allclose(ms_ssim(x, y, y_channel=True), ref, atol=TOL, rtol=0)
    assert ms_ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_y_channel_is_bt601_on_255_scale():
    x, y = _pair("random", 2, 3, 24, 24)
    lum = lambda t: (16 + 65.481 * t[:, 0] + 128.553 * t[:, 1] + 24.966 * t[:, 2])  # noqa: E731
    assert torch.allclose(rgb_to_y(x)[:, 0], lum(x), atol=1e-12)
    assert rgb_to_y(torch.zeros(1, 3, 1, 1)).item() == pytest.approx(16.0)
    assert rgb_to_y(torch.ones(1, 3, 1, 1)).item() == pytest.approx(235.0)
    got_p, got_s = psnr(x, y, y_channel=True), ssim(x, y, y_channel=True)
    for i in range(2):
        a, b = lum(x)[i].numpy(), lum(y)[i].numpy()
        assert got_p[i].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=TOL)
        ref = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert got_s[i].item() == pytest.approx(ref, abs=TOL)
    # Independent of the input scale.
    assert torch.allclose(psnr(x * 255, y * 255, data_range=255, y_channel=True), got_p)


def test_identical_images():
    x, _ = _pair("random", 3, 3, 20, 20)
    assert torch.all(torch.isinf(psnr(x, x))) and torch.all(psnr(x, x) > 0)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("c,data_range", [(0.25, 1.0), (0.01, 1.0), (3.0, 255.0)])
def test_constant_shift_psnr(c, data_range):
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * (data_range - c)
    expected = 20 * math.log10(data_range / c)
    assert torch.allclose(psnr(x + c, x, data_range=data_range),
                          torch.full((2,), expected, dtype=torch.float64), atol=1e-9)


def test_crop_border():
    x, y = _pair("random", 2, 3, 40, 36)
    y[..., :4, :] = 1 - x[..., :4, :]  # damage only the border
    b = 4
    inner = (slice(None), slice(None), slice(b, -b), slice(b, -b))
    assert torch.equal(psnr(x, y, crop_border=b), psnr(x[inner], y[inner]))
    assert torch.equal(ssim(x, y, crop_border=b), ssim(x[inner], y[inner]))
    assert torch.all(psnr(x, y) < psnr(x, y, crop_border=b))


def test_batch_is_per_image_and_float32_input():
    x, y = _pair("smooth", 4, 3, 32, 32)
    one = torch.stack([ssim(x[i:i + 1], y[i:i + 1])[0] for i in range(4)])
    assert torch.allclose(ssim(x, y), one, atol=1e-12)
    assert torch.allclose(ssim(x.float(), y.float()), one, atol=1e-6)
    assert torch.allclose(psnr(x.float(), y.float()), psnr(x, y), atol=1e-4)


def test_registry():
    x, y = _pair("smooth", 2, 3, 176, 176)
    assert set(METRICS) == {"psnr", "ssim", "ms_ssim", "psnr_y", "ssim_y"} <= set(HIGHER_IS_BETTER)
    for name, fn in METRICS.items():
        v = fn(x, y)
        assert v.shape == (2,) and torch.all(torch.isfinite(v)), name
    x, y = _pair("smooth", 2, 3, 128, 128)  # the eval's default face size: every metric scores it
    for name, fn in METRICS.items():
        v = fn(x, y)
        assert v.shape == (2,) and torch.all(torch.isfinite(v)), name
    assert torch.equal(METRICS["ssim_y"](x, y), ssim(x, y, y_channel=True))


@pytest.mark.parametrize("fn", [psnr, ssim, ms_ssim])
@pytest.mark.parametrize("x,y,match", [
    (torch.rand(3, 16, 16), torch.rand(3, 16, 16), "N, C, H, W"),
    (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15), "one shape"),
    (np.zeros((1, 3, 16, 16)), torch.rand(1, 3, 16, 16), "torch.Tensor"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.bool), torch.rand(1, 3, 16, 16), "dtype"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.complex64), torch.rand(1, 3, 16, 16), "dtype"),
])
def test_bad_inputs(fn, x, y, match):
    with pytest.raises(MetricInputError, match=match) as info:
        fn(x, y)
    assert isinstance(info.value, FrsError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_bad_options_and_sizes():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(MetricInputError, match="at least 11x11"):
        ssim(x[..., :10, :], x[..., :10, :])
    with pytest.raises(MetricInputError, match="smaller crop_border"):
        ssim(x, x, crop_border=3)
    with pytest.raises(MetricInputError, match="97x97 px for 5 scales with a 7x7 window"):
        ms_ssim(x, x)
    big = torch.rand(1, 3, 128, 128)
    with pytest.raises(MetricInputError, match="161x161.*smaller odd win_size"):
        ms_ssim(big, big, win_size=11)
    with pytest.raises(MetricInputError, match="97x97"):
        ms_ssim(big[..., :96, :], big[..., :96, :])
    for bad in (8, 0, -3, 7.0, True, "7"):
        with pytest.raises(MetricInputError, match="win_size must be an odd positive integer"):
            ms_ssim(big, big, win_size=bad)
    with pytest.raises(MetricInputError, match="data_range"):
        psnr(x, x, data_range=0)
    with pytest.raises(MetricInputError, match="crop_border"):
        psnr(x, x, crop_border=-1)
    with pytest.raises(MetricInputError, match="C = 3"):
        psnr(x[:, :1], x[:, :1], y_channel=True)
    with pytest.raises(MetricInputError, match="non-empty"):
        psnr(x[:0], x[:0])


def test_package_exports():
    import frsengine.metrics as metrics
    import frsengine.metrics.lpips as lpips_module
    import frsengine.metrics.niqe as niqe_module

    assert all(hasattr(metrics, name) for name in metrics.__all__)
    # The modules stay reachable as attributes (no function of the same name hides them).
    assert hasattr(lpips_module, "LPIPS") and hasattr(niqe_module, "NIQEModel")
    assert all(HIGHER_IS_BETTER[k] is False for k in ("identity", "niqe", "lpips", "fid"))
