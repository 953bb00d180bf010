"""Bad files are reported by name and skipped; the rest of the batch is restored; the exit status
says whether everything succeeded; outputs never overwrite inputs."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import frsengine
from frsengine.api import RestoreWarning
from frsengine.cli import main
from frsengine.errors import FrsError


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def declared_size_png(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h (its data is an 8x8 image's): a decompression bomb."""
    data = bytearray(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    ihdr = data[12:29]  # b'IHDR' + 13 bytes
    ihdr[4:12] = struct.pack(">II", w, h)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    (src / "good1.png").write_bytes(png_bytes(good))
    (src / "good2.png").write_bytes(png_bytes(good[::-1].copy()))
    full = png_bytes(good)
    (src / "truncated.png").write_bytes(full[: len(full) // 2])
    (src / "zero.jpg").write_bytes(b"")
    (src / "tiny.png").write_bytes(png_bytes(np.zeros((1, 1, 3), np.uint8)))
    (src / "huge.png").write_bytes(declared_size_png(10000, 10000))
    (src / "notes.png").write_text("this is not an image\n")
    return src


REASONS = {"truncated.png": "truncated", "zero.jpg": "empty file", "tiny.png": "too small",
           "huge.png": "too large", "notes.png": "not an image"}


def test_api_reports_and_skips_bad_files(random_package, folder, tmp_path):
    with pytest.warns(RestoreWarning) as caught:
        outs, rep = frsengine.restore(folder, random_package, output_dir=tmp_path / "out", return_report=True)
    by_name = {r.name.rsplit("/", 1)[1]: r for r in rep.items}
    assert not rep.ok and len(rep.failed) == 5
    for name, reason in REASONS.items():
        assert not by_name[name].ok and reason in by_name[name].error, (name, by_name[name].error)
        assert any(name in str(w.message) for w in caught)
    assert by_name["good1.png"].ok and by_name["good2.png"].ok
    assert sorted(p.name for p in outs if p is not None) == ["good1.png", "good2.png"]
    assert (tmp_path / "out" / "good1.png").is_file() and not (tmp_path / "out" / "zero.jpg").exists()


def test_cli_exit_status_and_messages(random_package, folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["restore", "-i", str(folder), "-o", str(out), "--model", str(random_package.path), "--quiet",
               "--compare", "--batch-size", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    for name, reason in REASONS.items():
        assert f"skipped {folder / name}: " in err and reason in err.split(f"skipped {folder / name}: ")[1].splitlines()[0]
    assert (out / "good1.png").is_file() and (out / "compare" / "good2.png").is_file()
    cmp = np.asarray(Image.open(out / "compare" / "good1.png"))
    assert cmp.shape[1] >= 2 * 64  # input | restored side by side
    rc = main(["restore", "-i", str(folder / "good*.png"), "-o", str(tmp_path / "ok"), "--model",
               str(random_package.path), "--quiet"])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["good1.png", "good2.png"]


def test_unwritable_output_folder(random_package, folder, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(FrsError, match="cannot write to output folder"):
        frsengine.restore(folder / "good1.png", random_package, output_dir=blocker / "out")
    rc = main(["restore", "-i", str(folder), "-o", str(blocker / "out"), "--model", str(random_package.path)])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write to output folder" in err and len(err.strip().splitlines()) == 1


def test_never_overwrites_inputs(random_package, folder, capsys):
    before = (folder / "good1.png").read_bytes()
    rc = main(["restore", "-i", str(folder / "good1.png"), "-o", str(folder), "--model",
               str(random_package.path), "--quiet"])
    assert rc == 1 and "would overwrite an input file" in capsys.readouterr().err
    assert (folder / "good1.png").read_bytes() == before


def test_cli_missing_model_and_nothing_to_do(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("FRSENGINE_MODEL", raising=False)
    assert main(["restore", "-i", str(folder), "-o", str(tmp_path / "o")]) == 2
    assert "pass model=" in capsys.readouterr().err
    assert main(["restore", "-i", str(tmp_path / "none*.png"), "-o", str(tmp_path / "o")]) == 1
    assert "no image files" in capsys.readouterr().err


def test_unexpected_failure_on_one_file_does_not_stop_the_batch(random_package, folder, tmp_path, monkeypatch):
    import frsengine.api as api

    real = api._read_file

    def flaky(path, max_pixels):
        if path.name == "good2.png":
            raise RuntimeError("decoder crashed\nwith details")
        return real(path, max_pixels)

    monkeypatch.setattr(api, "_read_file", flaky)
    with pytest.warns(RestoreWarning):
        outs, rep = frsengine.restore([folder / "good1.png", folder / "good2.png"], random_package,
                                      output_dir=tmp_path / "out", return_report=True)
    assert outs[0] is not None and outs[1] is None
    assert rep.items[1].error == "could not be processed (RuntimeError: decoder crashed)"
