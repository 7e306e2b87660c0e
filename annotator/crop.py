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


def unscale_box(box: Box, scale: float) -> Box:
    """A box found in a copy of an image resized by ``scale``, in the image's pixels (pixel v spans [v, v + 1))."""
    if scale == 1.0:
        return box
    left, top, right, bottom = box
    return (round(left / scale), round(top / scale), round((right + 1) / scale) - 1,
            round((bottom + 1) / scale) - 1)


def box_affine(box: Box, size: int, context: float = 1.0) -> np.ndarray:
    """2x3 matrix taking image coordinates to coordinates in the crop of ``box``."""
    left, top, right, bottom = box
    sx = size / (right - left + 1)
    sy = size / (bottom - top + 1)
    half = (round(size * context) - 1) / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return np.array([[sx, 0, half - cx * sx], [0, sy, half - cy * sy]], dtype=np.float64)


def turned(m: np.ndarray, size: int, angle: float) -> np.ndarray:
    """Crop matrix ``m`` followed by a turn of the ``size`` crop by ``-angle`` (radians, image coordinates)
    about its centre: a face turned by ``angle`` in ``m``'s crop is upright in the new one."""
    c, s = np.cos(angle), np.sin(angle)
    r = np.array([[c, s], [-s, c]])
    centre = np.full(2, (size - 1) / 2)
    return np.hstack([r @ m[:, :2], (r @ (m[:, 2] - centre) + centre)[:, None]])


def similarity_angle(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation (radians, image coordinates) of the least-squares similarity taking ``src`` (68, 2) to each
    of ``dst`` (N, 68, 2)."""
    a = src - src.mean(0)
    b = dst - dst.mean(1, keepdims=True)
    return np.arctan2((a[:, 0] * b[..., 1] - a[:, 1] * b[..., 0]).sum(1), (a * b).sum((1, 2)))


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to an (N, 2) array of points."""
    return points @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(m)


def warp(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` image of ``m`` (image -> crop coordinates).

    Strong reductions first halve the needed region of the image k times with
    a Gaussian pyramid (aligned to the whole image's pyramid grid), so that
    bilinear sampling never shrinks by more than 2x: no aliasing, and the cost
    follows the face's size, not the photo's. Outside the image is filled by
    replicating the border.
    """
    k = 0
    while np.sqrt(abs(np.linalg.det(m[:, :2]))) * 2 ** k < 0.5:
        k += 1
    if k:
        image, m = _reduced_region(image, m, size, k)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _reduced_region(image: np.ndarray, m: np.ndarray, size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``image`` that crop ``m`` samples, reduced k pyramid levels, and the matching matrix."""
    step, margin = 2 ** k, 4 * 2 ** k
    corners = apply_affine(invert_affine(m), np.array([[-1, -1], [size, -1], [-1, size], [size, size]]))
    h, w = image.shape[:2]
    x0, y0 = (np.clip(np.floor(corners.min(0)) - margin, 0, [w - 1, h - 1]) // step * step).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(0)) + margin + 1, 1, [w, h]).astype(int)
    region = image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
    for _ in range(k):
        region = cv2.pyrDown(region)
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)
    shifted[:, :2] *= step  # level-k pixel i is centred on level-0 pixel x0 + i * 2**k
    return region, shifted


def crop(image: np.ndarray, box: Box, size: int, context: float = 1.0) -> np.ndarray:
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


def to_crop_pixels(rel: np.ndarray, size: int) -> np.ndarray:
    """Crop-relative coordinates (crop edges at 0 and 1, as networks output) -> pixel centres of a ``size`` crop."""
    return rel * size - 0.5


def from_crop_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pixel centres of a ``size`` crop -> crop-relative coordinates (inverse of :func:`to_crop_pixels`)."""
    return (pixels + 0.5) / size


def context_box(size: int, context: float) -> Box:
    """Where the detector box lies (pixel indices) in its crop cut with ``context`` (:func:`crop`)."""
    first = (round(size * context) - size) / 2
    return first, first, first + size - 1, first + size - 1


def frame_affine(frame: str, size: int, box: Box, points: np.ndarray | None = None,
                 template: np.ndarray | None = None) -> np.ndarray:
    """Source -> network crop matrix for a ``size`` network of crop ``frame``; inference and training alike.

    ``box`` (and ``roll``, the roll estimator's): the detector box as is. ``shape``: ``points`` (in the
    source) aligned by a similarity onto ``template``, the network's crop-relative mean shape. The source
    is the photo at inference, the cached context crop in training (with ``box`` from :func:`context_box`).
    """
    if frame in ("box", "roll"):
        return box_affine(box, size)
    return similarity(points, to_crop_pixels(template, size))


def to_box_relative(points: np.ndarray, box: Box) -> np.ndarray:
    """Image points -> box-relative coordinates (box edges at 0 and 1)."""
    m = box_affine(box, 1)
    return apply_affine(m, points) + 0.5


def from_box_relative(rel: np.ndarray, box: Box) -> np.ndarray:
    """Box-relative coordinates -> image points (inverse of :func:`to_box_relative`)."""
    return apply_affine(invert_affine(box_affine(box, 1)), rel - 0.5)


RIGHT_EYE, LEFT_EYE = slice(36, 42), slice(42, 48)  # the subject's right eye is on the image's left


def face_roll(points: np.ndarray) -> float:
    """A face's roll in degrees, counter-clockwise as seen on screen, in (-180, 180]: the angle of the line
    from the centre of the subject's right eye to the centre of the left eye (0: upright; 90: the face lies
    with its top towards the image's left)."""
    dx, dy = points[LEFT_EYE].mean(0) - points[RIGHT_EYE].mean(0)
    return float(np.degrees(np.arctan2(-dy, dx))) + 0.0
