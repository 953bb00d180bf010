"""frsengine.restore: every input kind comes back as the same kind (type, shape, dtype, channel
order). The 'lift' package adds exactly 26/255 to the red channel, so channel order is observable."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import frsengine
from frsengine.api import RestoreWarning
from frsengine.errors import FrsError

LIFT8 = 26


def face(h=128, w=128, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)  # < 230: the lift never clips
    return img


def smooth(h, w, seed=0):
    """A smooth image (survives resizing to 128x128 and back)."""
    import cv2

    low = np.random.default_rng(seed).integers(0, 200, (6, 6, 3)).astype(np.float32)
    return np.round(cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)).astype(np.uint8)


def test_numpy_rgb_uint8(lift_package):
    img = face()
    out = frsengine.restore(img, lift_package, backend="torch")
    assert isinstance(out, np.ndarray) and out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[:, :, 0].astype(int), img[:, :, 0].astype(int) + LIFT8)
    assert np.array_equal(out[:, :, 1:], img[:, :, 1:])


def test_numpy_bgr_flag(lift_package):
    bgr = face()[:, :, ::-1].copy()
    out = frsengine.restore(bgr, lift_package, backend="torch", bgr=True)
    assert np.array_equal(out[:, :, 2].astype(int), bgr[:, :, 2].astype(int) + LIFT8)  # red is last in BGR
    assert np.array_equal(out[:, :, :2], bgr[:, :, :2])


def test_numpy_batch_list_and_tuple(lift_package):
    batch = np.stack([face(seed=i) for i in range(3)])
    out = frsengine.restore(batch, lift_package, batch_size=2)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 0].astype(int), batch[..., 0].astype(int) + LIFT8)
    as_list = frsengine.restore(list(batch), lift_package)
    as_tuple = frsengine.restore(tuple(batch), lift_package)
    assert isinstance(as_list, list) and isinstance(as_tuple, tuple) and len(as_tuple) == 3
    assert all(np.array_equal(a, b) for a, b in zip(as_list, out))


def test_numpy_uint16_float_and_any_size(lift_package):
    img16 = face().astype(np.uint16) * 257
    out16 = frsengine.restore(img16, lift_package)
    assert out16.dtype == np.uint16 and out16.shape == img16.shape
    assert np.abs(out16[..., 0].astype(int) - img16[..., 0] - 26 * 257).max() <= 1
    assert np.abs(out16[..., 1:].astype(int) - img16[..., 1:]).max() <= 1
    f = face().astype(np.float32) / 255
    outf = frsengine.restore(f, lift_package)
    assert outf.dtype == np.float32 and np.allclose(outf[..., 0], f[..., 0] + 26 / 255, atol=1e-5)
    odd = smooth(200, 90)  # resized to 128x128 and back
    out_odd = frsengine.restore(odd, lift_package)
    assert out_odd.shape == (200, 90, 3) and out_odd.dtype == np.uint8
    diff = out_odd.astype(int) - odd
    assert abs(diff[..., 0].mean() - LIFT8) < 2 and np.abs(diff[..., 1:]).mean() < 2


def test_gray_stays_gray_and_alpha_is_kept(lift_package):
    gray = face()[:, :, 0]
    out = frsengine.restore(gray, lift_package)
    assert out.shape == gray.shape and out.dtype == np.uint8
    rgb_gray = np.repeat(gray[:, :, None], 3, axis=2)  # 3 equal channels: stays gray too
    out3 = frsengine.restore(rgb_gray, lift_package)
    assert np.array_equal(out3[..., 0], out3[..., 1]) and np.array_equal(out3[..., 1], out3[..., 2])
    rgba = np.dstack([face(), np.arange(128 * 128, dtype=np.uint32).reshape(128, 128) % 256]).astype(np.uint8)
    out4 = frsengine.restore(rgba, lift_package)
    assert out4.shape == rgba.shape and np.array_equal(out4[..., 3], rgba[..., 3])
    assert np.array_equal(out4[..., 0].astype(int), rgba[..., 0].astype(int) + LIFT8)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "I;16", "P"])
def test_pil_modes(lift_package, mode):
    base = Image.fromarray(smooth(100, 140))
    im = base.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    out = frsengine.restore(im, lift_package)
    assert isinstance(out, Image.Image) and out.size == im.size
    assert out.mode == (mode if mode != "P" else "RGB")
    if mode == "RGB":
        diff = np.asarray(out, int) - np.asarray(im, int)
        assert abs(diff[..., 0].mean() - LIFT8) < 2 and np.abs(diff[..., 1:]).mean() < 2  # 100x140 -> 128 -> back


def test_torch_tensors(lift_package):
    x = torch.rand(3, 3, 128, 128) * 0.8
    y = frsengine.restore(x, lift_package)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.allclose(y[:, 0], x[:, 0] + 26 / 255, atol=1e-5) and torch.allclose(y[:, 1:], x[:, 1:], atol=1e-6)
    x64 = (torch.rand(2, 3, 96, 80) * 0.8).double()  # general path: other size and dtype
    y64 = frsengine.restore(x64, lift_package)
    assert y64.shape == x64.shape and y64.dtype == torch.float64
    chw = torch.rand(1, 64, 64)  # single gray CHW
    out = frsengine.restore(chw, lift_package)
    assert out.shape == chw.shape and out.dtype == chw.dtype
    with pytest.raises(FrsError, match="float"):
        frsengine.restore(torch.zeros(1, 3, 128, 128, dtype=torch.uint8), lift_package)


def test_paths_files_and_folders(lift_package, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    img = face()
    Image.fromarray(img).save(src / "a.png")
    Image.fromarray(img[:, :, 0]).save(src / "gray.png")
    (src / "sub").mkdir()
    Image.fromarray(img).save(src / "sub" / "b.jpg", quality=95)
    arr = frsengine.restore(src / "a.png", lift_package)  # no output_dir: an array comes back
    assert isinstance(arr, np.ndarray) and np.array_equal(arr[..., 0].astype(int), img[..., 0].astype(int) + LIFT8)
    outs = frsengine.restore(str(src), lift_package, output_dir=tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in outs] == ["a.png", "gray.png", "sub/b.jpg"]
    back = np.asarray(Image.open(outs[0]))
    assert back.shape == img.shape and np.array_equal(back[..., 0].astype(int), img[..., 0].astype(int) + LIFT8)
    assert Image.open(outs[1]).mode == "L"
    assert Image.open(outs[2]).size == (128, 128)


def test_16bit_and_rgba_files_keep_their_form(lift_package, tmp_path):
    import cv2

    img16 = (face().astype(np.uint16) * 257)[:, :, ::-1]  # BGR for cv2
    cv2.imwrite(str(tmp_path / "deep.png"), np.ascontiguousarray(img16))
    rgba = np.dstack([face(), np.full((128, 128), 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(face()).save(tmp_path / "photo.webp", lossless=True)
    outs = frsengine.restore([tmp_path / "deep.png", tmp_path / "alpha.png", tmp_path / "photo.webp"],
                             lift_package, output_dir=tmp_path / "out")
    deep = cv2.imread(str(outs[0]), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16 and deep.shape == (128, 128, 3)
    alpha = np.asarray(Image.open(outs[1]))
    assert alpha.shape == (128, 128, 4) and (alpha[..., 3] == 77).all()
    assert outs[2].suffix == ".png"  # webp is written as PNG


def test_nan_output_is_caught(tmp_path):
    from frsengine.export import load_package, save_package

    from tests.package_fixtures import tiny_frsnet

    pkg = load_package(save_package(tiny_frsnet([float("nan"), 0.0, 0.0]), tmp_path / "nan", preset="tiny"))
    img = face()
    with pytest.warns(RestoreWarning, match="NaN/inf"):
        out, rep = frsengine.restore(img, pkg, return_report=True)
    assert np.array_equal(out, img) and not rep.ok and "NaN" in rep.items[0].error
    with pytest.warns(RestoreWarning, match="NaN/inf"):
        y = frsengine.restore(torch.rand(2, 3, 128, 128), pkg)
    assert torch.isfinite(y).all()


def test_model_none_says_what_to_pass(monkeypatch):
    monkeypatch.delenv("FRSENGINE_MODEL", raising=False)
    with pytest.raises(FrsError, match="pass model="):
        frsengine.restore(face())


def test_bad_in_memory_inputs(lift_package):
    with pytest.raises(FrsError, match="too small"):
        frsengine.restore(np.zeros((1, 1, 3), np.uint8), lift_package)
    with pytest.raises(FrsError, match="cannot restore a dict"):
        frsengine.restore({"a": 1}, lift_package)
    with pytest.raises(FrsError, match="one kind"):
        frsengine.restore([face(), Image.fromarray(face())], lift_package)
    with pytest.raises(FrsError, match="NaN"):
        frsengine.restore(np.full((32, 32, 3), np.nan, np.float32), lift_package)
    with pytest.raises(FrsError, match=r"must lie in \[0, 1\].*divide by 255"):
        frsengine.restore(np.full((32, 32, 3), 200.0, np.float32), lift_package)
    with pytest.raises(FrsError, match="divide by 255"):
        frsengine.restore(torch.full((1, 3, 128, 128), 7.0), lift_package)


def test_backend_choice_is_reported(lift_package, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="frsengine"):
        _, rep = frsengine.restore(face(), lift_package, backend="auto", return_report=True)
    assert rep.backend.startswith("torch (cpu")
    with pytest.raises(FrsError, match="unknown backend"):
        frsengine.restore(face(), lift_package, backend="nope")
    with pytest.raises(FrsError, match="fp16 is for CUDA"):
        frsengine.restore(face(), lift_package, backend="torch", device="cpu", precision="fp16")


def test_warnings_are_quiet_on_success(lift_package):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RestoreWarning)
        frsengine.restore(face(), lift_package)
