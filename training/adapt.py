"""``annotate train adapt``: fine-tune the cascade's landmark stages on the faces a person checked.

Faces come from 300-W style folders (photo and ``.pts``; boxes from annotate's default detector) or
from annotate output folders (``faces.csv``: the faces checked ``accepted`` or ``moved``, their saved
points and the run's boxes). Each landmark stage trains as ``fit`` trains it (its batches,
augmentation and loss), held near its starting weights by an L2 penalty (L2-SP, Li et al. 2018).
A held-out part of the faces refits ``expected_error``. Every other key of the weights file is kept.
"""
from __future__ import annotations

import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from joblib import Parallel, delayed
from tqdm import tqdm

from annotator import checkpoint
from annotator.crop import Box, crop, to_box_relative
from annotator.detectors import detect, face_containing
from annotator.export import ExportError, Selection, left_out, read_faces
from annotator.images import ImageError, read_image
from annotator.index import INDEX
from annotator.landmarks import NetworkLandmarker
from annotator.network import network_for

from .calibrate import fit_error_model
from .data import base_affines, merge_caches
from .fit import deterministic, train_epoch
from .groundtruth import labelled_images, photo_of, read_68
from .metrics import normalised_errors, spearman
from .prepare import CONTEXT

DETECTOR = "cnn"  # annotate's default: the boxes that adapted weights will see in a default run
HOLDOUT = 0.15  # share of the faces held out from training to refit expected_error
MIN_REFIT = 30  # held-out faces needed to refit the whole error model; fewer refit only its intercept
# Training options per stage where the stage's own fit recorded none (the shipped network's).
DEFAULTS = {"loss": "l1", "occlude": 0.0}

Label = tuple[Box | None, np.ndarray]  # a face's box (None: detect it) and 0-based (68, 2) points


class AdaptError(ValueError):
    """A folder gives no usable face (the message names it and says why)."""


def _run_labels(folder: Path, run_format: str | None) -> tuple[dict[Path, list[Label]], Counter]:
    """The checked faces of an annotate output folder, by photo, and why other faces were left out."""
    try:
        faces, skipped = read_faces(folder, Selection(checked_only=True), run_format)
    except ExportError as e:
        raise AdaptError(str(e)) from None
    labels: dict[Path, list[Label]] = {}
    for face in faces:
        labels.setdefault(face.photo.path, []).append((face.box, face.points))
    return labels, skipped


def _groundtruth_labels(folder: Path) -> tuple[dict[Path, list[Label]], Counter]:
    """The 68-point faces of a 300-W style folder, by photo (boxes to be detected)."""
    labels, skipped = {}, Counter()
    for image, pts in labelled_images(folder):
        points = read_68(pts)
        if points is None:
            skipped["not 68 points"] += 1
        else:
            labels[image] = [(None, points)]
    return labels, skipped


def _crop_photo(photo: Path, labels: list[Label], sizes: tuple[int, ...]) -> list[dict | str]:
    """Per face of ``photo`` its box, points and context crops at each size, or why it cannot be used."""
    try:
        image = read_image(photo)
    except ImageError as e:
        return [f"unreadable photo ({e})"] * len(labels)
    found = detect(image, detector=DETECTOR) if any(box is None for box, _ in labels) else []
    out = []
    for box, points in labels:
        if box is None:
            face = face_containing(found, points)
            if face is None:
                out.append(f"not found by the {DETECTOR} detector")
                continue
            box = face.box
        out.append({"photo": str(photo), "box": tuple(int(v) for v in box), "points": points,
                    "crops": {s: crop(image, box, s, CONTEXT) for s in sizes}})
    return out


def collect(folders: list[str | Path], sizes: tuple[int, ...], jobs: int = 1,
            run_format: str | None = None) -> tuple[list[dict], Counter]:
    """Every usable face of ``folders`` (see the module's docstring), in folder and file order, and how
    many faces were left out for each reason.

    Raises :class:`AdaptError` naming the first folder without a usable face: before any photo is
    read when its listing has none, else once the detector has found none of its faces.
    """
    listed = [(Path(f), *_labels(Path(f), run_format)) for f in folders]
    for folder, labels, skipped in listed:
        if not labels:
            raise AdaptError(_no_faces(folder, skipped))
    faces, dropped = [], Counter()
    for folder, labels, skipped in listed:
        results = Parallel(n_jobs=jobs, batch_size=4)(
            delayed(_crop_photo)(photo, faces_of, sizes)
            for photo, faces_of in tqdm(labels.items(), desc=f"faces of {folder}", unit="photo", leave=False))
        results = [r for rs in results for r in rs]
        skipped.update(r for r in results if isinstance(r, str))
        found = [r for r in results if isinstance(r, dict)]
        if not found:
            raise AdaptError(_no_faces(folder, skipped))
        faces += found
        dropped += skipped
    return faces, dropped


def _labels(folder: Path, run_format: str | None) -> tuple[dict[Path, list[Label]], Counter]:
    return _run_labels(folder, run_format) if (folder / INDEX).is_file() else _groundtruth_labels(folder)


