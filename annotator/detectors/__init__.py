"""Face detectors behind one interface: :func:`detect` returns :class:`Face` boxes in the photo's pixels.

Each detector is a module with ``load(device)`` and ``find(rgb, upsample,
min_score, device, threads)``: ``hog`` (dlib's HOG frontal face detector) and ``cnn``
(dlib's CNN face detector, MMOD, run by torch). Both look at an 80-px window,
so one scan schedule (:func:`plan_scan`) serves both.

Both find faces within about 60 degrees of upright. ``orientation="any"`` also scans the photo turned
by 90, 180 and 270 degrees, at the upright scan's resolution (the same copy, turned: each turn finds the
faces the upright scan would find on an upright photo), and keeps one box per face across the turns
(:func:`merge`).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..crop import Box, unscale_box

DETECTORS = ("hog", "cnn")
# annotate's default is cnn (it finds the most faces); training and evaluation default to hog, the boxes the
# shipped network was trained on (training/reproduce.sh)
TRAINING_DETECTOR = "hog"
DEFAULT_MIN_SCORE = {"hog": 0.0, "cnn": 0.0}  # benchmarks/detectors.py: true and false detections per threshold
WINDOW = 80  # box side (px of the scanned image) of the smallest face either detector finds
DEFAULT_MIN_FACE = 40  # px: what upsample 1 on the whole photo looks for (the default before --min-face)
DEFAULT_MIN_FACE_SHARE = 25  # the default looks for faces of at least 1/25 of the shorter side
ORIENTATIONS = ("upright", "any")
SAME_FACE_IOU, SAME_FACE_COVER = 0.3, 0.6  # boxes of one face across turns (see merge)


@dataclass(frozen=True)
class Face:
    """One detection: box (inclusive pixel indices), detector score and the detector's name."""

    box: Box
    score: float
    detector: str = TRAINING_DETECTOR


@dataclass(frozen=True)
class Scan:
    """How a photo is scanned: a copy shrunk by ``scale`` (at most 1), upsampled ``upsample`` times."""

    scale: float
    upsample: int

    @property
    def min_face(self) -> float:
        """Box side, in the original photo's pixels, of the smallest face this scan finds."""
        return WINDOW / (self.scale * 2 ** self.upsample)


def default_min_face(height: int, width: int) -> float:
    """The smallest face a default run looks for: 40 px, or 1/25 of the shorter side if larger."""
    return max(DEFAULT_MIN_FACE, min(height, width) / DEFAULT_MIN_FACE_SHARE)


def plan_scan(height: int, width: int, upsample: int | None = None, max_side: int | None = None,
              min_face: float | None = None) -> Scan:
    """The cheapest scan of a ``width`` x ``height`` photo that finds faces of ``min_face`` px and up.

    ``upsample`` given (or ``max_side`` alone, which implies upsample 1): the
    scan from before ``min_face`` existed, the whole photo upsampled that many
    times. Otherwise ``min_face`` (default: :func:`default_min_face`) sets the
    fewest upsamplings and the smallest copy that bring such a face to the
    detector's window. ``max_side`` caps the copy's longest side either way.
    """
    if upsample is not None and min_face is not None:
        raise ValueError("give upsample or min_face, not both")
    if upsample is None and min_face is None and max_side:
        upsample = 1
    if upsample is None:
        face = min_face or default_min_face(height, width)
        upsample = max(0, math.ceil(math.log2(WINDOW / face)))
        scale = min(1.0, WINDOW / (face * 2 ** upsample))
    else:
        scale = 1.0
    if max_side:
        scale = min(scale, max_side / max(height, width))
    return Scan(scale, upsample)


