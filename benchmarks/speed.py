"""Speed of annotate against dlib, as ratios measured in one run (the machine is shared and noisy).

    python benchmarks/speed.py ../shared/data/300w/afw
    python benchmarks/speed.py --large ../shared/data/photos_large --limit 6

1. End to end: ``annotate FOLDER`` with our network at -j 1 and -j 2, and with
   ``--landmarker dlib`` at -j 1 (images/s, each the best of --repeat runs),
   and the default against ``--upsample 1`` (the default before --min-face):
   speed and whether they find the same faces.
2. The landmark stage alone on the detector boxes of FOLDER: our cascade
   batched over all faces (torch on all cores), per image as annotate runs it
   (one thread), and dlib's shape predictor (faces/s).
3. ``--large FOLDER`` (camera photos with a ``.pts`` beside each): at -j 1, the
   default, ``--upsample 1`` on the full photo, and ``--landmarker dlib
   --upsample 0`` (dlib's own defaults): images/s, faces found, ground-truth
   faces found and the landmark error on them.
4. ``--detectors``: on FOLDER, ``--detector cnn`` at -j 1 and -j 2 against the
   HOG detector at -j 1 (images/s, faces written), instead of parts 1 and 2.
5. ``--orientations``: on FOLDER at -j 1, the default (``--orientation any``) against
   ``--orientation upright`` and, with ``--baseline CHECKOUT...``, against those checkouts' annotate
   (earlier versions, their own defaults), instead of parts 1 and 2.
6. ``--weights FILE...``: the landmark stage per image on one thread (faces/s, as annotate runs it,
   expected error included) of the shipped weights and of each FILE, taken in turns, on the
   detector boxes of FOLDER, instead of parts 1 and 2.

Parts 1 to 3 use ``--detector hog`` (the figures in the README were measured
with it; they compare landmarkers and scans, not detectors).

``--limit N`` takes the first N images of each folder; ``--distinct`` one
image per photo (300-W stores one copy per annotated face, ``<photo>_<k>``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from annotator.detectors import Face, detect, face_containing
from annotator.discover import walk
from annotator.formats import read_pts
from annotator.images import read_image
from annotator.landmarks import DlibLandmarker, NetworkLandmarker
from annotator.training.groundtruth import photo_of
from annotator.training.metrics import normalised_errors

HOG = ["--detector", "hog"]
LARGE_RUNS = {"default": [], "old default (--upsample 1)": ["--upsample", "1"],
              "dlib (--landmarker dlib --upsample 0)": ["--landmarker", "dlib", "--upsample", "0"]}


def subset(folder: str, limit: int | None, into: Path, distinct: bool = False) -> str:
    """``folder`` itself, or ``into`` holding links to its first ``limit`` images (one per photo with
    ``distinct``) and their .pts."""
    if not limit and not distinct:
        return folder
    items = list(walk([folder]))
    if distinct:
        items = list({photo_of(item.path): item for item in reversed(items)}.values())[::-1]
    for item in items[:limit]:
        for path in (item.path, item.path.with_suffix(".pts")):
            if path.exists():
                (into / path.name).symlink_to(path.resolve())
    return str(into)


def end_to_end(folder: str, args: list[str], repeat: int, package: str | None = None
               ) -> tuple[float, dict[str, list[dict]]]:
    """Best images/s of the real command over ``repeat`` runs, and the faces it wrote per image
    (``package``: a checkout whose annotate runs instead of this one)."""
    n = sum(1 for _ in walk([folder]))
    best, faces = 0.0, {}
    env = {**os.environ, "PYTHONPATH": package} if package else None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "annotator", str(Path(folder).absolute()), "--out", out, "--quiet",
                            "--format", "json", *args], check=True, capture_output=True, env=env,
                           cwd=package)
            best = max(best, n / (time.perf_counter() - t))
            faces = {p.stem: json.loads(p.read_text())["faces"] for p in Path(out).rglob("*.json")}
    return best, faces


def boxes(faces: dict[str, list[dict]]) -> dict[str, list]:
    """The boxes found in each image, to compare two runs."""
    return {stem: [f["box"] for f in fs] for stem, fs in faces.items()}


def detected(folder: str) -> tuple[list[np.ndarray], list[list], int]:
    """The images of ``folder``, the detector's boxes in each, and how many boxes in all."""
    images = [read_image(item.path) for item in walk([folder])]
    boxes = [[f.box for f in detect(im)] for im in images]
    return images, boxes, sum(map(len, boxes))