def _no_faces(folder: Path, skipped: Counter) -> str:
    """One line: which folder, what it lacks, and why its faces were left out."""
    if (folder / INDEX).is_file():
        what = f"no face a person checked (accepted or moved: annotate review {folder} --serve)"
    else:
        what = ("no 68-point face (give photos with a .pts of the same stem beside each, or an annotate "
                "output folder with faces.csv)")
    return f"{folder}: {what}" + (f"; left out: {left_out(skipped)}" if skipped else "")


def split(faces: list[dict], share: float = HOLDOUT) -> tuple[list[dict], list[dict]]:
    """(train, held-out): about ``share`` of the faces held out, a photo's faces (300-W's ``<photo>_<k>``
    copies, a video's ``<name>_<frame>`` frames) on one side, chosen by a fixed hash of the photo's name.

    Whole photos are held out in hash order until the share is reached; with a single photo, single faces.
    """
    groups = [str(Path(f["photo"]).parent / photo_of(Path(f["photo"]))) for f in faces]
    if len(set(groups)) == 1:
        groups = [f"{f['photo']}\0{f['box']}" for f in faces]
    order = sorted(set(groups), key=lambda g: (zlib.crc32(g.encode()), g))
    held, count, sizes = set(), 0, Counter(groups)
    for group in order[:-1]:  # at least one photo trains
        if count >= share * len(faces):
            break
        held.add(group)
        count += sizes[group]
    return ([f for f, g in zip(faces, groups) if g not in held], [f for f, g in zip(faces, groups) if g in held])


def stage_data(faces: list[dict], size: int) -> dict:
    """The faces as a training cache of ``size`` crops (the layout of ``prepare``; all on head 0, 300-W's)."""
    boxes = np.array([f["box"] for f in faces], dtype=np.int64)
    points = np.stack([f["points"] for f in faces])
    return {"crops": np.stack([f["crops"][size] for f in faces]), "boxes": boxes, "points": points,
            "targets": np.stack([to_box_relative(p, tuple(b)) for p, b in zip(points, boxes)]),
            "paths": np.array([f["photo"] for f in faces]), "head": np.zeros(len(faces), dtype=np.int64),
            "size": size, "context": CONTEXT}


def mix_caches(paths: list[str], sizes: tuple[int, ...]) -> dict[int, dict] | None:
    """The prepare caches ``paths`` merged per crop size (None without any), checked to hold crops of each
    of the stages' ``sizes``."""
    if not paths:
        return None
    layouts = {p: _layout(p) for p in paths}  # the crops themselves are loaded once, by merge_caches
    by_size = {s: [p for p, layout in layouts.items() if layout == (s, CONTEXT)] for s in sizes}
    missing = [s for s, found in by_size.items() if not found]
    if missing or len(paths) > sum(map(len, by_size.values())):
        held = " and ".join(sorted({f"{size}-px" for size, _ in layouts.values()}))
        raise AdaptError(f"the --mix caches hold {held} crops; this network's stages need "
                         f"{' and '.join(map(str, sizes))}-px crops (context {CONTEXT}): annotate train prepare "
                         + " ".join(f"--size {s}" for s in sizes) + (" --out 'mix_{size}.npz'" if len(sizes) > 1 else ""))
    return {s: merge_caches(found) for s, found in by_size.items()}


def _layout(path: str) -> tuple[int, int]:
    """A prepare cache's crop size and context, read without loading its crops."""
    with np.load(path) as data:
        return int(data["size"]), int(data["context"])


def mix_in(data: dict, mix: dict | None, ratio: float, seed: int) -> dict:
    """``data`` and a fixed sample of ``ratio`` faces per face of it from ``mix`` (:func:`mix_caches`)."""
    if mix is None or not ratio:
        return data
    n = min(len(mix["crops"]), round(ratio * len(data["crops"])))
    pick = np.sort(np.random.default_rng([seed, 1]).choice(len(mix["crops"]), n, replace=False))
    keys = ("crops", "boxes", "points", "targets", "paths")
    merged = {k: np.concatenate([data[k], mix[k][pick]]) for k in keys}
    return {**data, **merged, "head": np.zeros(len(merged["crops"]), dtype=np.int64)}


def fine_tune(stage: dict, fit_config: dict, data: dict, *, epochs: int, batch: int, lr: float, l2sp: float,
              seed: int, desc: str = "") -> dict:
    """The stage's state_dict after ``epochs`` passes over ``data`` (in the stage's dtypes)."""
    net = network_for(stage["config"])
    net.load_state_dict(stage["state_dict"])
    start = [p.detach().clone() for p in net.parameters()]

    def penalty() -> torch.Tensor:
        return l2sp * sum(((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), start))

    config = {**DEFAULTS, **{k: fit_config[k] for k in DEFAULTS if k in fit_config},
              "frame": net.config["frame"], "augment": True, "seed": seed, "epochs": epochs,
              "batch": min(batch, len(data["crops"])), "lr": lr}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    bases = base_affines(data, config["frame"], net.mean_shape.numpy().astype(np.float64))
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", leave=False):
        train_epoch(net, opt, data, bases, epoch, config, penalty if l2sp else None)
    return {k: v.detach().to(stage["state_dict"][k].dtype) for k, v in net.state_dict().items()}


