"""Ground-truth folders: images with a ``.pts`` of the same stem (300-W layout), and the held-out slice."""
from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from annotator.crop import Box, apply_affine
from annotator.detectors import Face, detect, face_containing
from annotator.discover import IMAGE_EXTENSIONS
from annotator.formats import read_pts
from annotator.images import read_image

from .detections import cached_faces

HOLDOUT = 0.15  # share of photos held out for validation (``part="holdout"``)
PARTS = ("all", "train", "holdout")


def photo_of(image: Path) -> str:
    """The photo a face file comes from: 300-W stores one copy per face as ``<photo>_<k>`` (k < 100)."""
    return re.sub(r"_\d{1,2}$", "", image.stem)


def in_holdout(image: Path) -> bool:
    """Whether ``image``'s photo is in the fixed held-out slice (a stable hash of the photo's name)."""
    return zlib.crc32(photo_of(image).encode()) % 10_000 < HOLDOUT * 10_000


def labelled_images(folder: str | Path, part: str = "all") -> Iterator[tuple[Path, Path]]:
    """(image, pts) pairs under ``folder``, sorted, walked recursively.

    ``part`` keeps every face (``all``), the training part (``train``) or the
    held-out slice of photos (``holdout``); a photo's faces are never split.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}")
    for pts in sorted(Path(folder).rglob("*.pts")):
        for image in sorted(pts.parent.glob(pts.stem + ".*")):
            if image.suffix.lower() in IMAGE_EXTENSIONS:
                if part == "all" or in_holdout(image) == (part == "holdout"):
                    yield image, pts
                break


def read_68(pts: Path) -> np.ndarray | None:
    """0-based (68, 2) points, or None when the file holds another markup (e.g. 39 points)."""
    points = read_pts(pts)
    return points if len(points) == 68 else None


def data_sets(folders: list[str], holdout_of: list[str] = ()) -> list[tuple[str, str]]:
    """(folder, part) pairs: every face of ``folders``, the held-out slice of ``holdout_of``."""
    return [(f, "all") for f in folders] + [(f, "holdout") for f in holdout_of]


def turned(image: np.ndarray, points: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned by ``angle`` degrees counter-clockwise (on screen) about its centre, on a canvas
    enlarged so that nothing is cut (border replicated), and its points turned with it."""
    if angle % 360 == 0:
        return image, points
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    size = int(np.ceil(h * sin + w * cos - 1e-6)), int(np.ceil(h * cos + w * sin - 1e-6))
    m[:, 2] += (np.array(size) - [w, h]) / 2
    return (cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
            apply_affine(m, points))


def occluded(image: np.ndarray, points: np.ndarray, share: float, seed: str) -> np.ndarray:
    """A copy of ``image`` with a grey rectangle over about ``share`` of the area of the points' bounding box
    (sides 0.7-1.4 times sqrt(share) of the box's, placed at random inside it; fixed by ``seed``), as a hand,
    a cup or a phone hides a face."""
    if share <= 0:
        return image
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    lo, hi = points.min(0), points.max(0)
    size = np.minimum(np.sqrt(share) * rng.uniform(0.7, 1.4, 2), 1.0) * (hi - lo)
    corner = lo + rng.uniform(0, 1, 2) * (hi - lo - size)
    (x0, y0), (x1, y1) = np.round(corner).astype(int), np.round(corner + size).astype(int)
    out = image.copy()
    out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = int(rng.integers(40, 200))
    return out


def detected_faces(image_path: Path, pts_path: Path, upsample: int = 1, max_side: int | None = None,
                   detectors: tuple[str, ...] = ("hog",), turn: float = 0.0, orientation: str = "upright",
                   occlude: float = 0.0, boxes: str | Path | None = None
                   ) -> tuple[np.ndarray, list[Face | None], np.ndarray] | None:
    """The image (turned by ``turn`` degrees, see :func:`turned`; ``occlude`` of the face hidden, see
    :func:`occluded`), per detector the detection containing its ground-truth points' centre (None:
    missed), and the points. None when the ``.pts`` holds another markup than 68 points. ``boxes``: a
    folder that keeps the detections for the next run (``training.detections``)."""
    points = read_68(pts_path)
    if points is None:
        return None
    turn, occlude = float(turn), float(occlude)  # 0 and 0.0: one view (its detections' key, its occlusion)
    image, points = turned(read_image(image_path), points, turn)
    image = occluded(image, points, occlude, f"{image_path.name} {turn}")
    view = f"{upsample}|{max_side}|{detectors}|{turn}|{orientation}|{occlude}"
    faces = cached_faces(boxes, (image_path, pts_path), view, lambda: [
        face_containing(detect(image, upsample, max_side, detector=d, orientation=orientation), points)
        for d in detectors])
    return image, faces, points


def detected_face(image_path: Path, pts_path: Path, upsample: int = 1, max_side: int | None = None,
                  detector: str = "hog", turn: float = 0.0, orientation: str = "upright", occlude: float = 0.0,
                  boxes: str | Path | None = None) -> tuple[np.ndarray, Face | None, np.ndarray] | None:
    """As :func:`detected_faces`, for one detector."""
    found = detected_faces(image_path, pts_path, upsample, max_side, (detector,), turn, orientation, occlude,
                           boxes)
    return None if found is None else (found[0], found[1][0], found[2])


def points_box(points: np.ndarray) -> Box:
    """The square box around the bounding box of ``points``, with its side (pixel indices, inclusive)."""
    lo, hi = points.min(0), points.max(0)
    half = (hi - lo).max() / 2
    left, top = np.round((lo + hi) / 2 - half).astype(int)
    side = max(2, int(round(2 * half)))
    return int(left), int(top), int(left) + side - 1, int(top) + side - 1


def points_face(image_path: Path, pts_path: Path) -> tuple[np.ndarray, list[Face], np.ndarray] | None:
    """As :func:`detected_faces`, with the face's box from its ground-truth points (:func:`points_box`),
    detector ``points``; no detection runs."""
    points = read_68(pts_path)
    if points is None:
        return None
    return read_image(image_path), [Face(points_box(points), 0.0, "points")], points
