"""Faces found, false detections and seconds per photo of each detector, on 300-W style folders.

    nice -n 10 python benchmarks/detectors.py ../shared/data/300w/afw --detector hog cnn -j 1
    python benchmarks/detectors.py ../shared/data/300w/helen_trainset --every 3 --detector cnn

Each photo (300-W stores one copy per annotated face, ``<photo>_<k>``) is
detected once per detector, as ``annotate`` does (``--min-face``: its default
scan unless given), down to the lowest threshold. An annotated face is found
when a box contains the centre of its points and has a plausible size (box
side 0.5 to 3 times sqrt(width * height) of the points' box); every detection
that finds no annotated face is counted as false (some are real faces that the
data set did not annotate: ``--list-false`` prints them to look at).
"""
from __future__ import annotations

import argparse
import hashlib
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.detectors import DETECTORS, Face, detect
from annotator.formats import read_pts
from annotator.images import read_image
from annotator.training.groundtruth import labelled_images, photo_of

THRESHOLDS = (-0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
PLAUSIBLE = (0.5, 3.0)  # box side / face size


def photos(folders: list[str], every: int) -> list[tuple[Path, list[Path]]]:
    """(one image file, the .pts of every annotated face) per photo; every ``every``-th photo."""
    groups: dict[tuple[Path, str, str], list[tuple[Path, Path]]] = defaultdict(list)
    for folder in folders:
        for image, pts in labelled_images(folder):  # copies are byte for byte the same (AFW); HELEN's differ
            groups[image.parent, photo_of(image), hashlib.md5(image.read_bytes()).hexdigest()].append((image, pts))
    chosen = sorted(groups.items())[::every]
    return [(faces[0][0], [pts for _, pts in faces]) for _, faces in chosen]


def finds(face: Face, points: np.ndarray) -> bool:
    """Whether ``face``'s box holds the centre of ``points`` at a plausible size."""
    (cx, cy), span = (points.min(0) + points.max(0)) / 2, points.max(0) - points.min(0)
    left, top, right, bottom = face.box
    side = np.sqrt((right - left + 1) * (bottom - top + 1)) / np.sqrt(span[0] * span[1])
    return left <= cx <= right and top <= cy <= bottom and PLAUSIBLE[0] <= side <= PLAUSIBLE[1]


def measure(image: Path, truths: list[Path], detector: str, lowest: float, min_face: float | None
            ) -> tuple[list[float], list[Face], float]:
    """Per annotated face, the best score of a detection finding it (-inf: none); the detections
    finding no annotated face; the seconds detection took."""
    shapes = [read_pts(p) for p in truths]
    pixels = read_image(image)
    start = time.perf_counter()
    faces = detect(pixels, min_face=min_face, min_score=lowest, detector=detector)
    seconds = time.perf_counter() - start
    hits = [[finds(f, p) for p in shapes] for f in faces]
    best = [max((f.score for f, h in zip(faces, hits) if h[i]), default=-np.inf) for i in range(len(shapes))]
    false = [f for f, h in zip(faces, hits) if not any(h)]
    return best, false, seconds


def table(results: list[tuple[list[float], list[Face], float]], thresholds: tuple[float, ...]) -> str:
    """A Markdown table: true faces and false detections kept at each threshold, and the time per photo."""
    best = np.array([s for b, _, _ in results for s in b])
    false = np.array([f.score for _, fs, _ in results for f in fs])
    seconds = np.mean([s for _, _, s in results])
    lines = [f"{len(results)} photos, {len(best)} annotated faces, {seconds:.3f} s a photo", "",
             "| --min-score | faces found | faces missed | false detections |", "|---|---|---|---|"]
    for t in thresholds:
        kept = int((best >= t).sum())
        lines.append(f"| {t:g} | {kept} ({kept / len(best):.1%}) | {len(best) - kept} | {int((false >= t).sum())} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--detector", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    parser.add_argument("--min-face", type=float, default=None, help="as annotate's (default: its default)")
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--every", type=int, default=1, help="use every N-th photo (a subset)")
    parser.add_argument("--list-false", type=float, metavar="S", help="list false detections scoring at least S")
    parser.add_argument("--list-missed", action="store_true", help="list the annotated faces not found (score >= 0)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    args = parser.parse_args()
    lowest = min(args.thresholds)
    chosen = photos(args.folders, args.every)
    for detector in args.detector:
        results = Parallel(n_jobs=args.jobs)(delayed(measure)(image, truths, detector, lowest, args.min_face)
                                             for image, truths in chosen)
        print(f"\n## {detector}, {', '.join(args.folders)}\n\n{table(results, tuple(args.thresholds))}")
        if args.list_missed:
            for (image, truths), (best, _, _) in zip(chosen, results):
                for pts, score in zip(truths, best):
                    if score < 0:
                        span = np.ptp(read_pts(pts), axis=0)
                        print(f"missed\t{pts}\tface {np.sqrt(span[0] * span[1]):.0f} px\tbest {score:.2f}")
        if args.list_false is not None:
            for (image, _), (_, false, _) in zip(chosen, results):
                for face in false:
                    if face.score >= args.list_false:
                        print(f"false\t{image}\t{face.score:.4f}\t{','.join(map(str, face.box))}")


if __name__ == "__main__":
    main()