def held_out_errors(weights: str | Path, faces: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The (N,) errors of the network ``weights`` on ``faces`` (as annotate runs it) and its (N, k) error
    features (``NetworkLandmarker.predict_with_features``)."""
    net = NetworkLandmarker(weights)
    points, features, _ = zip(*(net.predict_with_features([image], [boxes]) for image, boxes in _photos(faces)))
    errors = normalised_errors(np.concatenate(points), np.stack([f["points"] for f in faces]))
    return errors, np.concatenate(features)


def refit_error_model(errors: np.ndarray, features: np.ndarray, old: dict | None) -> dict | None:
    """``expected_error``'s model refitted on held-out ``errors`` and ``features``.

    With fewer than :data:`MIN_REFIT` faces only the intercept moves (the old coefficients are kept,
    when they fit the features); without faces the old model is kept.
    """
    if not len(errors):
        return old
    if len(errors) >= MIN_REFIT or not old or len(old["coef"]) != features.shape[1]:
        model = fit_error_model(features, errors)
    else:  # the old model (its other parts too) with its intercept moved to these faces' mean
        model = {**old, "intercept": float(np.mean(np.log(errors) - features @ np.asarray(old["coef"])))}
    rank = spearman(features @ np.asarray(model["coef"]), errors) if len(errors) > 2 else None
    model.update(faces=len(errors), fitted_on=["train adapt: held-out faces"], spearman_on_fit=rank)
    return model


def _photos(faces: list[dict]) -> Iterator[tuple[np.ndarray, list[Box]]]:
    """Each face's photo (read again) and box, one face at a time, in order."""
    for face in faces:
        yield read_image(face["photo"]), [face["box"]]


def adapt(folders: list[str | Path], out: str | Path, weights: str | Path = checkpoint.DEFAULT_WEIGHTS, *,
          epochs: int = 30, batch: int = 32, lr: float = 5e-4, l2sp: float = 0.1, mix: list[str] = (),
          mix_ratio: float = 1.0, seed: int = 0, threads: int = 1, jobs: int = 1, run_format: str | None = None,
          command: str = "") -> dict:
    """Fine-tune the landmark stages of ``weights`` on the faces of ``folders``; write ``out`` atomically.

    ``mix``: prepare caches of faces in the network's own markup (e.g. its training faces), of which
    ``mix_ratio`` faces per adapted face train alongside (a fixed sample).

    Returns what it did: faces trained on, held out and left out (by reason), the held-out faces' mean
    error before and after, and the seconds it took.
    """
    started = time.time()
    torch.manual_seed(seed)
    deterministic()
    torch.set_num_threads(threads)
    ckpt = checkpoint.load(weights)
    stages, fits = ckpt["stages"], ckpt.get("meta", {}).get("stages", [])
    sizes = tuple(sorted({s["config"]["size"] for s in stages}))
    mixed = mix_caches(list(mix), sizes)
    faces, skipped = collect(folders, sizes, jobs, run_format)
    train, held = split(faces)
    before = float(held_out_errors(weights, held)[0].mean()) if held else None
    for i, stage in enumerate(stages):
        fit_config = fits[i].get("fit", {}) if i < len(fits) else {}
        size = stage["config"]["size"]
        data = mix_in(stage_data(train, size), mixed[size] if mixed else None, mix_ratio, seed)
        stage["state_dict"] = fine_tune(stage, fit_config, data, epochs=epochs, batch=batch, lr=lr, l2sp=l2sp,
                                        seed=seed, desc=f"stage {i + 1}/{len(stages)}")
    meta = ckpt.setdefault("meta", {})
    record = {"command": command, "weights": str(weights), "folders": [str(f) for f in folders],
              "epochs": epochs, "batch": batch, "lr": lr, "l2sp": l2sp, "mix": [str(m) for m in mix],
              "mix_ratio": mix_ratio if mix else 0.0, "seed": seed, "threads": threads,
              "detector": DETECTOR, "faces": _face_list(train), "held_out": _face_list(held)}
    meta["adapt"] = [*meta.get("adapt", []), record]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".adapt-", dir=Path(out).parent) as tmp:
        draft = Path(tmp) / "weights.pt"
        checkpoint.save(draft, ckpt)
        errors, features = held_out_errors(draft, held) if held else (np.zeros(0), None)
        meta["error_model"] = refit_error_model(errors, features, meta.get("error_model"))
    checkpoint.save(out, ckpt)
    return {"faces": len(train), "held_out": len(held), "left_out": dict(skipped),
            "held_out_error_before": before, "held_out_error": float(errors.mean()) if held else None,
            "seconds": round(time.time() - started, 1), "out": str(out)}


def _face_list(faces: list[dict]) -> list[dict]:
    return [{"photo": f["photo"], "box": list(f["box"])} for f in faces]
