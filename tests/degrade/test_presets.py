import numpy as np
import pytest

from frsengine.degrade import PRESETS, SINGLES, get_preset, parse_override, sample_params
from frsengine.degrade.params import SampleParams, blur_kernel2d, motion_kernel
from frsengine.errors import FrsError


def test_presets_follow_paper_and_reference_orders():
    assert PRESETS["paper"].order == ("blur", "down", "noise", "jpeg")
    assert PRESETS["reference"].order == ("blur", "noise", "jpeg", "down")
    ref = PRESETS["reference"]
    # imgaug's JpegCompression(compression=50..85) is quality 15..50.
    assert (ref.jpeg.quality.lo, ref.jpeg.quality.hi) == (15, 50)
    assert (ref.down.scale.lo, ref.down.scale.hi) == (2.0, 2.0) and not ref.down.antialias
    assert SINGLES == ("blur", "noise", "jpeg", "downup")


def test_overrides_and_their_errors():
    p = get_preset("paper", dict([parse_override("noise.sigma=5,10"), parse_override("jpeg.quality=70")]))
    assert (p.noise.sigma.lo, p.noise.sigma.hi) == (5.0, 10.0)
    assert (p.jpeg.quality.lo, p.jpeg.quality.hi) == (70.0, 70.0)
    assert parse_override("noise.kinds=gaussian:0.5,poisson:0.5") == (
        "noise.kinds", (("gaussian", 0.5), ("poisson", 0.5)))
    with pytest.raises(FrsError, match="unknown preset key 'noise.sigmaa'"):
        get_preset("paper", {"noise.sigmaa": 3})
    with pytest.raises(FrsError, match="unknown degradation preset"):
        get_preset("nope")
    with pytest.raises(FrsError, match="low end above high end"):
        get_preset("paper", {"blur.sigma": (5, 1)})
    with pytest.raises(FrsError, match="permutation"):
        get_preset("paper", {"order": ("blur", "blur", "noise", "jpeg")})
    with pytest.raises(FrsError, match="sum to 1"):
        get_preset("paper", {"noise.kinds": {"gaussian": 0.5}})
    with pytest.raises(FrsError, match="key=value"):
        parse_override("noise.sigma")


@pytest.mark.parametrize("name", ["paper", "reference"])
def test_sampled_params_stay_in_range_and_are_seeded(name):
    preset = PRESETS[name]
    ps = sample_params(preset, seed=3, indices=range(400))
    assert ps == sample_params(preset, seed=3, indices=range(400))
    assert ps != sample_params(preset, seed=4, indices=range(400))
    # A sample's parameters do not depend on the other samples of its batch.
    assert sample_params(preset, seed=3, indices=[17]) == [ps[17]]
    assert sample_params(preset, seed=3, indices=[17], epoch=1) != [ps[17]]
    for p in ps:
        assert preset.down.scale.lo <= p.scale <= preset.down.scale.hi
        assert preset.jpeg.quality.lo <= p.jpeg_quality <= preset.jpeg.quality.hi
        if p.blur_kind == "gaussian":
            assert preset.blur.sigma.lo <= p.blur_sigma <= preset.blur.sigma.hi
        else:
            assert preset.blur.motion_size.lo <= p.motion_size <= preset.blur.motion_size.hi
        assert SampleParams.from_json(p.to_json()) == p
    kinds = {p.noise_kind for p in ps}
    blur_kinds = {p.blur_kind for p in ps}
    if name == "reference":
        assert kinds == {"gaussian", "laplace", "poisson"} and blur_kinds == {"gaussian", "motion"}
    else:
        assert kinds == {"gaussian"} and blur_kinds == {"gaussian"}


@pytest.mark.parametrize("angle", [0.0, 33.0, 90.0, 217.0])
def test_motion_kernel_is_a_normalised_symmetric_line(angle):
    k = motion_kernel(14, angle)
    assert k.shape == (15, 15) and np.isclose(k.sum(), 1.0)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-12)  # correlation == convolution
    # Its energy lies along the line: the second moment along the line's direction is large.
    ys, xs = np.mgrid[0:15, 0:15] - 7
    t = np.deg2rad(angle)
    along = (xs * np.cos(t) - ys * np.sin(t))
    across = (xs * np.sin(t) + ys * np.cos(t))
    assert (k * along**2).sum() > 10 * (k * across**2).sum()


def test_gaussian_kernel_matches_sigma():
    p = SampleParams("gaussian", 2.0, 0, 0.0, 1.0, "gaussian", 0.0, 90, 0)
    k = blur_kernel2d(p, truncate=4.0)
    ys, xs = np.mgrid[0:k.shape[0], 0:k.shape[1]] - k.shape[0] // 2
    assert np.isclose((k * xs**2).sum(), 4.0, rtol=1e-3)
