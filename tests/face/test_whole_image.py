"""Whole-image mode on real faces (../shared/data/faces-lq-real; skipped when absent): faces are
found, restored together and pasted back; a photo without a face comes back unchanged with a
warning; faces below min_face are left alone and reported."""
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import frsengine
from frsengine.api import RestoreWarning
from frsengine.face.align import face_template

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "faces-lq-real"
needs_data = pytest.mark.skipif(not REAL.is_dir(), reason=f"real LQ faces not found at {REAL.resolve()}")


def real_face(name="psfrgan-solvay1927/003.jpg"):
    return np.asarray(Image.open(REAL / name).convert("RGB"))


def photo_with_faces(faces, size=(520, 760)):
    """A 'photo': real face crops (512x512, FFHQ-aligned) shrunk onto a flat background."""
    photo = np.full((*size, 3), 96, np.uint8)
    boxes = []
    for (x, y, s), face in faces:
        photo[y:y + s, x:x + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
        boxes.append((x, y, s))
    return photo, boxes


@needs_data
def test_detector_finds_the_ffhq_landmarks():
    from frsengine.face.detect import detect_faces

    faces = detect_faces(real_face("gfpgan-cropped/Adele_crop.png"))
    assert len(faces) == 1
    # These crops are FFHQ-aligned: the five points land near the 512 template.
    assert np.abs(faces[0].landmarks - face_template(512)).max() < 25


@needs_data
def test_faces_are_restored_and_pasted_back(random_package, identity_package):
    photo, boxes = photo_with_faces([((60, 90, 260), real_face()),
                                     ((430, 140, 220), real_face("psfrgan-solvay1927/009.jpg"))])
    out, rep = frsengine.restore(photo, random_package, aligned=False, return_report=True, batch_size=8)
    assert rep.ok and rep.items[0].faces == 2 and out.shape == photo.shape and out.dtype == np.uint8
    changed = np.abs(out.astype(int) - photo).max(2) > 0
    inside = np.zeros_like(changed)
    for x, y, s in boxes:
        m = s // 6  # the aligned crop is the FFHQ square up to landmark error
        inside[max(y - m, 0):y + s + m, max(x - m, 0):x + s + m] = True
        face_changed = changed[y + s // 3:y + 2 * s // 3, x + s // 3:x + 2 * s // 3].mean()
        assert face_changed > 0.5  # the random network changed the face
    assert not changed[~inside].any()  # pasted back only where the faces are
    # With an identity network the pasted faces must line up with the originals.
    same = frsengine.restore(photo, identity_package, aligned=False).astype(int)
    for x, y, s in boxes:
        core = (slice(y + s // 4, y + 3 * s // 4), slice(x + s // 4, x + 3 * s // 4))
        assert np.abs(same[core] - photo[core]).mean() < 4  # misaligned paste-back would be far worse


@needs_data
def test_small_faces_are_left_alone_and_reported(random_package):
    photo, _ = photo_with_faces([((60, 90, 260), real_face())])
    with pytest.warns(RestoreWarning, match="below min_face"):
        out, rep = frsengine.restore(photo, random_package, aligned=False, min_face=1000, return_report=True)
    assert np.array_equal(out, photo) and rep.items[0].faces == 0 and len(rep.items[0].skipped_faces) == 1


def test_photo_without_a_face_is_unchanged_with_a_warning(random_package):
    rng = np.random.default_rng(0)
    landscape = cv2.resize(rng.integers(0, 255, (12, 16, 3)).astype(np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
    with pytest.warns(RestoreWarning, match="no face found"):
        out = frsengine.restore(landscape, random_package, aligned=False)
    assert np.array_equal(out, landscape)


@needs_data
def test_whole_image_cli(random_package, tmp_path):
    from frsengine.cli import main

    photo, _ = photo_with_faces([((60, 90, 260), real_face())])
    Image.fromarray(photo).save(tmp_path / "group.png")
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rc = main(["restore", "-i", str(tmp_path / "*.png"), "-o", str(tmp_path / "out"), "--whole-image",
               "--model", str(random_package.path), "--quiet"])
    assert rc == 0
    assert Image.open(tmp_path / "out" / "gray.png").mode == "L"
    assert np.asarray(Image.open(tmp_path / "out" / "group.png")).shape == photo.shape
