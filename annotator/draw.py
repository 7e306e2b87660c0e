"""Faces drawn on images: 68 points, the iBUG 68 contours and the box, sized by the face."""
from __future__ import annotations

import cv2
import numpy as np

from .crop import Box

# iBUG 68 polylines (0-based indices) and whether each closes on itself.
CONTOURS = [
    (range(0, 17), False),   # jaw
    (range(17, 22), False),  # right brow (the subject's right, on the image's left)
    (range(22, 27), False),  # left brow
    (range(27, 31), False),  # nose bridge
    (range(31, 36), False),  # nose base
    (range(36, 42), True),   # right eye
    (range(42, 48), True),   # left eye
    (range(48, 60), True),   # outer lip
    (range(60, 68), True),   # inner lip
]
POINT, LINE, UNSURE = (0, 0, 255), (0, 230, 0), (0, 255, 255)  # BGR
BOX = {"hog": (255, 170, 0), "cnn": (255, 0, 200)}  # the box's colour tells which detector found the face
_SHIFT = 4  # cv2 fixed point: coordinates and radii in 1/16 pixel, so small faces are drawn exactly
MIN_CONTOUR_FACE = 64  # px: on smaller faces contour lines would hide the features, points alone read better
UNSURE_POINT = 0.05  # a point whose expected error is above this is ringed: the least sure points of a face


def face_size(points: np.ndarray) -> float:
    """sqrt(area) of the points' bounding box, in pixels."""
    w, h = points.max(0) - points.min(0)
    return float(np.sqrt(max(w * h, 1.0)))


def marker_sizes(size: float) -> tuple[float, int]:
    """Point radius (px) and line thickness (px) for a face of ``size`` pixels."""
    return max(0.6, size / 90), max(1, round(size / 180))


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def unsure_points(point_errors) -> list[int]:
    """Indices of the points whose expected error (``point_errors``, or None: none known) is above
    :data:`UNSURE_POINT`."""
    return [] if point_errors is None else [i for i, e in enumerate(point_errors) if e is not None and e > UNSURE_POINT]


def draw_face(canvas: np.ndarray, points: np.ndarray, box: Box | None = None, detector: str = "hog",
              point_errors=None) -> None:
    """Draw a face's 0-based (68, 2) ``points`` with their contours, and its ``box`` in the colour of the
    ``detector`` that found it, on ``canvas`` in place; points whose expected error (``point_errors``) is
    above :data:`UNSURE_POINT` get a yellow ring."""
    size = face_size(points)
    radius, thickness = marker_sizes(size)
    if box is not None:
        cv2.rectangle(canvas, tuple(map(int, box[:2])), tuple(map(int, box[2:])), BOX.get(detector, BOX["hog"]),
                      thickness, cv2.LINE_AA)
    fixed = _fixed(points)
    if len(points) == 68 and size >= MIN_CONTOUR_FACE:
        for indices, closed in CONTOURS:
            cv2.polylines(canvas, [fixed[list(indices)]], closed, LINE, thickness, cv2.LINE_AA, _SHIFT)
    r = round(radius * (1 << _SHIFT))
    for x, y in fixed:
        cv2.circle(canvas, (int(x), int(y)), r, POINT, -1, cv2.LINE_AA, _SHIFT)
    ring = round(max(3 * radius, 4) * (1 << _SHIFT))  # big enough to see on a review tile
    for i in unsure_points(point_errors):
        cv2.circle(canvas, (int(fixed[i, 0]), int(fixed[i, 1])), ring, UNSURE, max(thickness, 2), cv2.LINE_AA,
                   _SHIFT)
