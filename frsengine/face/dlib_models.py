"""The dlib models the engine uses, located inside the ``face-recognition-models`` package.

The files are found through the package's folder, not its ``pkg_resources`` helper (gone from
recent setuptools, so importing ``face_recognition_models`` itself fails). Each loader caches its
model per process; a missing package or file raises a one-line :class:`MissingDependencyError` /
:class:`FrsError` that says what to install.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from frsengine.errors import FrsError, MissingDependencyError

MODEL_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
}


def import_dlib():
    """The ``dlib`` module, or a clear error naming the wheel to install."""
    try:
        import dlib
    except ImportError:
        raise MissingDependencyError("dlib", "face landmarks and detection", "dlib-bin") from None
    return dlib


def model_path(name: str) -> Path:
    """Path of one of :data:`MODEL_FILES` (by key)."""
    if name not in MODEL_FILES:
        raise KeyError(f"unknown dlib model {name!r}; known: {', '.join(MODEL_FILES)}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("face_recognition_models", "dlib's pretrained face models",
                                     "face-recognition-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILES[name]
    if not path.is_file():
        raise FrsError(f"dlib model file {path} is missing: reinstall face-recognition-models")
    return path


@functools.lru_cache(maxsize=None)
def shape_predictor(points: int = 68):
    """dlib shape predictor with 68 or 5 landmarks."""
    if points not in (68, 5):
        raise ValueError(f"dlib ships 68- and 5-point predictors, not {points}")
    return import_dlib().shape_predictor(str(model_path(f"landmarks{points}")))


@functools.lru_cache(maxsize=None)
def frontal_face_detector():
    """dlib's HOG frontal face detector (no model file needed)."""
    return import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def cnn_face_detector():
    """dlib's CNN (MMOD) face detector: slower on CPU, finds more faces."""
    return import_dlib().cnn_face_detection_model_v1(str(model_path("cnn_detector")))


@functools.lru_cache(maxsize=None)
def face_descriptor_model():
    """dlib's 128-d ResNet face descriptor (identity embedding)."""
    return import_dlib().face_recognition_model_v1(str(model_path("descriptor")))
