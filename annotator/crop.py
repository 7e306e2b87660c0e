"""Detector box -> network input crop, and crop coordinates -> image coordinates.

All coordinates are 0-based pixel centres (OpenCV/numpy). A dlib box
``(left, top, right, bottom)`` covers the pixels ``left..right`` inclusive, so
its edges are at ``left - 0.5`` and ``right + 0.5``. A crop of ``size`` pixels
maps those edges onto the crop's edges.

``context`` > 1 cuts a larger window around the same box at the same scale;
for even ``size`` the centre ``size x size`` of a ``context=2`` crop is
the ``context=1`` crop (to OpenCV's 1/32-pixel sampling grid: at most one grey
level apart). Training caches such larger crops
and augments inside them, so an un-augmented training sample is exactly what
inference sees.
"""
from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def box_affine(box: Box, size: int, context: float = 1.0) -> np.ndarray:
    """2x3 matrix taking image coordinates to coordinates in the crop of ``box``."""
    left, top, right, bottom = box
    sx = size / (right - left + 1)
    sy = size / (bottom - top + 1)
    half = (round(size * context) - 1) / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return np.array([[sx, 0, half - cx * sx], [0, sy, half - cy * sy]], dtype=np.float64)


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to an (N, 2) array of points."""
    return points @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(m)


class Pyramid:
    """An image with lazily built Gaussian pyramid levels (for anti-aliased crops)."""

    def __init__(self, image: np.ndarray):
        self.levels = [image]

    def level(self, k: int) -> np.ndarray:
        while len(self.levels) <= k:
            self.levels.append(cv2.pyrDown(self.levels[-1]))
        return self.levels[k]


def warp(image: np.ndarray | Pyramid, m: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` image of ``m`` (image -> crop coordinates).

    Strong reductions sample a pyramid level, so bilinear sampling never
    shrinks by more than 2x (no aliasing). Outside the image is filled by
    replicating the border.
    """
    pyramid = image if isinstance(image, Pyramid) else Pyramid(image)
    scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
    k = 0
    while scale * 2 ** k < 0.5:
        k += 1
    m_level = m.copy()
    m_level[:, :2] *= 2 ** k  # level-k pixel i is centred on level-0 pixel i * 2**k
    return cv2.warpAffine(pyramid.level(k), m_level, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def crop(image: np.ndarray | Pyramid, box: Box, size: int, context: float = 1.0) -> np.ndarray:
    """Crop ``box`` (plus ``context``) from ``image``, resized to ``round(size * context)`` square."""
    return warp(image, box_affine(box, size, context), round(size * context))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift) taking ``src`` points to ``dst``."""
    sc, dc = src.mean(0), dst.mean(0)
    a, b = src - sc, dst - dc
    norm = (a ** 2).sum()
    p = (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]).sum() / norm
    q = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / norm
    r = np.array([[p, -q], [q, p]])
    return np.hstack([r, (dc - r @ sc)[:, None]])


def to_box_relative(points: np.ndarray, box: Box) -> np.ndarray:
    """Image points -> box-relative coordinates (box edges at 0 and 1)."""
    m = box_affine(box, 1)
    return apply_affine(m, points) + 0.5


def from_box_relative(rel: np.ndarray, box: Box) -> np.ndarray:
    """Box-relative coordinates -> image points (inverse of :func:`to_box_relative`)."""
    return apply_affine(invert_affine(box_affine(box, 1)), rel - 0.5)