def module(name: str):
    """The module of detector ``name`` (``hog`` or ``cnn``)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r} (choose from {', '.join(DETECTORS)})")
    return importlib.import_module(f"{__name__}.{name}")


def load(name: str = TRAINING_DETECTOR, device: str = "cpu") -> None:
    """Load detector ``name`` now, so that the first image does not pay for it."""
    module(name).load(device)


def detect(image_bgr: np.ndarray, upsample: int | None = None, max_side: int | None = None,
           max_faces: int | None = None, min_face: float | None = None, min_score: float | None = None,
           detector: str = TRAINING_DETECTOR, device: str = "cpu", threads: int = 1,
           orientation: str = "upright") -> list[Face]:
    """Faces in a BGR uint8 image, best score first, boxes in the image's pixels.

    ``min_score`` defaults to the detector's own (:data:`DEFAULT_MIN_SCORE`);
    ``threads``: CPU threads the CNN detector may use (HOG uses one);
    ``orientation``: ``upright``, or ``any`` to scan the turned photo too (see the module's text).
    The detector scans the copy :func:`plan_scan` chooses; the image itself is
    never modified or copied at full size except when the scan is at scale 1.
    """
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r} (choose from {', '.join(ORIENTATIONS)})")
    height, width = image_bgr.shape[:2]
    scan = plan_scan(height, width, upsample, max_side, min_face)
    threshold = DEFAULT_MIN_SCORE[detector] if min_score is None else min_score
    find = module(detector).find
    copy = _scan_copy(image_bgr, scan.scale)
    faces = []
    for k in (0, 1, 2, 3) if orientation == "any" else (0,):  # quarter turns counter-clockwise
        turned = np.rot90(copy, k).copy() if k else copy  # a fresh array: dlib wants plain strides
        found = find(turned, scan.upsample, threshold, device, threads)
        faces += [Face(unscale_box(turn_back(box, k, copy.shape), scan.scale), score, detector)
                  for box, score in found]
    if orientation == "any":
        faces = merge(faces)
    faces.sort(key=lambda f: -f.score)
    return faces[:max_faces] if max_faces else faces


def turn_back(box: Box, k: int, shape: tuple[int, ...]) -> Box:
    """A box found in ``np.rot90(image, k)`` (turned ``k`` quarter turns counter-clockwise), in ``image``'s
    pixels (``shape``: the unturned image's)."""
    height, width = shape[:2]
    left, top, right, bottom = box
    if k == 0:
        return box
    if k == 1:
        return width - 1 - bottom, left, width - 1 - top, right
    if k == 2:
        return width - 1 - right, height - 1 - bottom, width - 1 - left, height - 1 - top
    return top, height - 1 - right, bottom, height - 1 - left


def merge(faces: list[Face]) -> list[Face]:
    """Best score first, each face once: a box that overlaps a better one by IoU above
    :data:`SAME_FACE_IOU`, or lies inside it for :data:`SAME_FACE_COVER` of its own area, is the same face."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if not any(same_face(face.box, k.box) for k in kept):
            kept.append(face)
    return kept


def same_face(a: Box, b: Box) -> bool:
    """Whether boxes ``a`` and ``b`` are one face (see :func:`merge`)."""
    area = [(r - l + 1) * (bt - t + 1) for l, t, r, bt in (a, b)]
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    return inter > SAME_FACE_IOU * (area[0] + area[1] - inter) or inter > SAME_FACE_COVER * min(area)


def _scan_copy(image_bgr: np.ndarray, scale: float) -> np.ndarray:
    """The RGB image the detector scans: ``image_bgr`` shrunk by ``scale`` (INTER_AREA), one copy."""
    if scale >= 1.0:
        return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    h, w = image_bgr.shape[:2]
    small = cv2.resize(image_bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB, dst=small)


def face_containing(faces: list[Face], points: np.ndarray) -> Face | None:
    """The best-scoring face whose box contains the centre of ``points`` (training and evaluation)."""
    cx, cy = (points.min(0) + points.max(0)) / 2
    for f in faces:
        left, top, right, bottom = f.box
        if left <= cx <= right and top <= cy <= bottom:
            return f
    return None
