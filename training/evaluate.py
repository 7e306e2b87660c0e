"""``annotate train evaluate``: our network vs dlib's 68-point model on ground-truth folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.detect import detect, face_containing
from annotator.images import read_image
from annotator.landmarks import cached_landmarker

from .groundtruth import labelled_images, read_68
from .metrics import THRESHOLD, ced, normalised_errors, summarise

METHODS = ("network", "dlib")


def _evaluate_image(image_path: Path, pts_path: Path, weights: str, upsample: int,
                    max_side: int | None) -> dict | None:
    truth = read_68(pts_path)
    if truth is None:
        return None
    image = read_image(image_path)
    face = face_containing(detect(image, upsample, max_side), truth)
    if face is None:
        return {"missed": True}
    preds = {m: cached_landmarker(m, weights if m == "network" else None).predict(image, [face.box])[0]
             for m in METHODS}
    return {"missed": False, "truth": truth, **preds}


def evaluate(weights: str, folders: list[str], out: str | Path, upsample: int = 1,
             max_side: int | None = None, jobs: int = -1) -> dict:
    """Per folder: detector misses and, for both methods, AUC, mean/median error, failure rate."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"weights": str(weights), "threshold": THRESHOLD, "sets": {}}
    for folder in folders:
        rows = Parallel(n_jobs=jobs, batch_size=4)(
            delayed(_evaluate_image)(i, p, str(weights), upsample, max_side) for i, p in labelled_images(folder))
        rows = [r for r in rows if r is not None]
        kept = [r for r in rows if not r["missed"]]
        truth = np.stack([r["truth"] for r in kept])
        errors = {m: normalised_errors(np.stack([r[m] for r in kept]), truth) for m in METHODS}
        name = _set_name(folder)
        report["sets"][name] = {"folder": str(folder), "detector_missed": len(rows) - len(kept),
                                **{m: summarise(e) for m, e in errors.items()}}
        _plot_ced(errors, name, out / f"ced_{name}.png")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown_table(report))
    return report


def _set_name(folder: str) -> str:
    parts = Path(folder).resolve().parts
    return "_".join(parts[-2:])


def markdown_table(report: dict) -> str:
    """The report as a markdown table, one row per data set and method."""
    lines = ["| data set | method | faces | detector missed | AUC@0.08 | mean error | median error | failure rate |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in report["sets"].items():
        for m in METHODS:
            r = s[m]
            lines.append(f"| {name} | {m} | {r['faces']} | {s['detector_missed']} | {r['auc']:.4f} | "
                         f"{r['mean']:.4f} | {r['median']:.4f} | {r['failure_rate']:.2%} |")
    return "\n".join(lines) + "\n"


def _plot_ced(errors: dict[str, np.ndarray], name: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m, e in errors.items():
        t, share = ced(e)
        label = "ours (network)" if m == "network" else "dlib shape_predictor_68"
        ax.plot(t, share, label=f"{label}: AUC {summarise(e)['auc']:.3f}")
    ax.set(xlabel="error / sqrt(w*h) of ground-truth box", ylabel="share of faces", xlim=(0, THRESHOLD),
           ylim=(0, 1), title=f"CED on {name} ({len(next(iter(errors.values())))} faces)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
