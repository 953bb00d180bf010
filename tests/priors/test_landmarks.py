"""The dlib teacher: graceful results where it finds nothing, plausibility, the per-image cache."""
import numpy as np
import pytest

from frsengine.errors import FrsError
from frsengine.priors import landmarks as L
from frsengine.priors.build import run_teacher
from frsengine.io import write_image
from tests.priors.conftest import UTK, template_landmarks

dlib = pytest.importorskip("dlib", reason="dlib-bin is not installed")


def test_a_face_without_a_face_gets_a_flag_not_a_crash():
    for img in (np.full((120, 120, 3), 128, np.uint8),
                np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8),
                np.zeros((40, 40), np.uint8)):
        res = L.detect_landmarks(img)
        assert res.source == "none" and not res.ok
        assert res.points.shape == (68, 2) and np.isnan(res.points).all()
        assert "no face detected" in res.reason


def test_fallback_off_and_bad_input():
    res = L.detect_landmarks(np.full((64, 64, 3), 200, np.uint8), fallback=False)
    assert res.source == "none" and "fallback off" in res.reason
    with pytest.raises(FrsError, match="uint8"):
        L.detect_landmarks(np.zeros((64, 64, 3), np.float32))


def test_plausibility():
    pts = template_landmarks(128)
    assert L.plausibility(pts, 128, 128) == ""
    swapped = pts.copy()
    swapped[36:42], swapped[42:48] = pts[42:48], pts[36:42]
    assert "wrong order" in L.plausibility(swapped, 128, 128)
    upside = pts.copy()
    upside[:, 1] = 127 - pts[:, 1]
    upside[:, 0] = 127 - pts[:, 0]  # rotated 180 degrees: the eyes swap sides too
    assert L.plausibility(upside, 128, 128) != ""
    assert "eye distance" in L.plausibility(pts * 0.1, 128, 128)
    assert "outside" in L.plausibility(pts + 200, 128, 128)
    assert "non-finite" in L.plausibility(np.full((68, 2), np.nan), 128, 128)
    assert L.fallback_box(200, 200) == (15, 15, 184, 184)


def test_cache_round_trip_without_pickle(tmp_path):
    cache = L.TeacherCache(64, "root")
    ok = L.LandmarkResult(template_landmarks(128), "hog", (1, 2, 3, 4))
    bad = L.LandmarkResult(np.full((68, 2), np.nan, np.float32), "none", (0, 0, 0, 0), "no face detected")
    cache.add("a.jpg", ok, 128, 128)
    cache.add("b/c.jpg", bad, 100, 100)
    path = cache.save(tmp_path / "t.npz")
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert set(z.files) == {"meta", "names", "points", "source", "boxes"}
    back = L.TeacherCache.load(path)
    assert back.names == ["a.jpg", "b/c.jpg"] and back.size == 64 and back.counts() == {"hog": 1, "fallback": 0, "none": 1}
    names, pts = back.usable()
    assert names == ["a.jpg"] and np.allclose(pts[0], template_landmarks(128) * 0.5 - 0.25, atol=1e-5)
    assert back.reasons == {"b/c.jpg": "no face detected"}
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(FrsError, match="not a teacher cache"):
        L.TeacherCache.load(tmp_path / "junk.npz")
    with pytest.raises(FrsError, match="does not exist"):
        L.TeacherCache.load(tmp_path / "none.npz")


def test_teacher_pass_resumes_and_reports_unreadable_files(tmp_path):
    root = tmp_path / "faces"
    for i in range(4):
        write_image(root / f"{i}.png", np.full((48, 48, 3), 40 * i, np.uint8))
    (root / "broken.png").write_bytes(b"\x89PNG broken")
    names = ["0.png", "1.png", "broken.png", "2.png", "3.png"]
    messages = []
    cache, summary = run_teacher(root, names[:2], tmp_path / "t.npz", size=32, progress=False, report=messages.append)
    assert (summary.done_before, summary.labelled) == (0, 2)
    cache, summary = run_teacher(root, names, tmp_path / "t.npz", size=32, save_every=1, progress=False,
                                 report=messages.append)
    assert (summary.done_before, summary.labelled, summary.unreadable) == (2, 2, ["broken.png"])
    assert len(cache) == 4 and cache.counts()["none"] == 4
    assert any("broken.png" in m for m in messages)
    with pytest.raises(FrsError, match="size 32"):
        run_teacher(root, names, tmp_path / "t.npz", size=64, progress=False)


@pytest.mark.data
@pytest.mark.skipif(not UTK.is_dir(), reason=f"face data not found at {UTK}")
def test_real_aligned_face():
    from frsengine.io import read_image

    img, _ = read_image(sorted(UTK.iterdir())[0])
    res = L.detect_landmarks(img)
    assert res.ok and res.source in ("hog", "fallback") and L.plausibility(res.points, *img.shape[:2]) == ""
    # the same face, blacked out: a clear flag
    res = L.detect_landmarks(np.zeros_like(img))
    assert res.source == "none"
