"""FaceFolder and DegradedLoader: shapes, determinism, workers, bad files."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from frsengine.data import DegradedLoader, FaceFolder
from frsengine.degrade import SINGLES, Degrader
from frsengine.errors import FrsError
from frsengine.io import to_square

SIZE = 32


def make_faces(root, n=10, bad=()):
    """n smooth synthetic 'faces' of varying sizes and formats; names in `bad` are junk."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = 40 + 7 * i, 36 + 5 * i
        yy, xx = np.mgrid[:h, :w]
        img = np.stack([(xx * 255 // w), (yy * 255 // h), rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
        Image.fromarray(img).save(root / (f"face{i:02d}.png" if i % 2 else f"face{i:02d}.jpg"))
    for name in bad:
        (root / name).write_text("not an image")
    return root


def make_loader(dataset, seed=0, workers=0, batch_size=4, shuffle=True):
    return DegradedLoader(dataset, Degrader("paper", "torch"), batch_size=batch_size, seed=seed,
                          shuffle=shuffle, num_workers=workers)


def batches(loader):
    return [(b.hq, b.lq_full, b.lq_singles, b.params) for b in loader]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for t, u in zip(x[:3], y[:3]):
            torch.testing.assert_close(t, u, rtol=0, atol=0)
        assert x[3] == y[3]


def test_face_folder_items(tmp_path):
    ds = FaceFolder(make_faces(tmp_path / "f"), size=SIZE)
    assert len(ds) == 10
    img, idx = ds[3]
    assert img.dtype == torch.uint8 and img.shape == (3, SIZE, SIZE) and idx == 3
    expected = to_square(np.asarray(Image.open(ds.paths[3]).convert("RGB")), SIZE)
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), expected)


def test_list_file_selects_and_warns_on_missing(tmp_path, caplog):
    root = make_faces(tmp_path / "f")
    lst = tmp_path / "list.txt"
    lst.write_text("# validation faces\nface03.png\n\nface00.jpg\ngone.png\n")
    with caplog.at_level(logging.WARNING, logger="frsengine.data"):
        ds = FaceFolder(root, size=SIZE, list_file=lst)
    assert [p.name for p in ds.paths] == ["face03.png", "face00.jpg"]
    assert "gone.png" in caplog.text
    lst.write_text("gone.png\n")
    with pytest.raises(FrsError, match="none of the 1 files"):
        FaceFolder(root, list_file=lst)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrsError, match="no image files"):
        FaceFolder(tmp_path / "empty")


def test_loader_shapes_and_ranges(tmp_path):
    loader = make_loader(FaceFolder(make_faces(tmp_path / "f"), size=SIZE))
    out = list(loader)
    assert len(out) == len(loader) == 3
    b = out[0]
    assert b.hq.shape == b.lq_full.shape == (4, 3, SIZE, SIZE)
    assert b.lq_singles.shape == (4, len(SINGLES), 3, SIZE, SIZE)
    assert b.hq.dtype == b.lq_full.dtype == b.lq_singles.dtype == torch.float32
    for t in (b.hq, b.lq_full, b.lq_singles):
        assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert len(b.params) == 4 and out[-1].hq.shape[0] == 2
    assert not torch.equal(b.hq, b.lq_full)


def test_loader_is_deterministic_per_seed_and_epoch(tmp_path):
    ds = FaceFolder(make_faces(tmp_path / "f"), size=SIZE)
    first = batches(make_loader(ds, seed=7))
    assert_same(first, batches(make_loader(ds, seed=7)))
    other = batches(make_loader(ds, seed=8))
    assert [p for b in other for p in b[3]] != [p for b in first for p in b[3]]
    loader = make_loader(ds, seed=7)
    loader.set_epoch(1)
    epoch1 = batches(loader)
    assert not torch.equal(epoch1[0][0], first[0][0])  # new order (and new parameters)
    loader.set_epoch(0)
    assert_same(first, batches(loader))  # an epoch does not depend on what ran before


def test_unshuffled_params_follow_dataset_index(tmp_path):
    ds = FaceFolder(make_faces(tmp_path / "f"), size=SIZE)
    deg = Degrader("paper", "torch")
    got = [p for b in make_loader(ds, seed=3, shuffle=False) for p in b.params]
    assert got == deg.params(3, range(10))


def test_two_workers_give_the_same_batches(tmp_path):
    ds = FaceFolder(make_faces(tmp_path / "f", bad=("broken.png",)), size=SIZE)
    assert_same(batches(make_loader(ds, seed=1, workers=0)), batches(make_loader(ds, seed=1, workers=2)))


def test_bad_file_is_logged_once_and_replaced_by_the_next_good_one(tmp_path, caplog):
    ds = FaceFolder(make_faces(tmp_path / "f", n=4, bad=("face01b.png",)), size=SIZE)
    names = [p.name for p in ds.paths]
    bad = names.index("face01b.png")
    assert names[bad + 1] == "face02.jpg"
    with caplog.at_level(logging.WARNING, logger="frsengine.data"):
        img, idx = ds[bad]
        again, _ = ds[bad]
    assert idx == bad  # the requested index: the sample keeps its own degradation parameters
    torch.testing.assert_close(img, ds[bad + 1][0], rtol=0, atol=0)
    torch.testing.assert_close(again, img, rtol=0, atol=0)
    records = [r for r in caplog.records if "face01b.png" in r.getMessage()]
    assert len(records) == 1 and "not an image" in records[0].getMessage()


def test_all_bad_raises(tmp_path):
    root = tmp_path / "f"
    root.mkdir()
    for name in ("a.png", "b.jpg"):
        (root / name).write_text("junk")
    ds = FaceFolder(root, size=SIZE)
    with pytest.raises(FrsError, match="none of the 2 files"):
        ds[0]


@pytest.mark.parametrize("backend", ["opencv", "torch"])
def test_degrading_in_workers_matches_the_main_process(tmp_path, backend):
    ds = FaceFolder(make_faces(tmp_path / "f"), size=SIZE)

    def run(where):
        loader = DegradedLoader(ds, Degrader("reference", backend), batch_size=4, seed=2,
                                num_workers=2, degrade_in=where)
        loader.set_epoch(1)
        return loader, batches(loader)

    main_loader, main = run("main")
    work_loader, work = run("workers")
    assert not main_loader.in_workers and work_loader.in_workers
    assert [b[3] for b in main] == [b[3] for b in work]
    for x, y in zip(main, work):
        for t, u in zip(x[:3], y[:3]):
            # Thread counts differ (workers use one): float sums may round one level apart.
            assert (t - u).abs().max() <= 1 / 255 + 1e-6


def test_degrade_in_is_validated(tmp_path):
    ds = FaceFolder(make_faces(tmp_path / "f", n=2), size=SIZE)
    with pytest.raises(FrsError, match="num_workers > 0"):
        DegradedLoader(ds, Degrader("paper", "torch"), num_workers=0, degrade_in="workers")
    with pytest.raises(FrsError, match="degrade_in must be"):
        DegradedLoader(ds, Degrader("paper", "torch"), degrade_in="gpu")
