"""``annotate train prepare``: detector boxes and crops of ground-truth faces, cached once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.crop import crop, to_box_relative

from .groundtruth import detected_face, labelled_images

CONTEXT = 2  # cached crops are twice the box, so augmentation can shift, scale and rotate


def _face(image_path: Path, pts_path: Path, sizes: tuple[int, ...], upsample: int) -> dict:
    found = detected_face(image_path, pts_path, upsample)
    if found is None:
        return {"status": "skipped"}
    image, face, points = found
    if face is None:
        return {"status": "missed"}
    return {"status": "kept", "crops": [crop(image, face.box, s, CONTEXT) for s in sizes], "box": face.box,
            "points": points, "path": str(image_path)}


def cache_path(out: str | Path, size: int) -> Path:
    """``out`` with ``{size}`` filled in (needed when one detection pass writes several sizes)."""
    return Path(str(out).replace("{size}", str(size)))


def prepare(folders: list[str], out: str | Path, sizes: tuple[int, ...] = (62,), upsample: int = 1,
            jobs: int = -1, part: str = "all") -> dict[str, int]:
    """Detect, crop and cache every 68-point face under ``folders`` (one cache per crop size); returns counts."""
    if any(s % 2 for s in sizes):
        raise ValueError("crop sizes must be even (the cached crop centres them exactly)")
    if len(sizes) > 1 and "{size}" not in str(out):
        raise ValueError("with several sizes, --out must contain {size}")
    pairs = [p for folder in folders for p in labelled_images(folder, part)]
    results = Parallel(n_jobs=jobs, batch_size=8)(
        delayed(_face)(image, pts, tuple(sizes), upsample) for image, pts in pairs)
    kept = [r for r in results if r["status"] == "kept"]
    counts = {s: sum(r["status"] == s for r in results) for s in ("kept", "missed", "skipped")}
    if not kept:
        raise ValueError(f"no faces kept from {folders}: {counts}")
    boxes = np.array([r["box"] for r in kept], dtype=np.int64)
    points = np.stack([r["points"] for r in kept])
    targets = np.stack([to_box_relative(p, tuple(b)) for p, b in zip(points, boxes)])
    for i, size in enumerate(sizes):
        path = cache_path(out, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, crops=np.stack([r["crops"][i] for r in kept]), boxes=boxes, points=points,
                 targets=targets, paths=np.array([r["path"] for r in kept]), size=size, context=CONTEXT,
                 upsample=upsample)
    return counts


def load_cache(path: str | Path) -> dict[str, np.ndarray]:
    """A cache written by :func:`prepare`, as a dict of arrays."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
