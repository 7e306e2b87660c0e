"""Augmentation inside cached context crops that respects the 68-point markup."""
from __future__ import annotations

import cv2
import numpy as np

from annotator.crop import from_crop_pixels, to_crop_pixels
from annotator.network import FLIP_PERMUTATION

# Jitter (shift and scale as a share of the crop, rotation in degrees) per crop frame: the box frame
# imitates detector noise; the shape frame imitates the first stage's remaining error; the roll
# estimator sees faces turned by any angle (a rotation of 180 or more: uniform over the whole circle).
JITTER = {"box": (0.08, 0.08, 12.0), "shape": (0.03, 0.04, 5.0), "roll": (0.1, 0.12, 180.0)}


def context_points(targets: np.ndarray, size: int, context: int) -> np.ndarray:
    """Box-relative targets -> pixel coordinates in the cached context crop."""
    return to_crop_pixels(targets, size) + size * (context - 1) / 2


LOWRES = (1.5, 4.0)  # how much a low-resolution sample is shrunk before it is brought back up


def sample(crop: np.ndarray, points: np.ndarray, size: int, base: np.ndarray,
           rng: np.random.Generator | None, jitter: tuple[float, float, float] = JITTER["box"],
           lowres: float = 0.0, stretch: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One network input (size x size) and its crop-relative targets from a context crop.

    ``base`` is the context crop -> network crop matrix (``annotator.crop.frame_affine``). Without
    ``rng`` the crop is exactly ``base``: what inference sees. With it: random shift, log-normal scale and normal
    rotation (uniform for a rotation of 180 or more) about the crop centre, and a horizontal flip with the
    left/right point permutation; with ``stretch``, the face's axes scaled by exp(-t) across and exp(t) down
    (t normal with that sigma: faces of other proportions); with probability ``lowres``, the sample shrunk by
    1.5-4x and brought back up (as a small or blurred face looks; the points do not move).
    """
    m = base
    if rng is not None:
        shift, scale, rotate = jitter
        s = np.exp(rng.normal(0, scale))
        a = rng.uniform(-np.pi, np.pi) if rotate >= 180 else np.deg2rad(np.clip(rng.normal(0, rotate), -3 * rotate,
                                                                                   3 * rotate))
        c = (size - 1) / 2 + rng.uniform(-shift, shift, 2) * size
        r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        if stretch:  # no draw without it: earlier runs unchanged
            t = np.clip(rng.normal(0, stretch), -3 * stretch, 3 * stretch)
            r = r @ np.diag(np.exp([-t, t]))
        m = np.hstack([r, ((size - 1) / 2 - r @ c)[:, None]]) @ _square(base)
        if rng.random() < 0.5:
            m = np.array([[-1.0, 0, size - 1], [0, 1, 0]]) @ _square(m)
            points = points[FLIP_PERMUTATION]
    image = cv2.warpAffine(crop, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng is not None and lowres and rng.random() < lowres:  # no draw without it: earlier runs unchanged
        small = max(2, round(size / rng.uniform(*LOWRES)))
        image = cv2.resize(cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                           interpolation=cv2.INTER_LINEAR)
    out = points @ m[:, :2].T + m[:, 2]
    return image, from_crop_pixels(out, size)


def _square(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0, 0, 1]])


def photometric(batch: np.ndarray, rng: np.random.Generator, occlude: float = 0.0) -> np.ndarray:
    """Brightness, contrast, colour and grey-scale jitter on a float (N, H, W, 3) batch in 0..255.

    With probability ``occlude`` a sample also gets a grey rectangle (10-40% of
    each side) somewhere on it, as hands, hair and glasses do.
    """
    n = len(batch)
    contrast = rng.uniform(0.6, 1.4, (n, 1, 1, 1))
    bright = rng.uniform(-40, 40, (n, 1, 1, 1))
    colour = rng.uniform(0.85, 1.15, (n, 1, 1, 3))
    mean = batch.mean((1, 2, 3), keepdims=True)
    out = ((batch - mean) * contrast + mean + bright) * colour
    grey = rng.random(n) < 0.15
    out[grey] = out[grey].mean(3, keepdims=True)
    side = batch.shape[1]
    for i in np.flatnonzero(rng.random(n) < occlude) if occlude else []:
        h, w = (rng.uniform(0.1, 0.4, 2) * side).astype(int)
        y, x = rng.integers(0, side - h), rng.integers(0, side - w)
        out[i, y:y + h, x:x + w] = rng.uniform(0, 255)
    return np.clip(out, 0, 255)
