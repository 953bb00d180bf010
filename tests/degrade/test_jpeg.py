"""The torch JPEG against a real codec (OpenCV's libjpeg)."""
import cv2
import numpy as np
import pytest
import torch

from frsengine.degrade.jpeg import jpeg_roundtrip, quant_tables

from .conftest import psnr


def real_jpeg(batch_uint8: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for img in batch_uint8.permute(0, 2, 3, 1).numpy():
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def test_quant_tables_follow_libjpeg_scaling():
    tl, tc = quant_tables(torch.tensor([50, 100, 10]))
    assert tl[0, 0] == 16 and tl[0, 63] == 99 and tc[0, 0] == 17  # q=50: the Annex K tables
    assert torch.all(tl[1] == 1) and torch.all(tc[1] == 1)  # q=100: all ones
    assert tl[2, 0] == 80 and tl[2].max() == 255  # q=10: scale 500 %, clamped at 255 (baseline)


@pytest.mark.parametrize("quality", [15, 50, 90])
@pytest.mark.parametrize("size", [(128, 128), (37, 53)])
def test_torch_jpeg_is_close_to_a_real_codec(faces, quality, size):
    x = torch.nn.functional.interpolate(faces.float(), size=size, mode="area").round().to(torch.uint8)
    ours = jpeg_roundtrip(x.float() / 255, torch.full((len(x),), quality))
    real = real_jpeg(x, quality)
    # Close to libjpeg (float vs integer DCT, rounding): far closer than to the input.
    assert psnr(ours, real).mean() > 38.0
    assert abs(psnr(ours, x / 255).mean() - psnr(real, x / 255).mean()) < 0.5
    assert torch.all(ours * 255 == (ours * 255).round())


def test_higher_quality_is_closer_to_the_input(faces):
    x = faces.float() / 255
    errs = [psnr(jpeg_roundtrip(x, torch.full((len(x),), q)), x).mean() for q in (10, 30, 60, 95)]
    assert errs == sorted(errs)


def test_per_sample_quality(faces):
    x = faces[:2].float() / 255
    both = jpeg_roundtrip(x, torch.tensor([20, 90]))
    assert torch.equal(both[0], jpeg_roundtrip(x[:1], torch.tensor([20]))[0])
    assert torch.equal(both[1], jpeg_roundtrip(x[1:], torch.tensor([90]))[0])
