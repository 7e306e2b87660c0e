"""dlib's HOG frontal face detector, built once per process."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import dlib
import numpy as np

from .crop import Box


@dataclass(frozen=True)
class Face:
    """One detection: dlib box (inclusive pixel indices) and detector score."""

    box: Box
    score: float


@lru_cache(maxsize=None)
def detector() -> dlib.fhog_object_detector:
    """The process-wide frontal face detector (building it costs about a second)."""
    return dlib.get_frontal_face_detector()


def detect(image_bgr: np.ndarray, upsample: int = 1, max_side: int | None = None,
           max_faces: int | None = None) -> list[Face]:
    """Faces in a BGR uint8 image, best score first.

    With ``max_side`` the detector runs on a copy shrunk so its longest side is
    at most ``max_side`` pixels; boxes are mapped back to the original image.
    """
    scale = 1.0
    h, w = image_bgr.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        image_bgr = cv2.resize(image_bgr, (round(w * scale), round(h * scale)),
                               interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    rects, scores, _ = detector().run(rgb, upsample, 0.0)
    faces = [Face(_unscale(r, scale), float(s)) for r, s in zip(rects, scores)]
    faces.sort(key=lambda f: -f.score)
    return faces[:max_faces] if max_faces else faces


def _unscale(rect: dlib.rectangle, scale: float) -> Box:
    if scale == 1.0:
        return rect.left(), rect.top(), rect.right(), rect.bottom()
    # pixel v spans [v, v + 1) in edge coordinates, which scale linearly
    def lo(v): return round(v / scale)
    def hi(v): return round((v + 1) / scale) - 1
    return lo(rect.left()), lo(rect.top()), hi(rect.right()), hi(rect.bottom())


def face_containing(faces: list[Face], points: np.ndarray) -> Face | None:
    """The best-scoring face whose box contains the centre of ``points`` (training and evaluation)."""
    cx, cy = (points.min(0) + points.max(0)) / 2
    for f in faces:
        left, top, right, bottom = f.box
        if left <= cx <= right and top <= cy <= bottom:
            return f
    return None
