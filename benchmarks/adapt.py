"""What ``annotate train adapt`` buys on two domain shifts built from the data here, and what it costs elsewhere.

- ``ytf``: YouTube Faces' markup (its jaw and brows differ from 300-W's, which the shipped network writes):
  adapt on every 10th ytf/train face, score ytf/test (other people).
- ``old``: "old scans": the held-out HELEN and LFPW slices (never trained on) turned grey, faded, sepia, at
  1/5 of their resolution with noise and JPEG quality 20: adapt on HELEN's, score LFPW's.

Each adapted network is also scored on AFW (300-W's markup, held out from the shipped network): what it still
knows. Boxes come from annotate's default detector (cnn), found once per folder and cached under ``--work``;
the adapt commands run as a user runs them. Each row is kept in ``--work/rows``: a rerun goes on from there.

    python benchmarks/adapt.py ../shared/data --work bench-adapt
"""
from __future__ import annotations

import argparse
import json
import pickle
import shlex
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from annotator import checkpoint
from annotator.detectors import detect, face_containing
from annotator.images import read_image
from annotator.landmarks import DEFAULT_WEIGHTS, NetworkLandmarker
from annotator.training.groundtruth import labelled_images, read_68
from annotator.training.metrics import normalised_errors, spearman

# The adapt commands compared with the shipped network: the defaults, the L2-SP weight, and mixing in 300-W
# training faces (a cache of every 5th HELEN and LFPW training photo, prepared here).
RUNS = {"default": [], "--l2sp 0": ["--l2sp", "0"], "--l2sp 1": ["--l2sp", "1"], "--mix": ["--mix", "{mix}"]}


