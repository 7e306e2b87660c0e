"""``annotate train evaluate``: our network vs dlib's 68-point models on ground-truth folders."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from annotator.detectors import DETECTORS, TRAINING_DETECTOR, detect, face_containing
from annotator.images import read_image
from annotator.landmarks import cached_landmarker, expected_error, point_errors

from .groundtruth import data_sets, detected_face, labelled_images, read_68
from .metrics import (THRESHOLD, bootstrap_interval, ced, normalised_errors, normalised_point_errors,
                      point_rank_agreement, spearman, summarise, worst_caught)

LABELS = {"network": "ours (network)", "dlib": "dlib shape_predictor_68 (shipped)",
          "dlib-trained": "dlib's trainer on our training data"}


@dataclass(frozen=True)
class View:
    """How evaluation faces are shown to the detector: the photo turned by ``turn`` degrees
    (counter-clockwise), ``occlude`` of the face hidden by a grey rectangle
    (``groundtruth.occluded``), scanned by ``detector`` in ``orientation``."""

    turn: float = 0.0
    detector: str = TRAINING_DETECTOR
    orientation: str = "upright"
    occlude: float = 0.0


def _evaluate_image(image_path: Path, pts_path: Path, methods: dict[str, tuple[str, str | None]],
                    upsample: int, max_side: int | None, view: View, boxes: str | Path | None) -> dict | None:
    found = detected_face(image_path, pts_path, upsample, max_side, view.detector, view.turn, view.orientation,
                          view.occlude, boxes)
    if found is None:
        return None
    image, face, truth = found
    if face is None:
        return {"missed": True}
    row = {"missed": False, "truth": truth}
    for method, (kind, weights) in methods.items():
        landmarker = cached_landmarker(kind, weights)
        if kind == "network":
            points, features, spreads = landmarker.predict_with_features([image], [[face.box]])
            row["features"] = features[0]
            if spreads is not None:
                row["spreads"] = spreads[0]
        else:
            points = landmarker.predict(image, [face.box])
        row[method] = points[0]
    return row


def collect(folder: str, part: str, methods: dict[str, tuple[str, str | None]], upsample: int = 1,
            max_side: int | None = None, jobs: int = -1, view: View = View(), limit: int | None = None,
            boxes: str | Path | None = None) -> dict:
    """Per method the (N,) errors of the faces of ``folder``'s ``part`` that the detector found; misses counted.

    ``view``: the photos turned and scanned as it says; ``limit``: only every k-th face, about that many;
    ``boxes``: a folder keeping the detections for the next run (``training.detections``)."""
    pairs = list(labelled_images(folder, part))
    if limit and len(pairs) > limit:
        pairs = pairs[::int(np.ceil(len(pairs) / limit))]
    rows = Parallel(n_jobs=jobs, batch_size=4)(
        delayed(_evaluate_image)(i, p, methods, upsample, max_side, view, boxes) for i, p in pairs)
    rows = [r for r in rows if r is not None]
    kept = [r for r in rows if not r["missed"]]
    out = {"missed": len(rows) - len(kept), "errors": {m: np.zeros(0) for m in methods}}
    if not kept:
        return out
    truth = np.stack([r["truth"] for r in kept])
    out["errors"] = {m: normalised_errors(np.stack([r[m] for r in kept]), truth) for m in methods}
    for key in ("features", "spreads"):
        if key in kept[0]:
            out[key] = np.stack([r[key] for r in kept])
    if "spreads" in out:  # each point's own error, in the metric's units
        out["point_errors"] = normalised_point_errors(np.stack([r["network"] for r in kept]), truth)
    return out


def _compare_image(image_path: Path, pts_path: Path, weights: str, upsample: int, max_side: int | None
                   ) -> dict[str, float | None] | None:
    """Our network's error on the face's box from each detector (None: that detector missed it)."""
    truth = read_68(pts_path)
    if truth is None:
        return None
    image, net = read_image(image_path), cached_landmarker("network", weights)
    row = {}
    for name in DETECTORS:
        face = face_containing(detect(image, upsample, max_side, detector=name), truth)
        row[name] = None if face is None else float(normalised_errors(net.predict(image, [face.box]), truth[None])[0])
    return row


def compare_detectors(folder: str, part: str, weights: str, upsample: int = 1, max_side: int | None = None,
                      jobs: int = -1) -> dict:
    """Faces found by both detectors (our error on each one's box), and by one only (on its box)."""
    rows = Parallel(n_jobs=jobs, batch_size=2)(
        delayed(_compare_image)(i, p, weights, upsample, max_side) for i, p in labelled_images(folder, part))
    rows = [r for r in rows if r is not None]
    both = [r for r in rows if r["hog"] is not None and r["cnn"] is not None]
    only = {"hog": [r["hog"] for r in rows if r["cnn"] is None and r["hog"] is not None],
            "cnn": [r["cnn"] for r in rows if r["hog"] is None and r["cnn"] is not None]}
    summary = {"faces": len(rows), "missed_by_both": sum(r["hog"] is None and r["cnn"] is None for r in rows)}
    for name in DETECTORS:
        summary[f"both_{name}_boxes"] = summarise(np.array([r[name] for r in both])) if both else None
        summary[f"only_{name}"] = summarise(np.array(only[name])) if only[name] else {"faces": 0}
    return summary


def evaluate(weights: str, folders: list[str], out: str | Path, upsample: int = 1,
             max_side: int | None = None, jobs: int = -1, holdout_of: list[str] = (),
             dlib_trained: str | None = None, detectors: bool = False) -> dict:
    """Per data set: detector misses and, per method, AUC, mean/median error, failure rate.

    ``holdout_of`` folders contribute only their held-out slice of photos.
    ``dlib_trained`` is a .dat from dlib's trainer, scored beside the others.
    For our network, also how well its expected error ranks the true errors,
    and with ``detectors`` how it does on each detector's boxes (:func:`compare_detectors`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    methods = {"network": ("network", str(weights)), "dlib": ("dlib", None)}
    if dlib_trained:
        methods["dlib-trained"] = ("dlib", str(dlib_trained))
    error_model = cached_landmarker("network", str(weights)).meta.get("error_model")
    report = {"weights": str(weights), "threshold": THRESHOLD, "upsample": upsample, "sets": {}}
    slices = []  # (expected, true) errors of the held-out slices, ranked together as well
    for folder, part in data_sets(folders, holdout_of):
        faces = collect(folder, part, methods, upsample, max_side, jobs)
        name = set_name(folder, part)
        errors = faces["errors"]
        expected = expected_error(faces["features"], error_model)
        report["sets"][name] = {
            "folder": str(folder), "part": part, "detector_missed": faces["missed"],
            **{m: summarise(e) for m, e in errors.items()},
            "expected_error": ranking(expected, errors["network"])}
        if part == "holdout":
            slices.append((expected, errors["network"]))
        if "spreads" in faces:  # the grid stage's per-point uncertainty
            per_point = point_errors(faces["spreads"], expected)
            report["sets"][name]["point_errors"] = {
                **point_rank_agreement(per_point, faces["point_errors"]),
                "mean_expected_over_true": float(per_point.mean() / faces["point_errors"].mean())}
        if detectors:
            report["sets"][name]["detectors"] = compare_detectors(folder, part, str(weights), upsample, max_side,
                                                                  jobs)
        _plot_ced(errors, name, out / f"ced_{name}.png")
    if len(slices) > 1:
        report["holdout_slices_pooled"] = ranking(*(np.concatenate(x) for x in zip(*slices)))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown_table(report))
    return report


def ranking(expected: np.ndarray, errors: np.ndarray) -> dict:
    """How well ``expected`` errors rank and flag the true ``errors``: Spearman, the share of the worst 10%
    among the 10% expected worst (each with its 95% bootstrap interval), the mean expected error and
    :func:`failure_flags`."""
    return {"spearman": spearman(expected, errors), "spearman_95": bootstrap_interval(spearman, expected, errors),
            "worst_10pc_caught": worst_caught(expected, errors),
            "worst_10pc_caught_95": bootstrap_interval(worst_caught, expected, errors),
            "mean_expected": float(expected.mean()), "mean_true": float(errors.mean()),
            **failure_flags(expected, errors)}


def failure_flags(expected: np.ndarray, errors: np.ndarray) -> dict:
    """The failures (error above the metric's threshold) and the shares of them, and of the other faces,
    whose expected error is above it too (a failure read as one; a good face read as a failure)."""
    failed = errors > THRESHOLD
    return {"failures": int(failed.sum()),
            "failures_flagged": float((expected[failed] > THRESHOLD).mean()) if failed.any() else None,
            "others_flagged": float((expected[~failed] > THRESHOLD).mean()) if (~failed).any() else None}


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
    lines += ["", "| data set | Spearman (expected vs true error; 95% interval) | "
              "worst 10% caught by top-10% expected (95% interval) | "
              "mean expected / true | per point: Spearman within faces / across faces, mean expected / true |",
              "|---|---|---|---|---|"]
    for name, s in report["sets"].items():
        e, p = s["expected_error"], s.get("point_errors")
        points = f"{p['within_faces']:.3f} / {p['across_faces']:.3f}, {p['mean_expected_over_true']:.2f}" if p else "-"
        lines.append(_ranking_row(name, e, points))
    if "holdout_slices_pooled" in report:
        lines.append(_ranking_row("held-out slices pooled", report["holdout_slices_pooled"], "-"))
    compared = {name: s["detectors"] for name, s in report["sets"].items() if "detectors" in s}
    if compared:
        lines += ["", "| data set | faces | found by both | mean error on HOG / CNN boxes | CNN / HOG "
                  "| only CNN: faces, mean error, failures | only HOG: faces | missed by both |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, d in compared.items():
            hog, cnn, only = d["both_hog_boxes"], d["both_cnn_boxes"], d["only_cnn"]
            pair = f"{hog['mean']:.4f} / {cnn['mean']:.4f} | {cnn['mean'] / hog['mean']:.3f}x" if hog else "- | -"
            extra = f", {only['mean']:.4f}, {only['failure_rate']:.1%}" if only["faces"] else ""
            lines.append(f"| {name} | {d['faces']} | {hog['faces'] if hog else 0} | {pair} | {only['faces']}{extra} "
                         f"| {d['only_hog']['faces']} | {d['missed_by_both']} |")
    return "\n".join(lines) + "\n"


def _ranking_row(name: str, e: dict, points: str) -> str:
    """A markdown row of :func:`ranking`'s figures, and the per-point ones already formatted."""
    (s_lo, s_hi), (w_lo, w_hi) = e["spearman_95"], e["worst_10pc_caught_95"]
    return (f"| {name} | {e['spearman']:.3f} ({s_lo:.2f}-{s_hi:.2f}) | "
            f"{e['worst_10pc_caught']:.0%} ({w_lo:.0%}-{w_hi:.0%}) | "
            f"{e['mean_expected'] / e['mean_true']:.2f} | {points} |")


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