def rate(fn, n: int) -> float:
    """``n`` faces over the seconds one call of ``fn`` takes."""
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def landmark_stage(folder: str, repeat: int) -> dict[str, float]:
    """faces/s of the landmark stage alone on the boxes the detector finds in ``folder``."""
    images, boxes, n = detected(folder)
    net, dlib = NetworkLandmarker(), DlibLandmarker()

    def timed(fn) -> float:
        fn()  # warm-up: model files loaded, kernels chosen
        return max(rate(fn, n) for _ in range(repeat))

    torch.set_num_threads(os.cpu_count() or 1)
    out = {"faces": n, "network batched, all cores": timed(lambda: net.predict_many(images, boxes))}
    torch.set_num_threads(1)
    out["network per image, 1 thread"] = timed(lambda: [net.predict(im, b) for im, b in zip(images, boxes)])
    out["dlib per image, 1 thread"] = timed(lambda: [dlib.predict(im, b) for im, b in zip(images, boxes)])
    return out


def weights_per_image(folder: str, repeat: int, others: list[str]) -> None:
    """Part 6: faces/s of the landmark stage per image, one thread, for the shipped weights and ``others``
    (each run in turn, ``repeat`` rounds, the best round of each)."""
    torch.set_num_threads(1)
    images, boxes, n = detected(folder)
    nets = {"shipped": NetworkLandmarker(), **{w: NetworkLandmarker(w) for w in others}}
    best = dict.fromkeys(nets, 0.0)
    for net in nets.values():
        net.predict_with_error(images[:1], boxes[:1])  # warm-up
    for _ in range(repeat):
        for name, net in nets.items():
            per_image = lambda: [net.predict_with_error([im], [b]) for im, b in zip(images, boxes)]  # noqa: E731
            best[name] = max(best[name], rate(per_image, n))
    for name, faces_per_s in best.items():
        print(f"  {name}: {faces_per_s:.1f} faces/s per image, 1 thread ({n} faces)")


def small_photos(folder: str, repeat: int) -> None:
    """Part 1 and 2 on a folder of ordinary (800-px) photos."""
    net1, faces = end_to_end(folder, ["-j", "1", *HOG], repeat)
    old1, old_faces = end_to_end(folder, ["-j", "1", "--upsample", "1", *HOG], repeat)
    dlib1, _ = end_to_end(folder, ["-j", "1", "--landmarker", "dlib", *HOG], repeat)
    net2, _ = end_to_end(folder, ["-j", "2", *HOG], repeat)
    print(f"end to end, images/s: network -j1 {net1:.2f}, dlib -j1 {dlib1:.2f}, network -j2 {net2:.2f}")
    print(f"  network/dlib at -j1: {net1 / dlib1:.2f}x   network -j2/-j1: {net2 / net1:.2f}x")
    print(f"  default / --upsample 1 at -j1: {net1 / old1:.2f}x ({old1:.2f} images/s), "
          f"same faces: {boxes(faces) == boxes(old_faces)} ({sum(map(len, faces.values()))} faces)")
    stage = landmark_stage(folder, repeat)
    print(f"landmark stage alone on {stage.pop('faces')} faces, faces/s:")
    for k, v in stage.items():
        print(f"  {k}: {v:.0f}")


def detectors(folder: str, repeat: int) -> None:
    """Part 4: the CNN detector end to end against the HOG detector."""
    hog1, hog_faces = end_to_end(folder, ["-j", "1", *HOG], repeat)
    cnn1, cnn_faces = end_to_end(folder, ["-j", "1"], repeat)  # the default detector
    cnn2, _ = end_to_end(folder, ["-j", "2"], repeat)
    n = len(hog_faces)
    print(f"{n} images, end to end, images/s: hog -j1 {hog1:.2f} ({sum(map(len, hog_faces.values()))} faces), "
          f"cnn -j1 {cnn1:.2f} ({sum(map(len, cnn_faces.values()))} faces), cnn -j2 {cnn2:.2f}")
    print(f"  cnn/hog at -j1: {cnn1 / hog1:.2f}x   cnn -j2/-j1: {cnn2 / cnn1:.2f}x")


