"""Refit: the network's points of a face from a few points a person placed (the review page's ``T`` key).

The placed points imply the face's alignment: the last (shape-frame) stage's mean shape, fitted onto them
by a least-squares similarity, is where the face lies. The stage crops the face upright from there and
predicts the other points (face and mirror image, averaged); the placed points are kept as placed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .crop import apply_affine, frame_affine, invert_affine, similarity, to_crop_pixels, warp
from .landmarks import NetworkLandmarker, predict_both

MIN_PLACED = 2  # a similarity needs two points; with fewer, the alignment comes from all current points
PASSES = 2  # the second pass starts from the first one's points (benchmarks/refit.py: it helps)


def refit(landmarker: NetworkLandmarker, image: np.ndarray, points: np.ndarray, placed: Sequence[int],
          passes: int = PASSES) -> np.ndarray:
    """The face's (68, 2) 0-based points refitted by the cascade's last stage, with ``points[placed]`` kept.

    ``image``: the photo (BGR, as the run decoded it); ``points``: the face's current points in its pixels;
    ``placed``: the indices of the points a person put where they belong. From two placed points on, the
    stage's mean shape fitted onto them is the starting shape; with fewer, the current points are. Each
    pass crops the face in the shape frame of the last shape and runs the stage on it.
    """
    stage = landmarker.stages[-1]
    size, frame = stage.config["size"], stage.config.get("frame", "box")
    if frame != "shape":
        raise ValueError("refitting needs a cascade whose last stage crops in the shape frame")
    template = stage.mean_shape.numpy().astype(np.float64)  # crop-relative
    placed = sorted(set(placed))
    shape = np.array(points, np.float64)
    if len(placed) >= MIN_PLACED:
        pixels = to_crop_pixels(template, size)
        shape = apply_affine(similarity(pixels[placed], shape[placed]), pixels)
    for _ in range(passes):
        m = frame_affine("shape", size, _bounds(shape), shape, template)
        crops = warp(image, m, size)[None]
        back = invert_affine(m)
        shape = np.mean([apply_affine(back, to_crop_pixels(rel[0, :, :2], size))
                         for rel in predict_both(stage, crops, device=landmarker.device)], axis=0)
        shape[placed] = points[placed]
    return shape


def _bounds(points: np.ndarray) -> tuple[int, int, int, int]:
    """The points' box (unused by the shape frame, which aligns on the points themselves)."""
    (left, top), (right, bottom) = np.floor(points.min(0)), np.ceil(points.max(0))
    return int(left), int(top), int(right), int(bottom)
