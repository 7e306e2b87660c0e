"""Speed of annotate against dlib, as ratios measured in one run (the machine is shared and noisy).

    python benchmarks/speed.py ../shared/data/300w/afw

1. End to end: ``annotate FOLDER`` with our network at -j 1 and -j 2, and with
   ``--landmarker dlib`` at -j 1 (images/s, each the best of --repeat runs).
2. The landmark stage alone on the detector boxes of FOLDER: our cascade
   batched over all faces (torch on all cores), per image as annotate runs it
   (one thread), and dlib's shape predictor (faces/s).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

from annotator.detect import detect
from annotator.discover import walk
from annotator.images import read_image
from annotator.landmarks import DlibLandmarker, NetworkLandmarker


def end_to_end(folder: str, args: list[str], repeat: int) -> float:
    """Best images/s of the real command over ``repeat`` runs."""
    n = sum(1 for _ in walk([folder]))
    best = 0.0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "annotator", folder, "--out", out, "--quiet", *args],
                           check=True, capture_output=True)
            best = max(best, n / (time.perf_counter() - t))
    return best


def landmark_stage(folder: str, repeat: int) -> dict[str, float]:
    """faces/s of the landmark stage alone on the boxes the detector finds in ``folder``."""
    images = [read_image(item.path) for item in walk([folder])]
    boxes = [[f.box for f in detect(im)] for im in images]
    n = sum(map(len, boxes))
    net, dlib = NetworkLandmarker(), DlibLandmarker()

    def timed(fn) -> float:
        fn()  # warm-up: model files loaded, kernels chosen
        best = 0.0
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = max(best, n / (time.perf_counter() - t))
        return best

    torch.set_num_threads(os.cpu_count() or 1)
    out = {"faces": n, "network batched, all cores": timed(lambda: net.predict_many(images, boxes))}
    torch.set_num_threads(1)
    out["network per image, 1 thread"] = timed(lambda: [net.predict(im, b) for im, b in zip(images, boxes)])
    out["dlib per image, 1 thread"] = timed(lambda: [dlib.predict(im, b) for im, b in zip(images, boxes)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--repeat", type=int, default=2)
    a = parser.parse_args()
    net1 = end_to_end(a.folder, ["-j", "1"], a.repeat)
    dlib1 = end_to_end(a.folder, ["-j", "1", "--landmarker", "dlib"], a.repeat)
    net2 = end_to_end(a.folder, ["-j", "2"], a.repeat)
    print(f"end to end, images/s: network -j1 {net1:.2f}, dlib -j1 {dlib1:.2f}, network -j2 {net2:.2f}")
    print(f"  network/dlib at -j1: {net1 / dlib1:.2f}x   network -j2/-j1: {net2 / net1:.2f}x")
    stage = landmark_stage(a.folder, a.repeat)
    print(f"landmark stage alone on {stage.pop('faces')} faces, faces/s:")
    for k, v in stage.items():
        print(f"  {k}: {v:.0f}")


if __name__ == "__main__":
    main()
