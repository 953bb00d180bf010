"""LPIPS (random weights from a temp safetensors file) and the Fréchet distance of FID."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from frsengine.errors import FrsError
from frsengine.metrics import MetricInputError
from frsengine.metrics.fid import (feature_stats, fid_from_features, frechet_distance, inception_weights_path,
                                   load_inception)
from frsengine.metrics.lpips import LPIPS, lpips


def _random_state(net, seed=0, reference_layout=False):
    torch.manual_seed(seed)
    model = LPIPS(net)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)
    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    for k in [k for k in state if k.startswith("lin")]:
        state[k] = state[k].abs()  # the learned linear weights are non-negative
    if reference_layout:  # what lpips.LPIPS().state_dict() holds: each lin also under lins.K
        state.update({k.replace("lin", "lins.", 1): v.clone() for k, v in state.items() if k.startswith("lin")})
    else:
        del state["scaling_layer.shift"], state["scaling_layer.scale"]
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lpips") / "vgg.safetensors"
    save_file(_random_state("vgg"), str(path))
    return path


def test_lpips_identical_zero_and_shapes(vgg_file):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 48, 40, generator=g), torch.rand(2, 3, 48, 40, generator=g)
    d_same, d = lpips(x, x, weights=vgg_file), lpips(x, y, weights=vgg_file)
    assert d_same.shape == d.shape == (2,)
    assert torch.all(d_same.abs() < 1e-6) and torch.all(d > 0)
    closer = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.all(lpips(x, closer, weights=vgg_file) < d)
    # Per image: a batch scores as its members do.
    assert torch.allclose(lpips(x[1:], y[1:], weights=vgg_file), d[1:], rtol=1e-4, atol=1e-6)


def test_lpips_env_var_alex_and_reference_layout(tmp_path, monkeypatch):
    path = tmp_path / "alex.safetensors"
    save_file(_random_state("alex", reference_layout=True), str(path))
    monkeypatch.setenv("FRSENGINE_LPIPS_WEIGHTS", str(path))
    model = LPIPS.from_file()
    assert model.net_name == "alex"
    x = torch.rand(1, 3, 64, 64)
    assert lpips(x, x).abs().item() < 1e-6 and lpips(x, 1 - x).item() > 0


def test_lpips_missing_or_wrong_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("FRSENGINE_LPIPS_WEIGHTS", raising=False)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(FrsError, match="cannot download.*FRSENGINE_LPIPS_WEIGHTS") as info:
        lpips(x, x)
    assert "\n" not in str(info.value)
    with pytest.raises(FrsError, match="does not exist"):
        lpips(x, x, weights=tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    state = _random_state("vgg")
    del state["lin2.model.1.weight"]
    save_file(state, str(bad))
    with pytest.raises(FrsError, match="missing: lin2.model.1.weight"):
        LPIPS.from_file(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 16)
    with pytest.raises(FrsError, match="not a readable safetensors"):
        LPIPS.from_file(junk)


def test_lpips_bad_inputs(vgg_file):
    with pytest.raises(MetricInputError, match="H and W >= 32"):
        lpips(torch.rand(1, 3, 16, 64), torch.rand(1, 3, 16, 64), weights=vgg_file)
    with pytest.raises(MetricInputError, match="one shape"):
        lpips(torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32), weights=vgg_file)
    with pytest.raises(MetricInputError):
        lpips(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), weights=vgg_file)


def _direct_frechet(mu1, s1, mu2, s2):
    """Via the symmetric form Tr((S1^1/2 S2 S1^1/2)^1/2), with eigendecompositions only."""
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r1 @ s2 @ r1
    tr = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr)


def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_known_cases():
    rng = np.random.default_rng(0)
    mu, s = rng.normal(size=8), _spd(8, 1)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0, abs=1e-8)
    delta = rng.normal(size=8)
    assert frechet_distance(mu, s, mu + delta, s) == pytest.approx((delta ** 2).sum(), rel=1e-8)
    # Isotropic: sigma^2 I vs tau^2 I gives D (sigma - tau)^2.
    assert frechet_distance(mu, 4 * np.eye(8), mu, np.eye(8)) == pytest.approx(8.0, rel=1e-10)
    s2 = _spd(8, 2)
    assert frechet_distance(mu, s, mu + delta, s2) == pytest.approx(_direct_frechet(mu, s, mu + delta, s2), rel=1e-7)


def test_fid_from_features():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(200, 6)), rng.normal(loc=0.5, size=(300, 6))
    mu_a, s_a = feature_stats(torch.from_numpy(a))
    assert np.allclose(mu_a, a.mean(0)) and np.allclose(s_a, np.cov(a.T))
    got = fid_from_features(a, b)
    assert got == pytest.approx(_direct_frechet(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T)), rel=1e-7)
    assert fid_from_features(a, a) == pytest.approx(0, abs=1e-8)
    # Fewer samples than dimensions: singular covariances still give a finite value.
    assert np.isfinite(fid_from_features(rng.normal(size=(4, 10)), rng.normal(size=(5, 10))))
    with pytest.raises(MetricInputError, match="N, D"):
        fid_from_features(a.ravel(), b)
    with pytest.raises(MetricInputError, match="one D"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fid_weights_hook(tmp_path, monkeypatch):
    monkeypatch.delenv("FRSENGINE_FID_WEIGHTS", raising=False)
    with pytest.raises(FrsError, match="cannot download.*FRSENGINE_FID_WEIGHTS") as info:
        load_inception()
    assert "\n" not in str(info.value)
    monkeypatch.setenv("FRSENGINE_FID_WEIGHTS", str(tmp_path / "missing.safetensors"))
    with pytest.raises(FrsError, match=r"from \$FRSENGINE_FID_WEIGHTS\) does not exist"):
        inception_weights_path()
    (tmp_path / "missing.safetensors").write_bytes(b"x")
    with pytest.raises(FrsError, match="fid_from_features"):
        load_inception()
