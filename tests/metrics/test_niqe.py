"""NIQE: the features against a plain numpy port of the authors' MATLAB code, fitting and scoring
properties on synthetic 1/f random fields, and the model file."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import correlate
from scipy.special import gamma

from frsengine.errors import FrsError
from frsengine.io.images import write_image
from frsengine.metrics import MetricInputError
from frsengine.metrics.niqe import NIQEModel, _aggd, fit_niqe, fit_niqe_from_folder, niqe, patch_features


# --- reference: MATLAB's estimateaggdparam / computefeature, as BasicSR ports them -----------------
def ref_aggd(vec):
    gam = np.arange(0.2, 10.001, 0.001)
    r_gam = gamma(2 / gam) ** 2 / (gamma(1 / gam) * gamma(3 / gam))
    left, right = np.sqrt(np.mean(vec[vec < 0] ** 2)), np.sqrt(np.mean(vec[vec > 0] ** 2))
    g = left / right
    rhat = np.mean(np.abs(vec)) ** 2 / np.mean(vec ** 2)
    rhatnorm = rhat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    alpha = gam[np.argmin((r_gam - rhatnorm) ** 2)]
    s = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * s, right * s


def ref_feature(block):
    alpha, bl, br = ref_aggd(block.ravel())
    feat = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, bl, br = ref_aggd((block * np.roll(block, shift, axis=(0, 1))).ravel())
        feat += [alpha, (br - bl) * gamma(2 / alpha) / gamma(1 / alpha), bl, br]
    return feat


def ref_features(lum, p):
    """(P, 36) features of a 2-D luma array (255 scale) whose sides are multiples of p."""
    w = np.exp(-np.arange(-3, 4) ** 2 / (2 * (7 / 6) ** 2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    out = []
    for scale in (1, 2):
        mu = correlate(lum, w, mode="nearest")
        sigma = np.sqrt(np.abs(correlate(lum * lum, w, mode="nearest") - mu * mu))
        mscn, q = (lum - mu) / (sigma + 1), p // scale
        out.append([ref_feature(mscn[i:i + q, j:j + q])
                    for i in range(0, mscn.shape[0], q) for j in range(0, mscn.shape[1], q)])
        lum = F.interpolate(torch.from_numpy(lum)[None, None] / 255, scale_factor=0.5, mode="bicubic",
                            antialias=True)[0, 0].numpy() * 255
    return np.concatenate([np.array(o) for o in out], 1)


# --- synthetic images ------------------------------------------------------------------------------
def fields(n, seed, size=128, slope=2.0):
    """Random fields with a 1/f^slope power spectrum (natural images have slope ~2), RGB, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size, dtype=torch.float64)
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt().clamp_min(1 / size)
    spec = torch.randn(n, 3, size, size, generator=g, dtype=torch.float64) / radius ** (slope / 2)
    img = torch.fft.ifft2(spec).real
    img = img + img.mean(1, keepdim=True) * 2   # correlated channels, like photos
    lo, hi = img.amin((1, 2, 3), keepdim=True), img.amax((1, 2, 3), keepdim=True)
    return (0.1 + 0.8 * (img - lo) / (hi - lo)).float()


@pytest.fixture(scope="module")
def model():
    return fit_niqe(fields(24, seed=0))


def test_aggd_matches_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 20, 20, generator=g, dtype=torch.float64)
    x[1] = x[1].clamp_min(-0.3)                        # asymmetric
    x[2] = x[2] ** 3                                    # heavy-tailed
    x[3] = torch.sign(x[3]) * x[3].abs() ** 0.3         # light-tailed
    alpha, bl, br = _aggd(x)
    for i in range(6):
        ref = ref_aggd(x[i].numpy().ravel())
        assert np.allclose([alpha[i], bl[i], br[i]], ref, rtol=1e-9, atol=1e-12)


def test_features_match_reference():
    img = fields(1, seed=5, size=64)
    feats, sharp = patch_features(img, patch_size=32)
    assert feats.shape == (1, 4, 36) and sharp.shape == (1, 4)
    rgb = img[0].double()
    lum = (16 + 65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]).numpy()
    ref = ref_features(lum, 32)
    assert np.allclose(feats[0].numpy(), ref, rtol=1e-6, atol=1e-9)