def orientations(folder: str, repeat: int, baselines: list[str]) -> None:
    """Part 5: the default (--orientation any) against --orientation upright (and earlier versions)."""
    runs = {"any (default)": (["-j", "1"], None), "upright": (["-j", "1", "--orientation", "upright"], None)}
    for baseline in baselines:
        runs[f"baseline {baseline}"] = (["-j", "1"], str(Path(baseline).resolve()))
    rates = {}
    for name, (args, package) in runs.items():
        rates[name], faces = end_to_end(folder, args, repeat, package)
        print(f"  {name}: {rates[name]:.3f} images/s, {sum(map(len, faces.values()))} faces", flush=True)
    for name in list(runs)[1:]:
        print(f"  any / {name}: {rates['any (default)'] / rates[name]:.2f}x"
              + (f"; upright / {name}: {rates['upright'] / rates[name]:.3f}x" if name.startswith("baseline") else ""))


def truth_found(faces: dict[str, list[dict]], truth: dict[str, np.ndarray]) -> tuple[int, np.ndarray]:
    """Ground-truth faces found (a box contains the points' centre) and our error on each found face."""
    errors = []
    for stem, points in truth.items():
        found = [Face(tuple(f["box"]), f["score"]) for f in faces.get(stem, [])]
        face = face_containing(found, points)
        if face is not None:
            landmarks = faces[stem][found.index(face)]["landmarks"]
            errors.append(normalised_errors(np.array([landmarks]), points[None])[0])
    return len(errors), np.array(errors)


def large_photos(folder: str, repeat: int) -> None:
    """Part 3: camera photos at -j 1, each setting of LARGE_RUNS."""
    truth = {item.path.stem: read_pts(item.path.with_suffix(".pts")) for item in walk([folder])}
    print(f"large photos: {len(truth)} images, -j 1")
    rates = {}
    for name, args in LARGE_RUNS.items():
        rates[name], faces = end_to_end(folder, ["-j", "1", *args, *HOG], repeat)
        found, errors = truth_found(faces, truth)
        print(f"  {name}: {rates[name]:.3f} images/s, {sum(map(len, faces.values()))} faces, "
              f"ground truth found {found}/{len(truth)}, landmark error on them: "
              f"mean {errors.mean():.4f}, max {errors.max():.4f}")
    for name in list(LARGE_RUNS)[1:]:
        print(f"  default / {name}: {rates['default'] / rates[name]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="ordinary photos (parts 1 and 2)")
    parser.add_argument("--large", help="camera photos with .pts (part 3)")
    parser.add_argument("--limit", type=int, default=None, help="first N images of each folder")
    parser.add_argument("--distinct", action="store_true", help="one image per photo (300-W's copies)")
    parser.add_argument("--detectors", action="store_true", help="part 4 (CNN against HOG) instead of 1 and 2")
    parser.add_argument("--orientations", action="store_true", help="part 5 (orientations) instead of 1 and 2")
    parser.add_argument("--baseline", nargs="*", default=[],
                        help="with --orientations: checkouts of earlier versions to compare (their own defaults)")
    parser.add_argument("--weights", nargs="+", default=[],
                        help="part 6: weights files whose landmark stage to time beside the shipped one")
    parser.add_argument("--repeat", type=int, default=2)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as small, tempfile.TemporaryDirectory() as large:
        if a.folder:
            folder = subset(a.folder, a.limit, Path(small), a.distinct)
            if a.orientations:
                orientations(folder, a.repeat, a.baseline)
            elif a.weights:
                weights_per_image(folder, a.repeat, a.weights)
            else:
                (detectors if a.detectors else small_photos)(folder, a.repeat)
        if a.large:
            large_photos(subset(a.large, a.limit, Path(large)), a.repeat)


if __name__ == "__main__":
    main()
