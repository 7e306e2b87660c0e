"""COCO keypoints JSON (what pycocotools and MMPose's face datasets read).

COCO's pixel origin is the top-left corner of the top-left pixel, so the centre of
pixel (0, 0) is (0.5, 0.5): a COCO coordinate is our 0-based one + 0.5, exactly.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..draw import CONTOURS
from ..formats import atomic_write
from . import Face, image_path

WRITES_FOLDER = False
READS_ROTATION = True  # mmcv/mmengine and PIL-based loaders apply EXIF orientation, as the run did
READS_HEIF = False  # nor do they decode HEIC or AVIF without a plugin: left out
VISIBLE = 2  # COCO's "labelled and visible": 300-W marks every point, occluded ones where they would be
REGIONS = ["jaw", "right_brow", "left_brow", "nose_bridge", "nose_base", "right_eye", "left_eye", "outer_lip",
           "inner_lip"]  # one per draw.CONTOURS entry; right and left are the subject's, as COCO's person keypoints
KEYPOINTS = [f"{region}_{i + 1}" for region, (points, _) in zip(REGIONS, CONTOURS) for i in range(len(points))]
SKELETON = [[a + 1, b + 1] for points, closed in CONTOURS  # 1-based, as COCO's person skeleton
            for a, b in zip(points, [*points[1:], points[0]] if closed else points[1:])]
CATEGORY = {"id": 1, "name": "face", "supercategory": "face", "keypoints": KEYPOINTS, "skeleton": SKELETON}


def write(faces: list[Face], dest: Path, absolute: bool) -> None:
    """Write ``faces`` as one COCO keypoints file ``dest``."""
    atomic_write(dest, json.dumps(document(faces, dest, absolute), separators=(",", ":")) + "\n")


def document(faces: list[Face], dest: Path, absolute: bool) -> dict:
    """The COCO dictionary: info, images (one per photo), annotations (one per face), the face category."""
    ids: dict[Path, int] = {}
    images = []
    for face in faces:
        if face.photo.path not in ids:
            ids[face.photo.path] = len(ids) + 1
            images.append({"id": ids[face.photo.path], "file_name": image_path(face.photo, dest, absolute),
                           "width": face.photo.width, "height": face.photo.height})
    annotations = [annotation(face, i + 1, ids[face.photo.path]) for i, face in enumerate(faces)]
    info = {"description": "68 iBUG 300-W face landmarks written by annotate export",
            "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": [CATEGORY]}


def annotation(face: Face, ann_id: int, image_id: int) -> dict:
    """One face: 68 keypoints (x, y, 2), ``bbox`` the points' tight box, ``area`` its area, and what the run said."""
    points = face.points + 0.5
    lo, hi = points.min(0), points.max(0)
    left, top, right, bottom = face.box
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": len(points),
            "keypoints": [v for x, y in points for v in (_c(x), _c(y), VISIBLE)],
            "bbox": [_c(v) for v in (*lo, *(hi - lo))], "area": _c(np.prod(hi - lo)),
            "detector_bbox": [left, top, right - left + 1, bottom - top + 1],  # pixel edges: exact
            "detector": face.detector, "score": face.score, "expected_error": face.expected_error,
            "checked": face.checked or None}


def _c(value: float) -> float:
    """A coordinate to 3 decimals (the run's own precision), without binary noise."""
    return round(float(value), 3)
