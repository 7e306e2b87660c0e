"""``annotate train prepare``: detector boxes and crops of ground-truth faces, cached once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.crop import crop, to_box_relative

from .groundtruth import detected_faces, labelled_images, points_face

CONTEXT = 2  # cached crops are twice the box, so augmentation can shift, scale and rotate


def _faces(image_path: Path, pts_path: Path, sizes: tuple[int, ...], upsample: int,
           detectors: tuple[str, ...]) -> list[dict]:
    """One entry per detector that found the face (its box and crops), or one saying why there is none."""
    found = (points_face(image_path, pts_path) if detectors == ("points",)
             else detected_faces(image_path, pts_path, upsample, detectors=detectors))
    if found is None:
        return [{"status": "skipped"}]
    image, faces, points = found
    kept = [{"status": "kept", "crops": [crop(image, face.box, s, CONTEXT) for s in sizes], "box": face.box,
             "detector": face.detector, "points": points, "path": str(image_path)} for face in faces if face]
    return kept or [{"status": "missed"}]


def cache_path(out: str | Path, size: int) -> Path:
    """``out`` with ``{size}`` filled in (needed when one detection pass writes several sizes)."""
    return Path(str(out).replace("{size}", str(size)))


def prepare(folders: list[str], out: str | Path, sizes: tuple[int, ...] = (62,), upsample: int = 1,
            jobs: int = -1, part: str = "all", detectors: tuple[str, ...] = ("hog",)) -> dict[str, int]:
    """Detect, crop and cache every 68-point face under ``folders`` (one cache per crop size); returns counts.

    With several ``detectors`` a face enters once per detector that finds it, on that detector's box
    (the cache's ``detectors`` array says which); it is missed when none finds it. ``("points",)``
    detects nothing: every face enters on the square around its ground-truth points (for the precision
    stage, which aligns on the points anyway).
    """
    if any(s % 2 for s in sizes):
        raise ValueError("crop sizes must be even (the cached crop centres them exactly)")
    if len(sizes) > 1 and "{size}" not in str(out):
        raise ValueError("with several sizes, --out must contain {size}")
    pairs = [p for folder in folders for p in labelled_images(folder, part)]
    results = [entry for entries in Parallel(n_jobs=jobs, batch_size=8)(
        delayed(_faces)(image, pts, tuple(sizes), upsample, tuple(detectors)) for image, pts in pairs)
        for entry in entries]
    kept = [r for r in results if r["status"] == "kept"]
    counts = {s: sum(r["status"] == s for r in results) for s in ("kept", "missed", "skipped")}
    if not kept:
        raise ValueError(f"no faces kept from {folders}: {counts}")
    for i, size in enumerate(sizes):
        save_cache(cache_path(out, size), i, kept, size, upsample)
    return counts


def save_cache(path: str | Path, index: int, kept: list[dict], size: int, upsample: int, **extra: np.ndarray
               ) -> None:
    """Write the faces ``kept`` (each with its ``crops``, the ``index``-th of crop size ``size``) as a cache,
    with the ``extra`` arrays."""
    boxes = np.array([r["box"] for r in kept], dtype=np.int64)
    points = np.stack([r["points"] for r in kept])
    targets = np.stack([to_box_relative(p, tuple(b)) for p, b in zip(points, boxes)])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, crops=np.stack([r["crops"][index] for r in kept]), boxes=boxes, points=points, targets=targets,
             paths=np.array([r["path"] for r in kept]), size=size, context=CONTEXT, upsample=upsample,
             detectors=np.array([r["detector"] for r in kept]), **extra)


def load_cache(path: str | Path) -> dict[str, np.ndarray]:
    """A cache written by :func:`prepare`, as a dict of arrays."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
