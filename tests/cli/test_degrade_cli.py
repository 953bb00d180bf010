"""`frsengine degrade` end to end (in process, through frsengine.cli.main)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import frsengine.data.evalset as evalset
from frsengine.cli import main
from frsengine.degrade import BACKENDS, PRESETS, SINGLES

FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces-hq" / "utkface-aligned"


def make_folder(root, n=5):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for i in range(n):
        yy, xx = np.mgrid[:60, :70]
        img = np.stack([xx * 3, yy * 4, rng.integers(0, 256, (60, 70))], -1).astype(np.uint8)
        Image.fromarray(img).save(root / f"face{i}.jpg", quality=95)
    (root / "broken.png").write_text("not a png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "tiny.png")
    return root


def degrade(*args, backend="torch"):
    return main(["degrade", "--backend", backend, "--size", "32", "--batch-size", "2", "--quiet", *map(str, args)])


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("backend", ["torch", "opencv"])
def test_end_to_end_with_bad_files(tmp_path, capsys, backend):
    inp, out = make_folder(tmp_path / "in"), tmp_path / "out"
    preview = tmp_path / "prev" / "grid.png"
    rc = degrade("--input", inp, "--output", out, "--seed", 5, "--preview", preview, backend=backend)
    cap = capsys.readouterr()
    assert rc == 0
    assert f"skipped {inp / 'broken.png'}: not an image" in cap.err
    assert f"skipped {inp / 'tiny.png'}: too small (4x4 px" in cap.err
    assert "5 of 7 faces" in cap.out and "2 skipped" in cap.out
    record = json.loads((out / "params.json").read_text())
    assert record["backend"] == backend and record["seed"] == 5
    assert sorted(record["files"]) == [f"face{i}.png" for i in range(5)]
    assert sorted(record["skipped"]) == ["broken.png", "tiny.png"]
    for d in ["hq", "full", *SINGLES]:
        assert len(list((out / d).glob("*.png"))) == 5
    grid = np.asarray(Image.open(preview))
    assert grid.shape[1] == 2 + 6 * 34 and grid.shape[0] > 2 + 5 * 34  # 6 columns, 5 rows + header


def test_rerun_reproducible_and_resume(tmp_path, capsys, monkeypatch):
    inp = make_folder(tmp_path / "in")
    assert degrade("--input", inp, "--output", tmp_path / "a") == 0
    assert degrade("--input", inp, "--output", tmp_path / "b") == 0
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")

    real_write = evalset._write_batch
    calls = []

    def ctrl_c_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(*args, **kwargs)

    monkeypatch.setattr(evalset, "_write_batch", ctrl_c_on_second_batch)
    assert degrade("--input", inp, "--output", tmp_path / "c") == 130
    assert (tmp_path / "c" / evalset.PARTIAL_FILE).exists()
    monkeypatch.setattr(evalset, "_write_batch", real_write)
    capsys.readouterr()
    assert degrade("--input", inp, "--output", tmp_path / "c") == 0
    # batch 1 = broken.png + face0 was kept; the other 4 faces are written now
    assert "(4 written, 1 already there)" in capsys.readouterr().out
    assert tree_bytes(tmp_path / "c") == tree_bytes(tmp_path / "a")


def test_nothing_processable_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"junk")
    (bad / "notes.txt").write_text("x")
    assert degrade("--input", bad, "--output", tmp_path / "o1") == 1
    err = capsys.readouterr().err
    assert f"skipped {bad / 'a.jpg'}" in err and "no face could be processed" in err
    assert not (tmp_path / "o1" / "params.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert degrade("--input", empty, "--output", tmp_path / "o2") == 1
    assert "no image files" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    inp = make_folder(tmp_path / "in", n=1)
    assert degrade("--input", tmp_path / "nope", "--output", tmp_path / "o") == 2
    assert "does not exist" in capsys.readouterr().err
    assert degrade("--input", inp, "--output", tmp_path / "o", "--set", "noise.bogus=1") == 2
    assert "unknown preset key 'noise.bogus'" in capsys.readouterr().err
    assert degrade("--input", inp, "--output", tmp_path / "o", "--preset", "nope") == 2
    assert "unknown degradation preset" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: missing --output
        main(["degrade", "--input", str(inp)])
    assert info.value.code == 2


def test_overrides_reach_the_params(tmp_path):
    inp = make_folder(tmp_path / "in", n=2)
    assert degrade("--input", inp, "--output", tmp_path / "o", "--set", "jpeg.quality=33",
                   "--set", "noise.sigma=5,6", "--no-singles", "--limit", 2) == 0
    record = json.loads((tmp_path / "o" / "params.json").read_text())
    assert record["preset"]["jpeg"]["quality"] == {"lo": 33.0, "hi": 33.0}
    assert {r["params"]["jpeg_quality"] for r in record["files"].values()} == {33}
    assert all(5 <= r["params"]["noise_level"] <= 6 for r in record["files"].values())
    assert record["dirs"] == ["hq", "full"] and record["sources"]["count"] == 2


def test_help_describes_presets_and_backends():
    exe = Path(sys.executable).with_name("frsengine")  # the installed console script
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "frsengine.cli"]
    res = subprocess.run([*cmd, "degrade", "--help"], capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0
    for name in [*PRESETS, *BACKENDS, "--set", "--preview", "--list", "--limit", "exit status"]:
        assert name in res.stdout, name


def test_parser_module_does_not_import_torch():
    # `frsengine --help` builds every sub-command's parser: this one must stay light.
    code = "import sys, frsengine.cli.degrade; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    assert res.stdout.strip() == "False", res.stderr


@pytest.mark.data
@pytest.mark.skipif(not FACES.is_dir(), reason=f"face data not present at {FACES}")
def test_real_faces(tmp_path, capsys):
    out, preview = tmp_path / "out", tmp_path / "grid.png"
    rc = main(["degrade", "--input", str(FACES), "--output", str(out), "--limit", "8", "--quiet",
               "--preview", str(preview)])
    assert rc == 0
    record = json.loads((out / "params.json").read_text())
    assert len(record["files"]) == 8 and record["size"] == 128
    for d in ["hq", "full", *SINGLES]:
        imgs = sorted((out / d).glob("*.png"))
        assert len(imgs) == 8 and np.asarray(Image.open(imgs[0])).shape == (128, 128, 3)
    assert preview.is_file() and os.path.getsize(preview) > 10_000