def test_flat_patches_dropped_and_flat_image_nan(model):
    flat = torch.full((1, 3, 128, 128), 0.5)
    assert not torch.isfinite(patch_features(flat)[0]).all(-1).any()  # every patch unusable
    assert torch.isnan(niqe(flat, model)).all()
    half = fields(1, seed=7)
    half[..., :64, :] = 0.5                             # half the patches flat: still scored
    assert torch.isfinite(niqe(half, model)).all()


def test_model_fit(model):
    assert model.mean.shape == (36,) and model.cov.shape == (36, 36)
    assert torch.allclose(model.cov, model.cov.T)
    assert model.n_images == 24 and 24 <= model.n_patches <= 24 * 16


def test_sharpness_selection():
    x = fields(6, seed=6)
    x[..., 64:, :] = 0.5 + 0.1 * (x[..., 64:, :] - 0.5)   # the lower half: low contrast
    feats, sharp = patch_features(x)
    assert (sharp[:, :8].mean(1) > sharp[:, 8:].mean(1)).all()
    m = fit_niqe(x)
    assert 36 < m.n_patches <= 6 * 8  # only patches of the sharp upper half are kept


def test_scores_finite_deterministic_and_per_image(model):
    x = fields(4, seed=1)
    s = niqe(x, model)
    assert s.shape == (4,) and s.dtype == torch.float64 and torch.isfinite(s).all()
    assert torch.equal(s, niqe(x, model))
    assert torch.allclose(torch.cat([niqe(x[i:i + 1], model) for i in range(4)]), s, rtol=1e-10)
    # Streaming batches fits the same model as one tensor.
    clean = fields(24, seed=0)
    streamed = fit_niqe([clean[:10], clean[10:]])
    assert torch.allclose(streamed.mean, model.mean) and torch.allclose(streamed.cov, model.cov)


def test_degraded_scores_worse(model):
    x = fields(8, seed=2)
    blurred = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    clean, b, n = niqe(x, model), niqe(blurred, model), niqe(noisy, model)
    assert b.mean() > clean.mean() and n.mean() > clean.mean()
    assert (b > clean).float().mean() >= 0.75 and (n > clean).float().mean() >= 0.75


def test_save_load_safetensors(tmp_path, model):
    path = model.save(tmp_path / "niqe.safetensors")
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # safetensors: JSON header, no pickle
    assert json.loads(header["__metadata__"]["niqe"])["patch_size"] == 32
    loaded = NIQEModel.load(path)
    assert torch.equal(loaded.mean, model.mean) and torch.equal(loaded.cov, model.cov)
    assert (loaded.patch_size, loaded.n_images, loaded.n_patches) == (32, 24, model.n_patches)
    x = fields(2, seed=4)
    assert torch.equal(niqe(x, loaded), niqe(x, model))


def test_load_errors(tmp_path):
    with pytest.raises(FrsError, match="does not exist"):
        NIQEModel.load(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(FrsError, match="not a NIQE model"):
        NIQEModel.load(junk)
    from safetensors.torch import save_file
    other = tmp_path / "other.safetensors"
    save_file({"mean": torch.zeros(36), "cov": torch.zeros(36, 36)}, str(other))
    with pytest.raises(FrsError, match="refit"):
        NIQEModel.load(other)


def test_fit_from_folder(tmp_path):
    imgs = (fields(6, seed=8, size=128).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for i, a in enumerate(imgs):
        write_image(tmp_path / f"f{i}.png", a)
    (tmp_path / "list.txt").write_text("f0.png\nf1.png\nf2.png\nf3.png\nf5.png\n")
    m = fit_niqe_from_folder(tmp_path, tmp_path / "list.txt", limit=4, size=128, batch_size=3)
    assert m.n_images == 4 and m.info["files"] == 4 and m.info["size"] == 128
    assert torch.isfinite(niqe(fields(1, seed=9), m)).all()


def test_bad_inputs(model):
    with pytest.raises(MetricInputError, match="N, 3 or 1, H, W"):
        niqe(torch.rand(3, 64, 64), model)
    with pytest.raises(MetricInputError, match="N, 3 or 1, H, W"):
        niqe(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), model)
    with pytest.raises(MetricInputError, match="no 32 px patch"):
        niqe(torch.rand(1, 3, 20, 64), model)
    with pytest.raises(FrsError, match="usable patches"):
        fit_niqe(torch.full((2, 3, 64, 64), 0.5))
    assert math.isnan(niqe(torch.zeros(1, 1, 32, 32), model).item())
