"""dlib's own shape-predictor trainer on our training folders: a method-to-method comparison."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.network import FLIP_PERMUTATION

from .groundtruth import detected_face, labelled_images

MARGIN = 0.5  # each face is cut out with half its box size around it (dlib needs no more; saves memory)


def _face(image_path: Path, pts_path: Path, upsample: int) -> tuple[np.ndarray, tuple, np.ndarray] | None:
    """The face's RGB region, its detector box and its points in that region, or None (missed / not 68)."""
    found = detected_face(image_path, pts_path, upsample)
    if found is None or found[1] is None:
        return None
    image, face, points = found
    left, top, right, bottom = face.box
    pad = round(MARGIN * (right - left + 1))
    x0, y0 = max(0, left - pad), max(0, top - pad)
    region = image[y0:bottom + pad + 1, x0:right + pad + 1, ::-1]  # BGR -> RGB
    return np.ascontiguousarray(region), (left - x0, top - y0, right - x0, bottom - y0), points - [x0, y0]


def _mirrored(region: np.ndarray, box: tuple, points: np.ndarray) -> tuple[np.ndarray, tuple, np.ndarray]:
    w = region.shape[1]
    left, top, right, bottom = box
    flipped = points[FLIP_PERMUTATION].copy()
    flipped[:, 0] = w - 1 - flipped[:, 0]
    return np.ascontiguousarray(region[:, ::-1]), (w - 1 - right, top, w - 1 - left, bottom), flipped


def train_dlib(folders: list[str], dest: str | Path, upsample: int = 1, jobs: int = -1,
               oversampling: int = 10) -> Path:
    """Train ``dlib.train_shape_predictor`` on the training part of ``folders`` (detector boxes, mirrored).

    Same faces and boxes as our network's training caches (``prepare --part
    train``); dlib's default options except ``oversampling`` (20 by default).
    """
    import dlib

    pairs = [p for folder in folders for p in labelled_images(folder, "train")]
    faces = [f for f in Parallel(n_jobs=jobs, batch_size=8)(
        delayed(_face)(i, p, upsample) for i, p in pairs) if f is not None]
    faces += [_mirrored(*f) for f in faces]
    options = dlib.shape_predictor_training_options()
    options.oversampling_amount = oversampling
    options.num_threads = jobs if jobs > 0 else os.cpu_count() or 1
    detections = [[dlib.full_object_detection(dlib.rectangle(*map(int, box)),
                                              [dlib.point(*map(int, np.round(p))) for p in pts])]
                  for _, box, pts in faces]
    predictor = dlib.train_shape_predictor([f[0] for f in faces], detections, options)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    predictor.save(str(dest))
    return dest
