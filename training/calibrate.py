"""``annotate train calibrate``: fit the per-face expected error of a network on held-out faces."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from annotator import checkpoint

from .evaluate import collect, set_name
from .groundtruth import data_sets
from .metrics import spearman


def fit_error_model(features: np.ndarray, errors: np.ndarray) -> dict:
    """Least-squares fit of log(error) on the log disagreement features (see annotator.landmarks)."""
    x = np.hstack([features, np.ones((len(features), 1))])
    coef, *_ = np.linalg.lstsq(x, np.log(errors), rcond=None)
    return {"coef": [float(c) for c in coef[:-1]], "intercept": float(coef[-1])}


def calibrate(weights: str | Path, folders: list[str] = (), holdout_of: list[str] = (), upsample: int = 1,
              jobs: int = -1) -> dict:
    """Fit the error model on the faces of ``folders`` (held-out slices of ``holdout_of``); store it in ``weights``."""
    methods = {"network": ("network", str(weights))}
    sets = data_sets(folders, holdout_of)
    faces = [collect(f, part, methods, upsample, jobs=jobs) for f, part in sets]
    features = np.concatenate([f["features"] for f in faces])
    errors = np.concatenate([f["errors"]["network"] for f in faces])
    model = fit_error_model(features, errors)
    model.update(faces=int(len(errors)), fitted_on=[set_name(f, part) for f, part in sets],
                 spearman_on_fit=spearman(features @ np.asarray(model["coef"]), errors))
    ckpt = checkpoint.load(weights)
    ckpt["meta"]["error_model"] = model
    checkpoint.save(weights, ckpt)
    return model
