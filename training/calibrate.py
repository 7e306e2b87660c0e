"""``annotate train calibrate``: fit the per-face expected error of a network on held-out faces."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from annotator import checkpoint
from annotator.landmarks import expected_error

from .evaluate import View, collect, set_name
from .groundtruth import data_sets
from .metrics import THRESHOLD, spearman

MIN_FAILURES = 20  # fewer failures among the fitted faces: no failure term


def fit_error_model(features: np.ndarray, errors: np.ndarray) -> dict:
    """The error model of ``annotator.landmarks.expected_error`` fitted on faces' log disagreement features.

    Least squares of log(error) on the features over the faces that did not fail; with enough failures
    (error above the metric's 0.08) among them, also a logistic regression of failing on the features
    and the failures' mean error: the expected error is then the mixture of the two.
    """
    x = np.hstack([features, np.ones((len(features), 1))])
    failed = errors > THRESHOLD
    ok = ~failed if failed.sum() >= MIN_FAILURES else np.ones(len(errors), bool)
    coef, *_ = np.linalg.lstsq(x[ok], np.log(errors[ok]), rcond=None)
    model = {"coef": [float(c) for c in coef[:-1]], "intercept": float(coef[-1])}
    if failed.sum() >= MIN_FAILURES:
        fail = _logistic(x, failed)
        model["failure"] = {"coef": [float(c) for c in fail[:-1]], "intercept": float(fail[-1]),
                            "error": float(errors[failed].mean()), "faces": int(failed.sum())}
    return model


def _logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Logistic regression weights (Newton's method with a small ridge, bias in the last column)."""
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def calibrate(weights: str | Path, folders: list[str] = (), holdout_of: list[str] = (), upsample: int = 1,
              jobs: int = -1, turns: tuple[float, ...] = (0.0,), detector: str = "hog",
              orientation: str = "upright", faces_out: str | Path | None = None,
              occlusions: tuple[float, ...] = (0.0,), boxes: str | Path | None = None) -> dict:
    """Fit the error model on the faces of ``folders`` (held-out slices of ``holdout_of``), each photo turned
    by each of ``turns`` degrees, with each of ``occlusions`` of the face hidden, and scanned by ``detector``
    in ``orientation`` (the detections kept in, and taken from, the folder ``boxes``); store it in
    ``weights``."""
    if faces_out:  # made before the long collection, not after it
        Path(faces_out).parent.mkdir(parents=True, exist_ok=True)
    methods = {"network": ("network", str(weights))}
    sets = data_sets(folders, holdout_of)
    views = [View(turn, detector, orientation, occlude) for turn in turns for occlude in occlusions]
    faces = [(view, collect(f, part, methods, upsample, jobs=jobs, view=view, boxes=boxes))
             for f, part in sets for view in views]
    faces = [(view, f) for view, f in faces if "features" in f]
    features = np.concatenate([f["features"] for _, f in faces])
    errors = np.concatenate([f["errors"]["network"] for _, f in faces])
    per_point = {k: np.concatenate([f[k] for _, f in faces]) for k in ("spreads", "point_errors")
                 if k in faces[0][1]}
    if faces_out:  # for refitting or studying the model without collecting the faces again
        shown = {k: np.concatenate([np.full(len(f["features"]), getattr(view, k)) for view, f in faces])
                 for k in ("turn", "occlude")}  # each face's view
        np.savez(faces_out, features=features, errors=errors, **per_point, **shown)
    model = fit_error_model(features, errors)
    model.update(faces=int(len(errors)), fitted_on=[set_name(f, part) for f, part in sets], turns=list(turns),
                 occlusions=list(occlusions), detector=detector, orientation=orientation,
                 spearman_on_fit=spearman(expected_error(features, model), errors))
    ckpt = checkpoint.load(weights)
    ckpt["meta"]["error_model"] = model
    checkpoint.save(weights, ckpt)
    return model
