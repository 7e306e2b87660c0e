"""dlib's HOG frontal face detector (``dlib.get_frontal_face_detector()``), built once per process."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import dlib
import numpy as np

from ..crop import Box

# dlib.get_frontal_face_detector()'s model, saved as is: it loads in a millisecond instead of a second
# (a test checks that it is byte for byte what this dlib builds).
MODEL_FILE = Path(__file__).parent / "frontal_face_detector.svm"


@lru_cache(maxsize=None)
def detector() -> dlib.fhog_object_detector:
    """The process-wide frontal face detector."""
    return dlib.fhog_object_detector(str(MODEL_FILE))


def load(device: str = "cpu") -> None:
    """Load the detector now (it runs on the CPU whatever ``device`` says)."""
    detector()


def find(rgb: np.ndarray, upsample: int, min_score: float, device: str = "cpu", threads: int = 1
         ) -> list[tuple[Box, float]]:
    """Boxes and scores (at least ``min_score``) in an RGB image scanned with dlib's ``upsample`` (one thread)."""
    rects, scores, _ = detector().run(rgb, upsample, min_score)
    return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores) if s >= min_score]
