"""``annotate train evaluate``: our network vs dlib's 68-point models on ground-truth folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.landmarks import cached_landmarker, expected_error

from .groundtruth import data_sets, detected_face, labelled_images
from .metrics import THRESHOLD, ced, normalised_errors, spearman, summarise, worst_caught

LABELS = {"network": "ours (network)", "dlib": "dlib shape_predictor_68 (shipped)",
          "dlib-trained": "dlib's trainer on our training data"}


def _evaluate_image(image_path: Path, pts_path: Path, methods: dict[str, tuple[str, str | None]],
                    upsample: int, max_side: int | None) -> dict | None:
    found = detected_face(image_path, pts_path, upsample, max_side)
    if found is None:
        return None
    image, face, truth = found
    if face is None:
        return {"missed": True}
    row = {"missed": False, "truth": truth}
    for method, (kind, weights) in methods.items():
        landmarker = cached_landmarker(kind, weights)
        if kind == "network":
            points, features = landmarker.predict_with_features([image], [[face.box]])
            row["features"] = features[0]
        else:
            points = landmarker.predict(image, [face.box])
        row[method] = points[0]
    return row


def collect(folder: str, part: str, methods: dict[str, tuple[str, str | None]], upsample: int = 1,
            max_side: int | None = None, jobs: int = -1) -> dict:
    """Per method the (N,) errors of the faces of ``folder``'s ``part`` that the detector found; misses counted."""
    rows = Parallel(n_jobs=jobs, batch_size=4)(
        delayed(_evaluate_image)(i, p, methods, upsample, max_side) for i, p in labelled_images(folder, part))
    rows = [r for r in rows if r is not None]
    kept = [r for r in rows if not r["missed"]]
    truth = np.stack([r["truth"] for r in kept])
    out = {"missed": len(rows) - len(kept),
           "errors": {m: normalised_errors(np.stack([r[m] for r in kept]), truth) for m in methods}}
    if "features" in kept[0]:
        out["features"] = np.stack([r["features"] for r in kept])
    return out


def evaluate(weights: str, folders: list[str], out: str | Path, upsample: int = 1,
             max_side: int | None = None, jobs: int = -1, holdout_of: list[str] = (),
             dlib_trained: str | None = None) -> dict:
    """Per data set: detector misses and, per method, AUC, mean/median error, failure rate.

    ``holdout_of`` folders contribute only their held-out slice of photos.
    ``dlib_trained`` is a .dat from dlib's trainer, scored beside the others.
    For our network, also how well its expected error ranks the true errors.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = {"network": ("network", str(weights)), "dlib": ("dlib", None)}
    if dlib_trained:
        methods["dlib-trained"] = ("dlib", str(dlib_trained))
    error_model = cached_landmarker("network", str(weights)).meta.get("error_model")
    report = {"weights": str(weights), "threshold": THRESHOLD, "upsample": upsample, "sets": {}}
    for folder, part in data_sets(folders, holdout_of):
        faces = collect(folder, part, methods, upsample, max_side, jobs)
        name = set_name(folder, part)
        errors = faces["errors"]
        expected = expected_error(faces["features"], error_model)
        report["sets"][name] = {
            "folder": str(folder), "part": part, "detector_missed": faces["missed"],
            **{m: summarise(e) for m, e in errors.items()},
            "expected_error": {"spearman": spearman(expected, errors["network"]),
                               "worst_10pc_caught": worst_caught(expected, errors["network"]),
                               "mean_expected": float(expected.mean())}}
        _plot_ced(errors, name, out / f"ced_{name}.png")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown_table(report))
    return report


def set_name(folder: str, part: str = "all") -> str:
    """``parent_folder`` of a data folder, with ``_holdout`` for its held-out slice."""
    name = "_".join(Path(folder).resolve().parts[-2:])
    return name if part == "all" else f"{name}_{part}"


def markdown_table(report: dict) -> str:
    """The report as markdown: accuracy per data set and method, then the expected error's ranking."""
    lines = ["| data set | method | faces | detector missed | AUC@0.08 | mean error | vs dlib | median error "
             "| failure rate |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in report["sets"].items():
        for m in LABELS:
            if m in s:
                r = s[m]
                lines.append(f"| {name} | {m} | {r['faces']} | {s['detector_missed']} | {r['auc']:.4f} | "
                             f"{r['mean']:.4f} | {r['mean'] / s['dlib']['mean']:.2f}x | {r['median']:.4f} | "
                             f"{r['failure_rate']:.2%} |")
    lines += ["", "| data set | Spearman (expected vs true error) | worst 10% caught by top-10% expected |",
              "|---|---|---|"]
    for name, s in report["sets"].items():
        e = s["expected_error"]
        lines.append(f"| {name} | {e['spearman']:.3f} | {e['worst_10pc_caught']:.0%} |")
    return "\n".join(lines) + "\n"


def _plot_ced(errors: dict[str, np.ndarray], name: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m, e in errors.items():
        t, share = ced(e)
        ax.plot(t, share, label=f"{LABELS[m]}: AUC {summarise(e)['auc']:.3f}")
    ax.set(xlabel="error / sqrt(w*h) of ground-truth box", ylabel="share of faces", xlim=(0, THRESHOLD),
           ylim=(0, 1), title=f"CED on {name} ({len(next(iter(errors.values())))} faces)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
