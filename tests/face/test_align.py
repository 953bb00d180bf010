"""Similarity alignment and feathered paste-back (synthetic, exact checks)."""
import cv2
import numpy as np
import pytest

from frsengine.face.align import FFHQ_TEMPLATE_512, face_template, paste_face, similarity_transform, warp_face


def test_similarity_transform_recovers_a_known_one():
    angle, scale, t = np.deg2rad(17.0), 0.37, np.array([12.5, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = FFHQ_TEMPLATE_512 + np.random.default_rng(0).normal(0, 3, (5, 2))
    dst = src @ rot.T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-7)


def test_no_reflection():
    src = FFHQ_TEMPLATE_512
    mirrored = src * [-1, 1] + [512, 0]  # left/right swapped: the best *similarity* cannot flip
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), FFHQ_TEMPLATE_512)


def test_template_scales_with_the_model_size():
    assert np.allclose(face_template(128), FFHQ_TEMPLATE_512 / 4)
    assert np.allclose(face_template((256, 128))[:, 1], FFHQ_TEMPLATE_512[:, 1] / 2)


def smooth_image(h, w, seed=0):
    low = np.random.default_rng(seed).random((8, 8, 3)).astype(np.float32)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def test_warp_then_paste_back_is_identity_inside_and_untouched_outside():
    img = smooth_image(300, 400)
    pts = face_template(128) * 1.3 + [180, 60]  # a "face" 1.3x the crop, rotated below
    c, s = np.cos(0.2), np.sin(0.2)
    pts = (pts - pts.mean(0)) @ np.array([[c, -s], [s, c]]).T + pts.mean(0)
    m = similarity_transform(pts, face_template(128))
    crop = warp_face(img, m, (128, 128))
    out = img.copy()
    paste_face(out, crop, m)
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [128, 0, 1], [0, 128, 1], [128, 128, 1]]) @ inv.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 3
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 3
    outside = np.ones(img.shape[:2], bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert np.array_equal(out[outside], img[outside])  # nothing outside the face's box changes
    centre = tuple(np.round(pts.mean(0)).astype(int))
    patch = (slice(centre[1] - 30, centre[1] + 30), slice(centre[0] - 30, centre[0] + 30))
    assert np.abs(out[patch] - img[patch]).max() < 0.02  # resampled twice, smooth image: ~identity


def test_paste_blends_with_a_feathered_mask():
    img = np.zeros((200, 200, 3), np.float32)
    m = similarity_transform(face_template(128) + [36, 36], face_template(128))  # crop = img[36:164, 36:164]
    paste_face(img, np.ones((128, 128, 3), np.float32), m, feather=0.06)
    row = img[100, :, 0]
    assert row[100] == pytest.approx(1.0, abs=1e-3) and row[10] == 0.0
    ramp = row[36:60]
    assert np.all(np.diff(ramp) >= -1e-6) and 0.05 < ramp[8] < 0.95  # a soft edge, no seam


def test_package_face_template_is_used(tmp_path):
    from tests.package_fixtures import tiny_frsnet

    from frsengine.api import Restorer
    from frsengine.export import PackageError, load_package, save_package

    points = face_template(128) + [3.0, -2.0]
    pkg = load_package(save_package(tiny_frsnet(), tmp_path / "p", preset="tiny", face_template=points))
    assert np.allclose(Restorer(pkg, backend="torch").template, points)
    assert np.allclose(Restorer(load_package(save_package(tiny_frsnet(), tmp_path / "q", preset="tiny")),
                                backend="torch").template, face_template(128))
    with pytest.raises(PackageError, match="5 .x, y. points"):
        save_package(tiny_frsnet(), tmp_path / "r", preset="tiny", face_template=points[:3])
