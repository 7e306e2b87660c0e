"""Photographic conditions our held-out photos rarely show: copies of ground-truth folders in grey,
under-exposed, heavily compressed, blurred, noisy and stretched, to score with ``annotate train evaluate``.

    python benchmarks/conditions.py ../shared/data/300w/afw --out reports/conditions
    python benchmarks/conditions.py ../shared/data/300w/helen_trainset ../shared/data/300w/lfpw_trainset \
      --part holdout --out reports/conditions
    annotate train evaluate annotator/weights/landmarks68.pt reports/conditions/* ../shared/data/300w/afw \
      --out reports/conditions_eval -j 2

Each condition writes OUT/<folder>_<condition>/ with every photo that has a 68-point .pts (JPEG, quality
95 unless the condition sets it) and the .pts beside it. Blur is relative to the face: a Gaussian whose
sigma is a share of the face's size (sqrt of the area of its ground-truth points' box, the metric's unit),
so that a small face is not blurred away. Noise is drawn from a seed of the photo's name: reruns are
identical. Stretching (the photo 1.2x as tall, or as wide, its points moved with it) gives faces of other
proportions than the training faces'.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import zlib
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotator.draw import face_size  # noqa: E402
from annotator.formats import pts_text  # noqa: E402
from annotator.images import read_image  # noqa: E402
from training.groundtruth import labelled_images, read_68  # noqa: E402


def grey(image: np.ndarray, points: np.ndarray, name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def dark(image: np.ndarray, points: np.ndarray, name: str) -> np.ndarray:
    """Under-exposed: gamma 2.2 (crushed shadows) and 0.6 of the light."""
    return np.clip(255 * (image / 255.0) ** 2.2 * 0.6, 0, 255).astype(np.uint8)


def blur(share: float) -> Callable[[np.ndarray, np.ndarray, str], np.ndarray]:
    def apply(image: np.ndarray, points: np.ndarray, name: str) -> np.ndarray:
        return cv2.GaussianBlur(image, (0, 0), share * face_size(points))
    return apply


def stretch(fx: float, fy: float) -> Callable[[np.ndarray, np.ndarray, str], tuple[np.ndarray, np.ndarray]]:
    """The photo resized by ``fx`` across and ``fy`` down, and its 0-based points with it."""
    def apply(image: np.ndarray, points: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        size = round(w * fx), round(h * fy)
        moved = (points + 0.5) * [size[0] / w, size[1] / h] - 0.5  # pixel centres scale about the corner
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), moved
    return apply


def noise(image: np.ndarray, points: np.ndarray, name: str) -> np.ndarray:
    """Sensor noise: normal, 20 grey levels per channel."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)


CONDITIONS = {"grey": (grey, 95), "dark": (dark, 95), "jpeg15": (None, 15), "blur1.5": (blur(0.015), 95),
              "blur3": (blur(0.03), 95), "noise": (noise, 95)}
MOVING_POINTS = {"tall": (stretch(1.0, 1.2), 95), "wide": (stretch(1.2, 1.0), 95)}  # these move the points too


def write_conditions(folder: Path, out: Path, conditions: list[str], part: str = "all") -> None:
    """Copies of the annotated photos of ``folder``'s ``part`` (``training.groundtruth.labelled_images``) under
    each of ``conditions``, with their .pts."""
    for image_path, pts in labelled_images(folder, part):
        points = read_68(pts)
        if points is None:
            continue
        image = read_image(image_path)
        for name in conditions:
            dest = out / f"{folder.name}_{name}"
            dest.mkdir(parents=True, exist_ok=True)
            if name in MOVING_POINTS:
                change, quality = MOVING_POINTS[name]
                shown, moved = change(image, points, image_path.name)
                (dest / pts.name).write_text(pts_text(moved))
            else:
                change, quality = CONDITIONS[name]
                shown = image if change is None else change(image, points, image_path.name)
                shutil.copy(pts, dest / pts.name)
            cv2.imwrite(str(dest / f"{image_path.stem}.jpg"), shown, [cv2.IMWRITE_JPEG_QUALITY, quality])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="ground-truth folders (photos and .pts)")
    parser.add_argument("--out", type=Path, required=True)
    every = [*CONDITIONS, *MOVING_POINTS]
    parser.add_argument("--conditions", nargs="+", default=every, choices=every)
    parser.add_argument("--part", default="all", choices=["all", "holdout"],
                        help="every photo, or only the held-out slice (for HELEN and LFPW)")
    args = parser.parse_args()
    for folder in args.folders:
        write_conditions(folder, args.out, args.conditions, args.part)


if __name__ == "__main__":
    main()
