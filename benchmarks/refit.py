"""Refit from a few placed points (the review page's ``T`` key), measured on held-out 300-W faces.

    PYTHONPATH=. python benchmarks/refit.py ../shared/data/300w/afw --angle 70 --passes 1 2

Each photo is turned by ``--angle`` degrees (counter-clockwise, canvas enlarged to keep it whole) with
its ground truth. The network runs on a square box around the turned ground truth, as a detector boxes a
turned face, and lays its upright shape on it: the "before" points. Then the ground truth of a few points
(the outer eye corners and the chin; then also the nose tip) is placed, as a person would drag them,
and the face is refitted (``annotator.refit``). The error is the accuracy metric (mean distance of the 68
points / sqrt(w * h) of the ground truth's box). ``--angle 0`` is the control: upright faces whose points
are already good. The last column leaves out the placed points, which refit keeps exactly.
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from annotator.crop import apply_affine
from annotator.formats import read_pts
from annotator.images import read_image
from annotator.landmarks import NetworkLandmarker, one_thread
from annotator.refit import refit
from annotator.training.metrics import normalised_errors
from annotator.training.groundtruth import labelled_images

PLACED = {"eyes+chin": [36, 45, 8], "eyes+chin+nose": [36, 45, 8, 30]}


def turned(image: np.ndarray, points: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its 0-based points turned by ``angle`` degrees counter-clockwise, nothing cut off."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    size = (int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c)))
    m[:, 2] += (np.array(size) - (w, h)) / 2
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), \
        apply_affine(m, points)


def square_box(points: np.ndarray) -> tuple[int, int, int, int]:
    """A square box around the points' box, as a detector gives (side: the mean of its width and height)."""
    lo, hi = points.min(0), points.max(0)
    (cx, cy), side = (lo + hi) / 2, (hi - lo).mean()
    return round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--angle", type=float, default=70.0)
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=0, help="the first N faces only")
    args = parser.parse_args()
    one_thread()
    net = NetworkLandmarker()
    faces = [pair for folder in args.folders for pair in labelled_images(folder)]
    faces = faces[:args.limit] if args.limit else faces
    truth, before, after = [], [], {(name, p): [] for name in PLACED for p in args.passes}
    seconds = dict.fromkeys(after, 0.0)
    for image_path, pts in faces:
        image, gt = turned(read_image(image_path), read_pts(pts), args.angle)
        points = net.predict(image, [square_box(gt)])[0]
        truth.append(gt)
        before.append(points)
        for name, placed in PLACED.items():
            start = points.copy()
            start[placed] = gt[placed]
            for passes in args.passes:
                t = time.perf_counter()
                after[name, passes].append(refit(net, image, start, placed, passes))
                seconds[name, passes] += time.perf_counter() - t
    truth = np.stack(truth)

    size = np.sqrt(np.prod(truth.max(1) - truth.min(1), axis=1))  # the metric's unit, per face

    def row(label: str, points: list[np.ndarray], placed: list[int] = (), seconds: float | None = None) -> str:
        e = normalised_errors(np.stack(points), truth)
        rest = np.delete(np.linalg.norm(np.stack(points) - truth, axis=2), placed, axis=1).mean(1) / size
        ms = "" if seconds is None else f"{1000 * seconds / len(truth):.1f}"
        return f"| {label} | {e.mean():.4f} | {np.median(e):.4f} | {(e > 0.08).mean():.1%} | {rest.mean():.4f} | {ms} |"

    print(f"{len(truth)} faces turned by {args.angle:g} degrees")
    print("| points | mean error | median | failures (> 0.08) | mean error of the points not placed | "
          "ms a refit (one thread) |\n|---|---|---|---|---|---|")
    print(row("the network's, before", before))
    for (name, passes), points in after.items():
        how = f"{passes} pass{'es' * (passes > 1)}" if passes else "the mean shape laid on them, no network"
        print(row(f"refit from {name} ({len(PLACED[name])} placed): {how}", points, PLACED[name],
                  seconds[name, passes]))


if __name__ == "__main__":
    main()
