"""dlib's CNN face detector (MMOD), run by torch (:mod:`.mmod`) on the CPU or a GPU."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..crop import Box, unscale_box

# dlib's mmod_human_face_detector.dat, as the face_recognition_models package ships it (a test checks it).
MODEL_FILE = Path(__file__).parent / "mmod_human_face_detector.dat"


@lru_cache(maxsize=None)
def detector(device: str = "cpu"):
    """The process-wide detector on ``device``, one thread (torch is imported here, where faces are found)."""
    from ..landmarks import one_thread
    from .mmod import MMODDetector
    one_thread()
    return MMODDetector(MODEL_FILE, device)


def load(device: str = "cpu") -> None:
    """Load the detector now."""
    detector(device)


def find(rgb: np.ndarray, upsample: int, min_score: float, device: str = "cpu", threads: int = 1
         ) -> list[tuple[Box, float]]:
    """Boxes and scores (above ``min_score``) in an RGB image, upsampled ``upsample`` times by 2 first;
    torch on ``threads`` CPU threads for this call (the process keeps one otherwise)."""
    import torch
    factor = 2 ** upsample
    if factor > 1:
        rgb = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    run = detector(device)
    torch.set_num_threads(threads)
    try:
        found = run(rgb, min_score)
    finally:
        torch.set_num_threads(1)
    return [(unscale_box(box, factor), score) for box, score in found]
