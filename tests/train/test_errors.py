"""Bad configs and data give one line (exit 2) that says what is wrong."""
import pytest

from frsengine.cli import main
from tests.train.helpers import SEARCH_TINY, TRAIN_TINY, tiny_overrides


def _run(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


@pytest.mark.parametrize("extra, message", [
    ({"optim.lrr": "0.1"}, "unknown key 'optim.lrr'"),
    ({"data.root": "/nonexistent/faces"}, "data folder '/nonexistent/faces' does not exist"),
    ({"loss.vgg_weights": "/nonexistent/vgg19.safetensors"}, "VGG-19 weights '/nonexistent/vgg19.safetensors' do not exist"),
])
def test_search_errors(capsys, tmp_path, faces, extra, message):
    code, line = _run(capsys, ["search", "--config", str(SEARCH_TINY), *tiny_overrides(faces, tmp_path / "r", **extra)])
    assert code == 2 and line.startswith("frsengine search: error:") and message in line


def test_empty_folder_and_too_few_faces(capsys, tmp_path, faces):
    (tmp_path / "empty").mkdir()
    code, line = _run(capsys, ["search", "--config", str(SEARCH_TINY), *tiny_overrides(tmp_path / "empty", tmp_path / "r")])
    assert code == 2 and "no image files in" in line
    code, line = _run(capsys, ["search", "--config", str(SEARCH_TINY),
                               *tiny_overrides(faces, tmp_path / "r2", **{"schedule.batch_size": "8"})])
    assert code == 2 and "fewer than one global batch" in line


def test_train_errors(capsys, tmp_path, faces):
    code, line = _run(capsys, ["train", "--config", str(TRAIN_TINY), "--genotype", str(tmp_path / "none.json"),
                               *tiny_overrides(faces, tmp_path / "r")])
    assert code == 2 and "none.json" in line
    code, line = _run(capsys, ["train", "--config", str(TRAIN_TINY), "--resume", str(tmp_path / "nothing"),
                               *tiny_overrides(faces, tmp_path / "r")])
    assert code == 2 and "does not exist: check --resume" in line
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, line = _run(capsys, ["train", "--config", str(TRAIN_TINY), "--resume", str(bad),
                               *tiny_overrides(faces, tmp_path / "r")])
    assert code == 2 and "cannot be read" in line