def old_scan(image: np.ndarray, seed: int) -> np.ndarray:
    """A photo as an old, small, faded scan: grey, low contrast, sepia, 1/5 resolution, noise, JPEG q20."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    grey = (grey - grey.mean()) * 0.6 + grey.mean() + 25
    small = cv2.resize(grey, (max(1, int(w * 0.2)), max(1, int(h * 0.2))), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small + rng.normal(0, 6, small.shape), (w, h), interpolation=cv2.INTER_CUBIC)
    sepia = np.clip(np.stack([up * 0.82, up * 0.95, up * 1.05], 2), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", sepia, [cv2.IMWRITE_JPEG_QUALITY, 20])[1], cv2.IMREAD_COLOR)


def build(data: Path, work: Path) -> dict[str, tuple[Path, Path]]:
    """Per domain the folder to adapt on and the folder to score (made once under ``work``)."""
    ytf = work / "ytf_train_every10"
    if not ytf.exists():
        ytf.mkdir(parents=True)
        for image, pts in list(labelled_images(data / "ytf" / "train"))[::10]:
            for path in (image, pts):
                (ytf / path.name).symlink_to(path.resolve())
    old = {}
    for name in ("helen", "lfpw"):
        old[name] = work / f"old_{name}_holdout"
        if not old[name].exists():
            old[name].mkdir(parents=True)
            for image, pts in labelled_images(data / "300w" / f"{name}_trainset", "holdout"):
                scan = old_scan(read_image(image), zlib.crc32(image.name.encode()))
                cv2.imwrite(str(old[name] / f"{image.stem}.jpg"), scan, [cv2.IMWRITE_JPEG_QUALITY, 95])
                (old[name] / pts.name).write_bytes(pts.read_bytes())
    return {"ytf": (ytf, data / "ytf" / "test"), "old": (old["helen"], old["lfpw"])}


def mix_cache(data: Path, work: Path) -> Path:
    """A prepare cache of every 5th HELEN and LFPW training photo (their training part, cnn boxes)."""
    cache = work / "mix_62.npz"
    if not cache.exists():
        folder = work / "mix_300w"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("helen", "lfpw"):
            for image, pts in list(labelled_images(data / "300w" / f"{name}_trainset", "train"))[::5]:
                for path in (image, pts):
                    if not (folder / path.name).exists():
                        (folder / path.name).symlink_to(path.resolve())
        annotate("train", "prepare", folder, "--detector", "cnn", "--out", cache, "-j", "1")
    return cache


def second_head(work: Path) -> Path:
    """The shipped network writing its second head's points (YTF's markup, trained on all of ytf/train)."""
    import torch
    path = work / "shipped_second_head.pt"
    ckpt = checkpoint.load(DEFAULT_WEIGHTS)
    for stage in ckpt["stages"]:
        for key in ("head.3.weight", "head.3.bias"):  # the last layer's outputs: head 0's points, then head 1's
            value = stage["state_dict"][key]
            stage["state_dict"][key] = torch.cat([value[len(value) // 2:], value[:len(value) // 2]])
    checkpoint.save(path, ckpt)
    return path


def annotate(*args) -> str:
    command = [sys.executable, "-m", "annotator", *map(str, args)]
    print("$ annotate " + shlex.join(command[3:]), file=sys.stderr, flush=True)
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def faces_of(folder: Path, work: Path) -> list[tuple[str, tuple, np.ndarray]]:
    """(photo, cnn box, points) of every face of ``folder`` the detector finds (cached in ``work``)."""
    cache = work / f"boxes_{folder.parent.name}_{folder.name}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    faces = []
    for image, pts in labelled_images(folder):
        truth = read_68(pts)
        if truth is not None and (face := face_containing(detect(read_image(image), detector="cnn"), truth)):
            faces.append((str(image), face.box, truth))
    cache.write_bytes(pickle.dumps(faces))
    return faces


def score(weights: Path, faces: list) -> dict[str, float]:
    """Mean error of ``weights`` as annotate runs it, and how well its expected error ranks the faces."""
    net = NetworkLandmarker(weights)
    found = [net.predict_with_error([read_image(p)], [[box]]) for p, box, _ in faces]
    points, expected = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
    errors = normalised_errors(points, np.stack([t for _, _, t in faces]))
    return {"mean": float(errors.mean()), "spearman": spearman(expected, errors)}


def row_of(work: Path, domain: str, run: str, measure: Callable[[], dict]) -> dict:
    """The row of ``run`` on ``domain``: measured once, then read back from ``work/rows`` (a rerun goes on)."""
    path = work / "rows" / f"{domain}_{run.replace(' ', '_').replace(',', '')}.json"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"run": run, "domain": domain, **measure()}))
    print(path.read_text(), flush=True)
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="the shared data folder (300w/, ytf/)")
    parser.add_argument("--work", type=Path, default=Path("bench-adapt"), help="folders, caches, weights, rows")
    parser.add_argument("--domains", nargs="+", choices=["ytf", "old"], default=["ytf", "old"])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    domains = build(args.data, args.work)
    mix = mix_cache(args.data, args.work) if "--mix" in args.runs else None
    afw = faces_of(args.data / "300w" / "afw", args.work)
    rows, tested = [], {}
    for domain in args.domains:
        train, test = domains[domain]
        test_faces = faces_of(test, args.work)
        tested[domain] = len(test_faces)
        rows.append(row_of(args.work, domain, "shipped", lambda: {"test": score(DEFAULT_WEIGHTS, test_faces),
                                                                    "afw": score(DEFAULT_WEIGHTS, afw)}))
        if domain == "ytf":
            head = second_head(args.work)
            rows.append(row_of(args.work, domain, "shipped, second head",
                               lambda: {"test": score(head, test_faces), "afw": score(head, afw)}))
        for run in args.runs:
            weights = args.work / f"{domain}_{run.strip('-').replace(' ', '')}.pt"
            extra = [str(mix) if a == "{mix}" else a for a in RUNS[run]]

            def adapted() -> dict:
                result = json.loads(annotate("train", "adapt", train, "--out", weights, *extra).splitlines()[-1])
                return {**result, "test": score(weights, test_faces), "afw": score(weights, afw)}
            rows.append(row_of(args.work, domain, run, adapted))
    print(table(rows, tested, len(afw)))


def table(rows: list[dict], tested: dict[str, int], afw_faces: int) -> str:
    """The rows as markdown: faces, time, errors on the domain's test faces and on AFW, ranking."""
    lines = ["| domain | network | faces adapted on (+ held out) | time | domain test error | AFW error "
             "| Spearman of expected_error on the domain test |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        faces = f"{r['faces']} (+{r['held_out']})" if "faces" in r else "-"
        took = f"{r['seconds']:.0f} s" if "seconds" in r else "-"
        lines.append(f"| {r['domain']} ({tested[r['domain']]} test faces) | {r['run']} | {faces} | {took} "
                     f"| {r['test']['mean']:.2%} | {r['afw']['mean']:.2%} | {r['test']['spearman']:.3f} |")
    return "\n".join(lines) + f"\n\nAFW: the {afw_faces} faces the cnn detector finds.\n"


if __name__ == "__main__":
    main()
