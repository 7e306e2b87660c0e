"""``annotate train pseudolabel``: faces that 300-W left unannotated in our training photos, annotated by a
teacher network (self-training data for the precision stage)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.crop import crop
from annotator.detectors import detect, face_containing
from annotator.images import read_image
from annotator.landmarks import cached_landmarker

from .groundtruth import labelled_images, photo_of, points_box, read_68
from .prepare import CONTEXT, save_cache


def _photo_faces(copies: list[tuple[Path, Path]], teacher: str, size: int, detector: str, min_side: int,
                 max_expected: float) -> list[dict]:
    """The teacher's faces in one photo (its first copy) away from every annotated face of the photo."""
    image = read_image(copies[0][0])
    annotated = [p for _, pts in copies if (p := read_68(pts)) is not None]
    faces = [f for f in detect(image, detector=detector)
             if f.box[2] - f.box[0] + 1 >= min_side and not any(face_containing([f], p) for p in annotated)]
    if not faces:
        return []
    points, expected, _ = cached_landmarker("network", teacher).predict_with_error([image], [[f.box for f in faces]])
    boxes = [points_box(p) for p in points]
    return [{"crops": [crop(image, box, size, CONTEXT)], "box": box, "points": p, "path": str(copies[0][0]),
             "detector": "teacher", "expected": e}
            for p, box, e in zip(points, boxes, expected) if e <= max_expected]


def pseudolabel(folders: list[str], teacher: str | Path, out: str | Path, size: int = 128, part: str = "train",
                detector: str = "cnn", min_side: int = 60, max_expected: float = 0.04, jobs: int = -1) -> int:
    """Cache (as ``prepare --detector points`` does) every face ``detector`` finds in the photos of ``folders``'
    ``part`` that no ``.pts`` of the photo annotates, at least ``min_side`` pixels wide, with the points of
    ``teacher`` (a cascade file) where its expected error is at most ``max_expected`` (kept as ``expected``);
    returns the count."""
    pairs = [p for folder in folders for p in labelled_images(folder, part)]
    photos: dict[tuple[Path, str], list[tuple[Path, Path]]] = {}  # a photo's copies, wherever they sort
    for image, pts in pairs:
        photos.setdefault((image.parent, photo_of(image)), []).append((image, pts))
    per_photo = Parallel(n_jobs=jobs, batch_size=4)(
        delayed(_photo_faces)(copies, str(teacher), size, detector, min_side, max_expected)
        for copies in photos.values())
    kept = [face for faces in per_photo for face in faces]
    if not kept:
        raise ValueError(f"the teacher annotated no faces in {folders}")
    save_cache(out, 0, kept, size, upsample=0, expected=np.array([f["expected"] for f in kept]))
    return len(kept)
