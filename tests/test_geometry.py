"""Crop geometry shared by training and inference, and detector box mapping."""
from __future__ import annotations

import cv2
import numpy as np

from annotator.crop import (apply_affine, box_affine, context_box, crop, frame_affine, from_box_relative,
                            similarity, to_box_relative, to_crop_pixels, warp)
from annotator.detectors import detect, face_containing
from annotator.images import read_image
from annotator.landmarks import load_stages
from annotator.training.augment import context_points, sample
from annotator.training.groundtruth import read_68


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
        base = frame_affine("box", 62, context_box(62, 2))
        trained, rel = sample(cached, context_points(np.array([[0.25, 0.75]]), 62, 2), 62, base, None)
        assert np.abs(trained.astype(int) - inference).max() <= 1  # OpenCV's 1/32 px sampling grid
        assert np.allclose(rel, [[0.25, 0.75]])


def test_shape_stage_training_crop_is_the_inference_crop(data):
    """The shape stage sees in training (aligned on points in the cached crop) what it sees at inference."""
    template = _template()
    for stem in ("1051618982_1", "134212_1"):  # a square detector box (108 x 108), and 186 x 187
        image = read_image(data / "300w" / "afw" / f"{stem}.jpg")
        points = read_68(data / "300w" / "afw" / f"{stem}.pts")
        box = face_containing(detect(image), points).box
        inference = frame_affine("shape", 62, box, points, template)
        into_cache = box_affine(box, 62, context=2)
        in_cache = context_points(to_box_relative(points, box), 62, 2)
        assert np.allclose(in_cache, apply_affine(into_cache, points))
        base = frame_affine("shape", 62, context_box(62, 2), in_cache, template)
        trained_matrix = (_square(base) @ _square(into_cache))[:2]  # image -> network crop, through the cache
        trained, rel = sample(crop(image, box, 62, context=2), in_cache, 62, base, None)
        assert np.allclose(to_crop_pixels(rel, 62), apply_affine(trained_matrix, points))
        if box[2] - box[0] == box[3] - box[1]:
            assert np.allclose(trained_matrix, inference)
        else:  # the cached crop stretches a non-square box to a square: the alignment moves a little
            assert np.abs(apply_affine(trained_matrix, points) - apply_affine(inference, points)).max() < 0.25
        # the same pixels, up to training's second bilinear resampling (of the cached crop)
        assert np.abs(trained.astype(float) - warp(image, inference, 62)).mean() < 3


def _template() -> np.ndarray:
    """The shipped shape stage's mean shape (crop-relative)."""
    stages, _, _ = load_stages()
    return stages[-1].mean_shape.numpy().astype(np.float64)


def _square(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0, 0, 1]])


def test_similarity_recovers_a_rotation_scale_and_shift():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (68, 2))
    a, s, t = np.deg2rad(25), 0.5, np.array([3.0, -7.0])
    r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = similarity(src, src @ r.T + t)
    assert np.allclose(m, np.hstack([r, t[:, None]]))
    noisy = similarity(src, src @ r.T + t + rng.normal(0, 0.5, src.shape))  # least squares, still a similarity
    assert np.isclose(noisy[0, 0], noisy[1, 1]) and np.isclose(noisy[0, 1], -noisy[1, 0])
    assert np.allclose(noisy[:, :2], m[:, :2], atol=0.01) and np.allclose(noisy[:, 2], t, atol=0.5)


def test_max_side_boxes_map_back(data):
    image = cv2.imread(str(data / "300w" / "afw" / "1130084326_1.jpg"))
    full = sorted(f.box for f in detect(image))
    small = sorted(f.box for f in detect(image, max_side=500))
    assert len(full) == len(small) == 3
    for a, b in zip(full, small):
        inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        assert inter / union > 0.6


def test_low_resolution_samples_blur_the_face_not_the_points(data):
    """fit --lowres: a sample shrunk and brought back up loses fine detail; its points stay where they were."""
    image = read_image(data / "300w" / "afw" / "1051618982_1.jpg")
    points = read_68(data / "300w" / "afw" / "1051618982_1.pts")
    box = face_containing(detect(image), points).box
    cached = crop(image, box, 128, context=2)
    base = frame_affine("box", 128, context_box(128, 2))
    pts = context_points(to_box_relative(points, box), 128, 2)
    sharp, rel = sample(cached, pts, 128, base, np.random.default_rng(3), lowres=0.0)
    blurred, rel_blurred = sample(cached, pts, 128, base, np.random.default_rng(3), lowres=1.0)
    assert np.allclose(rel, rel_blurred)
    detail = [np.abs(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), cv2.CV_64F)).mean() for x in (sharp, blurred)]
    assert detail[1] < 0.7 * detail[0], detail
    assert np.abs(cv2.GaussianBlur(sharp, (9, 9), 3).astype(float) - cv2.GaussianBlur(blurred, (9, 9), 3)).mean() < 4


def test_stretched_samples_keep_each_point_on_its_pixel():
    """fit --stretch: a face made taller or wider carries its points with it, and the face's proportions change."""
    cached = np.zeros((124, 124, 3), np.uint8)
    pts = np.array([(x, y) for y in range(42, 83, 5) for x in range(42, 83, 5)][:68], float)  # a dot each
    for x, y in pts.astype(int):
        cached[y - 1:y + 2, x - 1:x + 2] = 255
    base = frame_affine("box", 62, context_box(62, 2))
    ratios = []
    for seed in range(6):
        image, rel = sample(cached, pts, 62, base, np.random.default_rng(seed), jitter=(0.0, 0.0, 0.0), stretch=0.1)
        placed = to_crop_pixels(rel, 62)
        for x, y in placed:
            assert image[int(round(y)), int(round(x))].max() > 100  # the dot is where its point went
        span = placed.max(0) - placed.min(0)
        ratios.append(span[1] / span[0])
    assert np.ptp(ratios) > 0.2  # height / width differs between samples: the proportions were stretched
