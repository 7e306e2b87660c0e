"""Ground-truth folders: images with a ``.pts`` of the same stem (300-W layout)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from annotator.discover import IMAGE_EXTENSIONS
from annotator.formats import read_pts


def labelled_images(folder: str | Path) -> Iterator[tuple[Path, Path]]:
    """(image, pts) pairs under ``folder``, sorted, walked recursively."""
    for pts in sorted(Path(folder).rglob("*.pts")):
        for image in sorted(pts.parent.glob(pts.stem + ".*")):
            if image.suffix.lower() in IMAGE_EXTENSIONS:
                yield image, pts
                break


def read_68(pts: Path) -> np.ndarray | None:
    """0-based (68, 2) points, or None when the file holds another markup (e.g. 39 points)."""
    points = read_pts(pts)
    return points if len(points) == 68 else None
