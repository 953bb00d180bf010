"""Landmark -> heatmap / parsing / box rasterisation on synthetic landmarks."""
import numpy as np
import pytest
import torch

from frsengine.priors import landmarks as L
from frsengine.priors.rasterize import (
    COMPONENTS, NUM_CLASSES, PARSING_CLASSES, component_boxes, decode_heatmaps, heatmaps, one_hot, parsing_map,
)
from tests.priors.conftest import shoelace, template_landmarks

CLS = {name: i for i, name in enumerate(PARSING_CLASSES)}


def test_heatmap_peaks_at_the_landmarks():
    pts = torch.tensor([[[10.0, 20.0], [100.0, 5.0], [64.0, 127.0]]])
    maps = heatmaps(pts, 128, sigma=2.0)
    assert maps.shape == (1, 3, 128, 128)
    for k, (x, y) in enumerate(pts[0].tolist()):
        iy, ix = divmod(int(maps[0, k].argmax()), 128)
        assert (ix, iy) == (int(x), int(y))
        assert maps[0, k, iy, ix] == pytest.approx(1.0)
    # an interior Gaussian integrates to 2 pi sigma^2; its std is sigma
    m = maps[0, 0]
    assert float(m.sum()) == pytest.approx(2 * np.pi * 4.0, rel=1e-3)
    xs = torch.arange(128.0)
    var_x = float((m.sum(0) * (xs - 10) ** 2).sum() / m.sum())
    assert var_x == pytest.approx(4.0, rel=1e-3)


def test_heatmap_of_a_missing_point_is_zero():
    pts = torch.tensor([[[float("nan"), 3.0], [5.0, 5.0]]])
    maps = heatmaps(pts, (16, 24))
    assert maps.shape == (1, 2, 16, 24)
    assert float(maps[0, 0].abs().max()) == 0.0 and float(maps[0, 1].max()) == pytest.approx(1.0)


def test_decode_recovers_subpixel_points():
    pts = torch.tensor([[[20.3, 40.7], [57.9, 12.2], [1.4, 62.5]]])  # a point on the border row is not refined
    got = decode_heatmaps(heatmaps(pts, 64, sigma=1.5))
    assert torch.allclose(got, pts, atol=0.1)


def test_parsing_classes_areas_and_symmetry():
    pts = template_landmarks()
    cls = parsing_map(pts, 128)
    assert cls.shape == (128, 128) and cls.dtype == np.uint8
    counts = np.bincount(cls.ravel(), minlength=NUM_CLASSES)
    assert (counts > 0).all(), dict(zip(PARSING_CLASSES, counts))
    # eyes and the inner mouth are painted last: their pixel counts match the polygons' areas
    for name, idx in (("eye_left", L.EYE_LEFT), ("eye_right", L.EYE_RIGHT), ("mouth_inner", L.LIPS_INNER)):
        area = shoelace(pts[list(idx)])
        assert abs(counts[CLS[name]] - area) <= 0.2 * area + 2, (name, counts[CLS[name]], area)
    # lips: outer polygon minus inner polygon
    lips = counts[CLS["lip_upper"]] + counts[CLS["lip_lower"]] + counts[CLS["mouth_inner"]]
    assert abs(lips - shoelace(pts[list(L.LIPS_OUTER)])) <= 0.1 * lips
    # the template is symmetric: left and right classes mirror each other
    for left, right in (("eye_left", "eye_right"), ("brow_left", "brow_right")):
        assert abs(int(counts[CLS[left]]) - int(counts[CLS[right]])) <= 0.1 * counts[CLS[left]] + 2
    # skin surrounds the features and reaches above the brows (the forehead approximation)
    rows = np.nonzero((cls == CLS["skin"]).any(1))[0]
    assert rows.min() < pts[17:27, 1].min() - 10
    assert counts[CLS["skin"]] > 5 * counts[CLS["nose"]] > 0
    # the class at a few known places
    assert cls[52, 44] == CLS["eye_left"] and cls[52, 84] == CLS["eye_right"]
    assert cls[95, 64] == CLS["mouth_inner"] and cls[70, 64] == CLS["nose"]
    assert cls[2, 2] == CLS["background"] and cls[80, 30] == CLS["skin"]


def test_parsing_scales_with_the_frame():
    small, large = parsing_map(template_landmarks(64), 64), parsing_map(template_landmarks(256), 256)
    a, b = np.bincount(small.ravel(), minlength=NUM_CLASSES), np.bincount(large.ravel(), minlength=NUM_CLASSES)
    for name in ("skin", "nose", "eye_left", "lip_lower"):
        assert abs(a[CLS[name]] * 16 - b[CLS[name]]) <= 0.25 * b[CLS[name]], name


def test_missing_landmarks_give_background():
    pts = template_landmarks()
    pts[5] = np.nan
    assert parsing_map(pts, 32).max() == 0
    oh = one_hot(torch.from_numpy(parsing_map(template_landmarks(), 128))[None])
    assert oh.shape == (1, NUM_CLASSES, 128, 128) and torch.all(oh.sum(1) == 1)


def test_component_boxes():
    pts = template_landmarks()
    boxes = component_boxes(torch.from_numpy(pts)[None])[0]
    assert boxes.shape == (len(COMPONENTS), 3)
    eye_l, eye_r, nose, mouth = boxes
    assert torch.allclose(eye_l[:2], torch.tensor([44.0, 52.0]), atol=0.01)
    assert torch.allclose(eye_r[:2], torch.tensor([84.0, 52.0]), atol=0.01)
    assert eye_l[2] == pytest.approx(eye_r[2]) and eye_l[2] == pytest.approx(0.8 * 40, rel=1e-4)
    for box, idx in ((mouth, L.LIPS_OUTER), (nose, L.NOSE_LOWER), (eye_l, L.EYE_LEFT)):
        cx, cy, side = box.tolist()
        p = pts[list(idx)]
        assert (np.abs(p[:, 0] - cx) <= side / 2).all() and (np.abs(p[:, 1] - cy) <= side / 2).all()
    # differentiable in the landmarks
    t = torch.from_numpy(pts)[None].requires_grad_()
    component_boxes(t).sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0


def test_point_frame_mapping():
    pts = np.array([[0.0, 0.0], [199.0, 199.0], [99.5, 99.5]], np.float32)
    out = L.square_crop_points(pts, 200, 200, 100)
    assert np.allclose(out, [[-0.25, -0.25], [99.25, 99.25], [49.5, 49.5]])
    # non-square: the centre crop's offset is removed first
    out = L.square_crop_points(np.array([[60.0, 10.0]], np.float32), 100, 140, 100)
    assert np.allclose(out, [[40.0, 10.0]])
