"""`frsengine priors` end to end (in process, through frsengine.cli.main)."""
import json

import numpy as np
import pytest

from frsengine.cli import main
from frsengine.io import read_image, write_image
from frsengine.priors.landmarks import TeacherCache
from frsengine.priors.train import load_checkpoint
from tests.priors.conftest import UTK

pytest.importorskip("dlib", reason="dlib-bin is not installed")


def blank_folder(root, n=3):
    for i in range(n):
        write_image(root / f"{i}.png", np.full((64, 64, 3), 60 + 40 * i, np.uint8))
    return root


def test_build_without_labelled_faces_is_a_one_line_error(tmp_path, capsys):
    root = blank_folder(tmp_path / "faces")
    rc = main(["priors", "build", "--data", str(root), "--out", str(tmp_path / "d.safetensors"), "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert "3 no landmarks" in out
    assert err.count("\n") == 1 and "only 0 labelled faces" in err
    assert TeacherCache.load(tmp_path / "d.teacher.npz").counts()["none"] == 3


@pytest.mark.parametrize("args, message", [
    (["--crop", "30"], "--crop must be a multiple of 4"),
    (["--limit", "0"], "--limit must be at least 1"),
])
def test_build_bad_arguments(tmp_path, capsys, args, message):
    root = blank_folder(tmp_path / "faces", 1)
    rc = main(["priors", "build", "--data", str(root), "--out", str(tmp_path / "d.safetensors"), *args])
    assert rc == 2 and message in capsys.readouterr().err


def test_show_on_a_picture_without_a_face(tmp_path, capsys):
    img = tmp_path / "x.png"
    write_image(img, np.full((100, 100, 3), 90, np.uint8))
    rc = main(["priors", "show", str(img), "-o", str(tmp_path / "o.png"), "--scale", "1"])
    out, err = capsys.readouterr()
    assert rc == 0 and "teacher: none" in err
    pic, _ = read_image(tmp_path / "o.png")
    assert pic.shape[1] > 3 * 128  # three panels


def test_train_with_a_missing_cache(tmp_path, capsys):
    rc = main(["priors", "train", "--data", str(tmp_path), "--cache", str(tmp_path / "t.npz"),
               "--out", str(tmp_path / "s.safetensors")])
    assert rc == 2 and "run `frsengine priors build` first" in capsys.readouterr().err


@pytest.mark.data
@pytest.mark.skipif(not UTK.is_dir(), reason=f"face data not found at {UTK}")
def test_build_train_eval_show_on_real_faces(tmp_path, capsys):
    out = tmp_path / "dict.safetensors"
    rc = main(["priors", "build", "--data", str(UTK), "--limit", "24", "--atoms", "4", "--channels", "8",
               "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "24 faces" in capsys.readouterr().out
    student = tmp_path / "s.safetensors"
    rc = main(["priors", "train", "--data", str(UTK), "--cache", str(tmp_path / "dict.teacher.npz"), "--out",
               str(student), "--steps", "2", "--batch-size", "4", "--widths", "4,4,8,8", "--checkpoint-every", "1",
               "--quiet"])
    assert rc == 0 and load_checkpoint(student)[1]["step"] == 2
    rc = main(["priors", "eval", "--data", str(UTK), "--limit", "4", "--student", str(student),
               "--severities", "none,full", "--json", str(tmp_path / "e.json"), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and "student" in text and "dlib" in text
    figures = json.loads((tmp_path / "e.json").read_text())
    assert set(figures["severities"]) == {"none", "full"}
    assert figures["severities"]["none"]["dlib"]["nme"] < 0.05  # dlib on the HQ face ~ the teacher
    face = sorted(UTK.iterdir())[0]
    rc = main(["priors", "show", str(face), "-o", str(tmp_path / "show.png"), "--student", str(student),
               "--dictionary", str(out), "--degrade", "full"])
    err = capsys.readouterr().err
    assert rc == 0 and "dictionary mouth: atom" in err
    assert read_image(tmp_path / "show.png")[0].shape[1] > 6 * 256


def test_show_and_eval_bad_inputs_are_one_line_errors(tmp_path, capsys):
    rc = main(["priors", "show", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "no such file" in err and err.count("\n") == 1
    img = tmp_path / "x.png"
    write_image(img, np.full((64, 64, 3), 90, np.uint8))
    rc = main(["priors", "show", str(img), "-o", str(tmp_path / "o.png"), "--student", str(img)])
    assert rc == 2 and "not a safetensors file" in capsys.readouterr().err
    rc = main(["priors", "eval", "--data", str(tmp_path), "--student", str(tmp_path / "s.safetensors"),
               "--severities", "none,extreme"])
    assert rc == 2 and "unknown ['extreme']" in capsys.readouterr().err
