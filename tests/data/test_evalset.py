"""build_eval_set: layout, params.json, bad files, reproducibility, resume."""
import json

import numpy as np
import pytest
from PIL import Image

import frsengine.data.evalset as evalset
from frsengine.data import build_eval_set, output_names
from frsengine.degrade import SINGLES, Degrader, SampleParams
from frsengine.errors import FrsError

SIZE = 32


def make_faces(root, n=7, bad=("zz_broken.jpg",)):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        h, w = 40 + 3 * i, 50
        yy, xx = np.mgrid[:h, :w]
        img = np.stack([xx * 5, yy * 4, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
        Image.fromarray(img).save(root / f"f{i}.png")
    Image.fromarray(np.full((30, 30), 128, np.uint8)).save(root / "gray.png")
    for name in bad:
        (root / name).write_bytes(b"\xff\xd8\xff junk")
    (root / "README.txt").write_text("notes")
    return root


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of a run."""


def build(inp, out, **kw):
    kw = {"seed": 3, "size": SIZE, "batch_size": 3, "progress": False, **kw}
    return build_eval_set(inp, out, **kw)


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_params_and_bad_files(tmp_path):
    inp = make_faces(tmp_path / "in")
    messages = []
    s = build(inp, tmp_path / "out", report=messages.append)
    assert (s.total, s.written, s.resumed, s.ok) == (9, 8, 0, 8)
    assert s.ignored == ["README.txt"]
    assert s.skipped == [(str(inp / "zz_broken.jpg"), s.skipped[0][1])]
    assert any(m.startswith(f"skipped {inp / 'zz_broken.jpg'}: ") for m in messages)
    assert f"note {inp / 'gray.png'}: grayscale converted to RGB" in messages
    out = tmp_path / "out"
    for d in ["hq", "full", *SINGLES]:
        files = sorted(p.name for p in (out / d).iterdir())
        assert files == sorted([f"f{i}.png" for i in range(7)] + ["gray.png"]), d
        img = np.asarray(Image.open(out / d / "f0.png"))
        assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    assert not (out / evalset.PARTIAL_FILE).exists()
    record = json.loads((out / "params.json").read_text())
    assert record["format_version"] == 1 and record["seed"] == 3 and record["size"] == SIZE
    assert record["preset"]["name"] == "paper" and record["backend"] == "torch"
    assert record["skipped"].keys() == {"zz_broken.jpg"}
    assert record["files"]["gray.png"]["notes"] == ["grayscale converted to RGB"]
    deg = Degrader("paper", "torch")
    for name, rec in record["files"].items():
        assert rec["source"] == name  # all sources are .png here
        # the sample index is the position in the sorted list, bad files included
        sources = sorted(p.name for p in inp.iterdir() if p.suffix != ".txt")
        assert rec["index"] == sources.index(rec["source"])
        assert SampleParams.from_json(rec["params"]) == deg.params(3, [rec["index"]])[0]


def test_hq_matches_input_and_singles_differ(tmp_path):
    inp = make_faces(tmp_path / "in", n=2, bad=())
    build(inp, tmp_path / "out", size=40)
    hq = np.asarray(Image.open(tmp_path / "out" / "hq" / "f0.png"))
    np.testing.assert_array_equal(hq, np.asarray(Image.open(inp / "f0.png"))[:40, 5:45])
    full = np.asarray(Image.open(tmp_path / "out" / "full" / "f0.png"))
    assert np.abs(full.astype(int) - hq).mean() > 1


def test_rerun_is_byte_identical_and_seed_matters(tmp_path):
    inp = make_faces(tmp_path / "in")
    build(inp, tmp_path / "a")
    build(inp, tmp_path / "b")
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    build(inp, tmp_path / "c", seed=4)
    assert tree_bytes(tmp_path / "c")["full/f0.png"] != a["full/f0.png"]


def test_opencv_backend_and_no_singles(tmp_path):
    inp = make_faces(tmp_path / "in", n=3, bad=())
    s = build(inp, tmp_path / "out", backend="opencv", singles=False, preset="reference")
    assert s.written == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["full", "hq", "params.json"]
    record = json.loads((tmp_path / "out" / "params.json").read_text())
    assert record["dirs"] == ["hq", "full"] and record["preset"]["name"] == "reference"


def test_resume_after_interruption(tmp_path, monkeypatch):
    inp = make_faces(tmp_path / "in")
    build(inp, tmp_path / "fresh")
    real_write, calls, fail = evalset._write_batch, [], {"at": 2}

    def interrupt_second_batch(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == fail["at"]:
            raise Interrupted
        real_write(*args, **kwargs)

    monkeypatch.setattr(evalset, "_write_batch", interrupt_second_batch)
    with pytest.raises(Interrupted):
        build(inp, tmp_path / "out")
    out = tmp_path / "out"
    partial = json.loads((out / evalset.PARTIAL_FILE).read_text())
    assert sorted(partial["files"]) == ["f0.png", "f1.png", "f2.png"] and not (out / "params.json").exists()
    first_mtime = (out / "full" / "f0.png").stat().st_mtime_ns

    calls.clear()
    fail["at"] = None
    s = build(inp, out)
    assert (s.resumed, s.written) == (3, 5)
    assert calls[0] == ["f3.png", "f4.png", "f5.png"]  # batch 1 was not redone
    assert (out / "full" / "f0.png").stat().st_mtime_ns == first_mtime
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh")

    calls.clear()
    s = build(inp, out)  # complete: nothing left to do
    assert (s.resumed, s.written, calls) == (8, 0, [])
    assert len(s.skipped) == 1 and tree_bytes(out) == tree_bytes(tmp_path / "fresh")


def test_missing_output_redoes_its_batch(tmp_path):
    inp = make_faces(tmp_path / "in")
    build(inp, tmp_path / "out")
    before = tree_bytes(tmp_path / "out")
    (tmp_path / "out" / "noise" / "f4.png").unlink()
    s = build(inp, tmp_path / "out")
    assert (s.resumed, s.written) == (5, 3)
    assert tree_bytes(tmp_path / "out") == before


def test_other_settings_are_refused(tmp_path):
    inp = make_faces(tmp_path / "in", n=2, bad=())
    build(inp, tmp_path / "out")
    with pytest.raises(FrsError, match="other settings .*seed"):
        build(inp, tmp_path / "out", seed=9)
    (inp / "new.png").write_bytes((inp / "f0.png").read_bytes())
    with pytest.raises(FrsError, match="sources"):
        build(inp, tmp_path / "out")


def test_limit_list_and_output_inside_input(tmp_path):
    inp = make_faces(tmp_path / "in")
    s = build(inp, inp / "evalset", limit=2)
    assert (s.total, s.written) == (2, 2)
    s = build(inp, inp / "evalset", limit=2)  # its own outputs are not inputs
    assert (s.total, s.resumed) == (2, 2)
    lst = tmp_path / "list.txt"
    lst.write_text("f5.png\nf1.png\n")
    s = build(inp, tmp_path / "listed", list_file=lst)
    record = json.loads((tmp_path / "listed" / "params.json").read_text())
    assert [(k, v["index"]) for k, v in record["files"].items()] == [("f1.png", 0), ("f5.png", 1)]
    with pytest.raises(FrsError, match="differ"):
        build(inp, inp)


def test_output_names_avoid_collisions():
    assert output_names(["a.jpg", "b/c.jpeg"]) == ["a.png", "b/c.png"]
    assert output_names(["a.jpg", "a.png", "b.png"]) == ["a.jpg.png", "a.png.png", "b.png"]
    names = output_names(["a.jpg", "a.png", "a.jpg.png"])
    assert len(set(names)) == 3
