"""What dlib XML's integer parts cost: the run's points against the parts dlib reads back from the export.

    python benchmarks/export_rounding.py RUN_DIR

Exports the run in RUN_DIR (``annotate export RUN_DIR --to dlib-xml``) to a
temporary file, loads it with dlib's own reader, and prints the mean distance
between each point and its part (px), and per face as a share of the face's size
(sqrt(w * h) of its points' box, the accuracy metric's unit).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import dlib
import numpy as np

from annotator.draw import face_size
from annotator.export import Selection, export


def main(run: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        parts, _ = export(run, "dlib-xml", Path(tmp) / "faces.xml", Selection())
        [(path, faces)] = parts.items()
        boxes = [b for image in dlib.image_dataset_metadata.load_image_dataset_metadata(str(path)).images
                 for b in image.boxes]
    px, share = [], []
    for face, box in zip(faces, boxes):
        read = np.array([[box.parts[f"{i:02d}"].x, box.parts[f"{i:02d}"].y] for i in range(68)], float)
        distance = np.linalg.norm(read - face.points, axis=1).mean()
        px.append(distance)
        share.append(distance / face_size(face.points))
    print(f"{len(px)} faces: mean rounding error {np.mean(px):.3f} px (max per face {np.max(px):.3f}); "
          f"{100 * np.mean(share):.3f}% of the face size on average (max {100 * np.max(share):.3f}%); "
          f"median face size {np.median([face_size(f.points) for f in faces]):.0f} px")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
