"""read_image / write_image / list_images / to_square / save_grid on small synthetic files."""
import io
import os

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from frsengine.errors import FrsError, ImageReadError
from frsengine.io import list_images, make_grid, read_image, save_grid, scan_folder, to_square, write_image


def rgb(h=40, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def reason_of(path, **kw):
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kw)
    assert info.value.path == str(path)
    assert "\n" not in info.value.reason
    return info.value.reason


def test_png_roundtrip_is_exact_and_has_no_notes(tmp_path):
    a = rgb()
    write_image(tmp_path / "a.png", a)
    b, notes = read_image(tmp_path / "a.png")
    assert b.dtype == np.uint8 and b.shape == (40, 48, 3) and b.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    assert notes == []


def test_truncated_jpeg_is_refused(tmp_path):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the guard this test relies on
    p = tmp_path / "t.jpg"
    Image.fromarray(rgb(64, 64)).save(p, quality=90)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    reason = reason_of(p)
    assert "truncated or corrupt" in reason and "re-download" in reason


def test_corrupt_png_body_is_refused(tmp_path):
    p = tmp_path / "c.png"
    Image.fromarray(rgb(64, 64)).save(p)
    data = bytearray(p.read_bytes())
    data[60:120] = b"\x00" * 60  # inside the IDAT stream: header parses, decoding fails
    p.write_bytes(bytes(data))
    assert "truncated or corrupt" in reason_of(p)


