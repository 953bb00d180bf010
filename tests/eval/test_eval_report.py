"""The pieces of `frsengine eval` that need no model: summaries, ranking, task names, labels, cache keys."""
import math
import os

import pytest

from frsengine.errors import FrsError
from frsengine.eval.lqset import cache_key
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
