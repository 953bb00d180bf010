"""The pieces of `frsengine eval` that need no model: summaries, ranking, task names, labels, cache keys."""
import math
import os

import pytest

from frsengine.errors import FrsError
from frsengine.eval.lqset import cache_key
from frsengine.eval.metrics import check_size, full_reference_metrics
from frsengine.eval.models import unique_labels
from frsengine.eval.report import fmt, json_safe, rank_marks, summarize
from frsengine.eval.tasks import parse_tasks


def test_summarize_leaves_out_infinite_and_nan():
    s = summarize([20.0, 22.0, math.inf, math.nan])
    assert s == {"n": 2, "mean": 21.0, "std": 1.0, "inf": 1}
    empty = summarize([math.nan])
    assert empty["n"] == 0 and math.isnan(empty["mean"])
    assert json_safe(empty) == {"n": 0, "mean": "nan", "std": "nan"}
    assert fmt(empty["mean"], "psnr") == "–" and fmt(21.0, "psnr", 1.0) == "21.00 ± 1.00"


def test_rank_marks_ties_and_direction():
    assert rank_marks([1.0, 3.0, 3.0, 2.0, None], True) == ["", "best", "best", "second", ""]
    assert rank_marks([0.4, 0.2, 0.3], False) == ["", "best", "second"]
    assert rank_marks([None, None], True) == ["", ""]


def test_parse_tasks():
    assert parse_tasks("sr, full,sr") == ["sr", "full"]
    with pytest.raises(FrsError, match="unknown task 'deblur'"):
        parse_tasks("deblur")
    with pytest.raises(FrsError, match="no task"):
        parse_tasks(" , ")


def test_unique_labels():
    assert unique_labels(["a/frsnet", "b/frsnet/", "c/m.safetensors"]) == ["frsnet", "frsnet (2)", "m"]
    assert unique_labels(["x", "y"], ["GT", "mine"]) == ["GT (2)", "mine"]


def test_cache_key_follows_files_and_settings(tmp_path):
    (tmp_path / "a.png").write_bytes(b"1")
    files = [tmp_path / "a.png"]
    key = cache_key(tmp_path, files, {"name": "paper"}, 0, 128, "torch", None)
    assert key == cache_key(tmp_path, files, {"name": "paper"}, 0, 128, "torch", None)
    assert key != cache_key(tmp_path, files, {"name": "paper"}, 1, 128, "torch", None)
    assert key != cache_key(tmp_path, files, {"name": "reference"}, 0, 128, "torch", None)
    assert key != cache_key(tmp_path, files, {"name": "paper"}, 0, 64, "torch", None)
    st = (tmp_path / "a.png").stat()
    os.utime(tmp_path / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # an edited face
    assert key != cache_key(tmp_path, files, {"name": "paper"}, 0, 128, "torch", None)


@pytest.mark.parametrize("size,win", [(128, 7), (97, 7), (160, 7), (161, 11), (176, 11), (96, None), (64, None)])
def test_ms_ssim_window_per_face_size(size, win):
    """MS-SSIM is kept at the default 128 px (7x7 window), with its window recorded; below 97 px it is
    left out with the reason naming the minimum."""
    import torch

    from frsengine.metrics import ms_ssim

    kept, omitted = check_size(full_reference_metrics(False, size), size)
    names = [m.name for m in kept]
    assert names[:2] == ["psnr", "ssim"]
    if win is None:
        assert names == ["psnr", "ssim"] and "97x97" in omitted["ms_ssim"]
        return
    assert names == ["psnr", "ssim", "ms_ssim"] and omitted == {}
    ms = kept[2]
    assert ms.row()["info"]["win_size"] == win and ms.info["scales"] == 5
    assert ms.note.startswith(f"MS-SSIM: 5 scales, {win}x{win} Gaussian window at {size} px")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g)
    y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.equal(ms.fn(x, y), ms_ssim(x, y, win_size=win))
    y_metrics = full_reference_metrics(True, size)
    assert y_metrics[2].label == "MS-SSIM (Y)" and y_metrics[2].note.startswith(f"MS-SSIM (Y): 5 scales, {win}x{win}")
