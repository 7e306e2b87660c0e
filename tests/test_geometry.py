"""Crop geometry shared by training and inference, and detector box mapping."""
from __future__ import annotations

import cv2
import numpy as np

from annotator.crop import (apply_affine, box_affine, crop, from_box_relative, invert_affine, similarity,
                            to_box_relative)
from annotator.detect import detect
from annotator.training.augment import base_affine, context_points, sample


def test_box_relative_round_trip_and_edges():
    box = (10, 20, 109, 119)
    pts = np.array([[9.5, 19.5], [109.5, 119.5], [60.0, 70.0]])
    rel = to_box_relative(pts, box)
    assert np.allclose(rel[:2], [[0, 0], [1, 1]])  # the box's outer pixel edges
    assert np.allclose(from_box_relative(rel, box), pts)


def test_training_crop_is_the_inference_crop():
    image = np.random.default_rng(0).integers(0, 255, (400, 500, 3), np.uint8)
    for box in [(100, 50, 199, 149), (10, 20, 330, 340), (480, 380, 530, 430)]:
        inference = crop(image, box, 62)
        cached = crop(image, box, 62, context=2)
        base = base_affine("box", cached.shape[0], None, None, 62)
        trained, rel = sample(cached, context_points(np.array([[0.25, 0.75]]), 62, 2), 62, base, None)
        assert np.abs(trained.astype(int) - inference).max() <= 1  # OpenCV's 1/32 px sampling grid
        assert np.allclose(rel, [[0.25, 0.75]])


def test_shape_frame_similarity_inverts():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (68, 2))
    m = similarity(src, src * 0.5 + 3)
    assert np.allclose(apply_affine(invert_affine(m), apply_affine(m, src)), src)
    assert np.allclose(box_affine((0, 0, 61, 61), 62)[:, :2], np.eye(2))


def test_max_side_boxes_map_back(data):
    image = cv2.imread(str(data / "300w" / "afw" / "1130084326_1.jpg"))
    full = sorted(f.box for f in detect(image))
    small = sorted(f.box for f in detect(image, max_side=500))
    assert len(full) == len(small) == 3
    for a, b in zip(full, small):
        inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        assert inter / union > 0.6
