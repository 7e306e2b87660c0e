"""How many true faces and false detections each ``--min-score`` keeps, on 300-W style folders.

    nice -n 10 python benchmarks/min_score.py ../shared/data/300w/afw \\
        ../shared/data/300w/helen_trainset ../shared/data/300w/lfpw_trainset -j 1

Each photo (300-W stores one copy per annotated face, ``<photo>_<k>``) is
detected once, as ``annotate`` does by default, down to the
lowest threshold. A detection is a true face when its box contains the centre
of an annotated face's points; every other detection is counted as false
(some are real faces that the data set did not annotate).
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.detect import detect
from annotator.formats import read_pts
from annotator.images import read_image
from annotator.training.groundtruth import labelled_images, photo_of

THRESHOLDS = (-0.5, -0.25, 0.0, 0.1, 0.2, 0.3, 0.5)


def photos(folders: list[str], every: int) -> list[tuple[Path, list[Path]]]:
    """(one image file, the .pts of every annotated face) per photo; every ``every``-th photo."""
    groups: dict[tuple[Path, str], list[tuple[Path, Path]]] = defaultdict(list)
    for folder in folders:
        for image, pts in labelled_images(folder):
            groups[image.parent, photo_of(image)].append((image, pts))
    chosen = sorted(groups.items())[::every]
    return [(faces[0][0], [pts for _, pts in faces]) for _, faces in chosen]


def measure(image: Path, truths: list[Path], lowest: float) -> tuple[list[float], list[float]]:
    """Per annotated face, the best score of a detection containing its centre (-inf: none);
    and the scores of detections that contain no annotated face's centre."""
    centres = [(p.min(0) + p.max(0)) / 2 for p in map(read_pts, truths)]
    faces = detect(read_image(image), min_score=lowest)
    inside = [[f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3] for x, y in centres] for f in faces]
    best = [max((f.score for f, hits in zip(faces, inside) if hits[i]), default=-np.inf)
            for i in range(len(centres))]
    false = [f.score for f, hits in zip(faces, inside) if not any(hits)]
    return best, false


def table(results: list[tuple[list[float], list[float]]], thresholds: tuple[float, ...]) -> str:
    """A Markdown table: true faces and false detections kept at each threshold."""
    best = np.array([s for b, _ in results for s in b])
    false = np.array([s for _, f in results for s in f])
    lines = [f"{len(results)} photos, {len(best)} annotated faces", "",
             "| --min-score | true faces kept | faces missed | false detections kept |", "|---|---|---|---|"]
    for t in thresholds:
        kept = int((best >= t).sum())
        lines.append(f"| {t:g} | {kept} ({kept / len(best):.1%}) | {len(best) - kept} | {int((false >= t).sum())} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--every", type=int, default=1, help="use every N-th photo (a subset)")
    parser.add_argument("--list-false", type=float, metavar="S", help="list false detections scoring below S")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    args = parser.parse_args()
    lowest = min(args.thresholds)
    chosen = photos(args.folders, args.every)
    results = Parallel(n_jobs=args.jobs)(delayed(measure)(image, truths, lowest) for image, truths in chosen)
    print(table(results, tuple(args.thresholds)))
    if args.list_false is not None:
        print("\nfalse detections scoring below", args.list_false)
        for (image, _), (_, false) in zip(chosen, results):
            for score in false:
                if score < args.list_false:
                    print(f"{image}\t{score:.4f}")


if __name__ == "__main__":
    main()