def test_16bit_gray_png_is_scaled_to_8bit(tmp_path):
    a = np.zeros((20, 20), np.uint16)
    a[0, 0], a[0, 1], a[0, 2] = 65535, 257 * 100, 0
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    img, notes = read_image(p)
    assert img.shape == (20, 20, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (255, 255, 255) and img[0, 1, 0] == 100 and img[0, 2, 0] == 0
    assert any("16-bit" in n for n in notes) and any("grayscale" in n for n in notes)


def test_16bit_rgb_png_keeps_high_byte(tmp_path):
    a = np.full((20, 20, 3), 257 * 7, np.uint16)
    p = tmp_path / "rgb16.png"
    cv2.imwrite(str(p), a)
    img, notes = read_image(p)
    assert img.shape == (20, 20, 3) and (img == 7).all()
    assert any("16-bit RGB" in n for n in notes)


def test_grayscale_becomes_rgb(tmp_path):
    g = rgb()[:, :, 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    img, notes = read_image(tmp_path / "g.png")
    assert img.shape == (40, 48, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], g)
    assert notes == ["grayscale converted to RGB"]


def test_rgba_transparency_is_composited_on_black(tmp_path):
    a = np.zeros((20, 20, 4), np.uint8)
    a[..., :3] = 200
    a[:, :10, 3] = 255  # left half opaque
    a[:, 10:, 3] = 0  # right half transparent
    a[0, 15, 3] = 128  # one half-transparent pixel
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    img, notes = read_image(tmp_path / "a.png")
    assert (img[:, :10] == 200).all() and (img[1:, 10:] == 0).all()
    assert img[0, 15, 0] == 100  # 200 * 128/255, rounded
    assert any("composited on black" in n for n in notes)


def test_opaque_rgba_only_drops_alpha(tmp_path):
    a = np.dstack([rgb(), np.full((40, 48), 255, np.uint8)])
    Image.fromarray(a, "RGBA").save(tmp_path / "o.png")
    img, notes = read_image(tmp_path / "o.png")
    np.testing.assert_array_equal(img, a[..., :3])
    assert notes == ["alpha channel dropped (image is fully opaque)"]


def test_palette_with_transparency_and_la(tmp_path):
    p = Image.fromarray(rgb()).convert("P")
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    img, notes = read_image(tmp_path / "p.png")
    assert img.shape == (40, 48, 3) and "palette image converted to RGB" in notes
    Image.fromarray(np.dstack([rgb()[..., 0], np.full((40, 48), 255, np.uint8)]), "LA").save(tmp_path / "la.png")
    img, notes = read_image(tmp_path / "la.png")
    assert img.shape == (40, 48, 3) and any("alpha" in n for n in notes)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.fromarray(rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    img, notes = read_image(tmp_path / "c.jpg")
    assert img.shape == (40, 48, 3) and notes == ["CMYK converted to RGB"]


def test_exif_orientation_is_applied(tmp_path):
    a = rgb(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(a).save(tmp_path / "e.png", exif=exif)
    img, notes = read_image(tmp_path / "e.png")
    assert img.shape == (40, 20, 3)
    np.testing.assert_array_equal(img, np.rot90(a, k=-1))
    assert notes == ["EXIF orientation 6 applied"]


def test_tiny_image_is_refused_unless_allowed(tmp_path):
    Image.fromarray(rgb(1, 1)).save(tmp_path / "one.png")
    reason = reason_of(tmp_path / "one.png")
    assert "too small (1x1 px" in reason and "16 px" in reason
    img, _ = read_image(tmp_path / "one.png", min_side=1)
    assert img.shape == (1, 1, 3)


def test_text_file_named_png(tmp_path):
    (tmp_path / "x.png").write_text("this is not a picture\n")
    assert "not an image or an unknown format" in reason_of(tmp_path / "x.png")


def test_directory_empty_and_missing_files(tmp_path):
    (tmp_path / "d.png").mkdir()
    assert "is a directory" in reason_of(tmp_path / "d.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty file" in reason_of(tmp_path / "empty.jpg")
    assert "no such file" in reason_of(tmp_path / "missing.jpg")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.png"
    Image.fromarray(rgb()).save(p)
    p.chmod(0)
    assert "permission denied" in reason_of(p)


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.fromarray(rgb(64, 64)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 4096 px: PIL only warns (< 2x)
    reason = reason_of(p)
    assert "too large (64x64 = 4096 px" in reason and "--max-pixels" in reason
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # > 2x: PIL raises in open()
    assert "too large (4096 px; the decompression-bomb limit is 1000 px)" in reason_of(p)
    img, _ = read_image(p, max_pixels=5000)  # an explicit, larger limit lets it through
    assert img.shape == (64, 64, 3) and Image.MAX_IMAGE_PIXELS == 1000
    assert "too large" in reason_of(p, max_pixels=4000)


def test_write_image_jpeg_creates_parents(tmp_path):
    smooth = cv2.GaussianBlur(rgb(), (0, 0), 3)
    path = write_image(tmp_path / "a" / "b" / "x.jpg", smooth)
    img, _ = read_image(path)
    assert img.shape == (40, 48, 3) and np.abs(img.astype(int) - smooth).mean() < 3
    with pytest.raises(FrsError, match="png"):
        write_image(tmp_path / "x.gif", rgb())
    with pytest.raises(FrsError, match="uint8"):
        write_image(tmp_path / "x.png", rgb().astype(np.float32))


def test_write_image_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    write_image(target, rgb(seed=1))
    before = target.read_bytes()

    class FailingFile(io.FileIO):
        def write(self, data):
            super().write(data[:10])
            raise OSError("disk full")

    # A module global `open` shadows the builtin inside frsengine.io.images only.
    monkeypatch.setattr("frsengine.io.images.open", lambda f, mode: FailingFile(f, mode), raising=False)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, rgb(seed=2))
    monkeypatch.undo()
    assert target.read_bytes() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ["x.png"]  # and no temp file is left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_list_images_skips_non_images_and_hidden(tmp_path):
    for name in ("b.png", "a.JPG", "sub/c.webp", "notes.txt", ".hidden.png", ".cache/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rel == ["a.JPG", "b.png", "sub/c.webp"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.JPG", "b.png"]
    assert [p.name for p in scan_folder(tmp_path)[1]] == ["notes.txt"]
    with pytest.raises(FrsError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_to_square_crops_centre_and_resizes(tmp_path):
    a = np.zeros((60, 100, 3), np.uint8)
    a[:, 20:80] = 255  # the centre 60x60 square is white, the borders black
    sq = to_square(a, 60)
    assert sq.shape == (60, 60, 3) and (sq == 255).all()
    small, big = to_square(a, 30), to_square(a, 128)
    assert small.shape == (30, 30, 3) and (small == 255).all()
    assert big.shape == (128, 128, 3) and big.dtype == np.uint8 and (big == 255).all()
    b = rgb(50, 50)
    np.testing.assert_array_equal(to_square(b, 50), b)


def test_save_grid_layout_and_labels(tmp_path):
    cells = [[np.full((16, 16, 3), 10 * (3 * r + c), np.uint8) for c in range(3)] for r in range(2)]
    plain = make_grid(cells)
    assert plain.shape == (2 + 2 * 18, 2 + 3 * 18, 3)
    assert (plain[2:18, 2:18] == 0).all() and (plain[20:36, 38:54] == 50).all()
    path = save_grid(tmp_path / "g" / "grid.png", cells, ["HQ", "full", "blur"])
    img, _ = read_image(path, min_side=1)
    header = img.shape[0] - plain.shape[0]
    assert header > 5 and img.shape[1] == plain.shape[1]
    assert (img[:header] < 128).any()  # some label text was drawn
    np.testing.assert_array_equal(img[header:], plain)
    with pytest.raises(FrsError, match="share one size"):
        make_grid([[np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)]])
    with pytest.raises(FrsError, match="labels"):
        make_grid(cells, ["a"])


def test_unreadable_file_reported_even_as_root(tmp_path, monkeypatch):
    p = tmp_path / "locked.png"
    Image.fromarray(rgb()).save(p)
    monkeypatch.setattr("frsengine.io.images.os.access", lambda path, mode: False)
    assert "permission denied" in reason_of(p) and "chmod" in reason_of(p)
