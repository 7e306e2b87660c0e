"""The accuracy metric of DESIGN.md: box-normalised mean point error, CED and AUC@0.08."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

THRESHOLD = 0.08


def normalised_point_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, 68) point distances / sqrt(w * h) of the ground-truth points' bounding box."""
    span = truth.max(1) - truth.min(1)
    return np.linalg.norm(pred - truth, axis=2) / np.sqrt(span[:, 0] * span[:, 1])[:, None]


def normalised_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face mean point distance / sqrt(w * h) of the ground-truth points' bounding box."""
    return normalised_point_errors(pred, truth).mean(1)


def point_rank_agreement(expected: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """How well (N, 68) per-point ``expected`` errors rank the ``true`` ones: Spearman within each face
    (points ranked), averaged over faces, and for each point across faces (faces ranked), averaged over
    points."""
    return {"within_faces": float(np.mean([spearman(e, t) for e, t in zip(expected, true)])),
            "across_faces": float(np.mean([spearman(e, t) for e, t in zip(expected.T, true.T)]))}


def ced(errors: np.ndarray, threshold: float = THRESHOLD, steps: int = 801) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: thresholds 0..``threshold`` and the share of faces at or below."""
    t = np.linspace(0, threshold, steps)
    return t, (np.asarray(errors)[None, :] <= t[:, None]).mean(1)


def summarise(errors: np.ndarray, threshold: float = THRESHOLD) -> dict[str, float]:
    """AUC@threshold (area under the CED / threshold), mean, median, failure rate (> threshold)."""
    t, share = ced(errors, threshold)
    auc = float(np.sum((share[1:] + share[:-1]) / 2 * np.diff(t)) / threshold)
    return {"faces": int(len(errors)), "auc": auc, "mean": float(np.mean(errors)),
            "median": float(np.median(errors)), "failure_rate": float(np.mean(errors > threshold))}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties broken by order; errors are continuous)."""
    ra, rb = (np.argsort(np.argsort(x)).astype(float) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def worst_caught(expected: np.ndarray, true: np.ndarray, share: float = 0.1) -> float:
    """Share of the truly worst ``share`` of faces that are among the ``share`` with the highest ``expected``."""
    k = max(1, round(share * len(true)))
    worst = set(np.argsort(-true)[:k])
    flagged = set(np.argsort(-expected)[:k])
    return len(worst & flagged) / k


def bootstrap_interval(stat: Callable[[np.ndarray, np.ndarray], float], expected: np.ndarray, true: np.ndarray,
                       rounds: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """The ``level`` interval of ``stat(expected, true)`` over the faces resampled with replacement (fixed
    ``seed``): how far the figure may move on as many other faces like these."""
    rng = np.random.default_rng(seed)
    values = [stat(expected[i], true[i]) for i in rng.integers(0, len(true), (rounds, len(true)))]
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
