"""The held-out split, evaluation beside dlib (shipped and retrained on our data) and error calibration."""
from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from annotator.detectors import detect, face_containing
from annotator.images import read_image
from annotator.landmarks import DEFAULT_WEIGHTS, N_FEATURES, NetworkLandmarker
from conftest import annotate
from annotator.training.groundtruth import labelled_images, photo_of, read_68
from annotator.training.metrics import bootstrap_interval, normalised_errors, spearman, worst_caught


def test_holdout_is_a_fixed_slice_of_whole_photos(data):
    folder = data / "300w" / "helen_trainset"
    every = {i for i, _ in labelled_images(folder)}
    train = {i for i, _ in labelled_images(folder, "train")}
    held = {i for i, _ in labelled_images(folder, "holdout")}
    assert train | held == every and not train & held
    assert 0.1 < len(held) / len(every) < 0.2
    assert not {photo_of(i) for i in train} & {photo_of(i) for i in held}  # a photo's faces stay together


def test_ranking_metrics():
    true = np.arange(1, 21, dtype=float)
    assert spearman(true, true) == 1 and spearman(-true, true) == -1
    assert worst_caught(true, true) == 1 and worst_caught(-true, true) == 0
    # the interval says how far a figure from this many faces may move: less with more faces
    rng = np.random.default_rng(0)
    widths = []
    for faces in (100, 1000):
        true = rng.gamma(4, 0.005, faces)
        expected = true * np.exp(rng.normal(0, 0.5, faces))
        lo, hi = bootstrap_interval(worst_caught, expected, true)
        assert lo <= worst_caught(expected, true) <= hi
        widths.append(hi - lo)
    assert 0 < widths[1] < widths[0]


def test_evaluate_beside_shipped_and_retrained_dlib(photos, tmp_path):
    report = tmp_path / "report"
    annotate("train", "evaluate", DEFAULT_WEIGHTS, photos, "--train-dlib", photos, "--out", report, "-j", "1")
    (result,) = json.loads((report / "report.json").read_text())["sets"].values()
    assert result["network"]["faces"] == result["dlib"]["faces"] == result["dlib-trained"]["faces"] == 4
    # dlib's trainer saw exactly these faces (and their mirror images): it must fit them closely,
    # which it only does when boxes, points and the mirroring are in the right coordinates
    assert result["dlib-trained"]["mean"] < 0.6 * result["dlib"]["mean"]
    assert -1 <= result["expected_error"]["spearman"] <= 1
    assert [p.stat().st_size > 0 for p in report.glob("ced_*.png")] == [True]
    again = annotate("train", "evaluate", DEFAULT_WEIGHTS, photos, "--train-dlib", photos, "--out", report,
                     "-j", "1")
    assert "training dlib" not in again.stderr  # the trained model is reused


def test_calibrate_stores_an_error_model_in_the_weights(photos, tmp_path):
    weights = tmp_path / "w.pt"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    annotate("train", "calibrate", weights, photos, "--turn", "0", "--turn", "15", "--faces-out", tmp_path / "f.npz",
             "-j", "1")
    model = torch.load(weights, weights_only=True)["meta"]["error_model"]
    assert model["faces"] == 8 and len(model["coef"]) == N_FEATURES  # disagreements, roll, spread
    faces = np.load(tmp_path / "f.npz")  # each fitted face with its view, to study the fit by view
    assert len(faces["errors"]) == 8 and sorted(faces["turn"]) == [0] * 4 + [15] * 4
    assert not faces["occlude"].any()
    annotate("train", "calibrate", weights, photos, "-j", "1")  # upright only: the estimate below
    net = NetworkLandmarker(weights)
    expected, true = [], []
    for image_path, pts in labelled_images(photos):
        truth, image = read_68(pts), read_image(image_path)
        face = face_containing(detect(image), truth)
        points, error, _ = net.predict_with_error([image], [[face.box]])
        expected.append(error[0])
        true.append(normalised_errors(points, truth[None])[0])
    # fitted on these faces: the estimate is in the metric's units (geometric means agree)
    assert abs(np.mean(np.log(expected)) - np.mean(np.log(true))) < 0.05


def test_calibrate_keeps_the_detections_for_the_next_run(photos, tmp_path):
    weights, boxes = tmp_path / "w.pt", tmp_path / "boxes"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    annotate("train", "calibrate", weights, photos, "--boxes", boxes, "-j", "1")
    first = torch.load(weights, weights_only=True)["meta"]["error_model"]
    kept = sorted(boxes.glob("*.json"))
    assert len(kept) == 4 and all(json.loads(p.read_text())[0]["box"] for p in kept)  # one per photo view
    annotate("train", "calibrate", weights, photos, "--boxes", boxes, "-j", "1")
    assert torch.load(weights, weights_only=True)["meta"]["error_model"] == first  # the same faces again
    kept[0].write_text("[null]")  # a kept detection is used as it is: here, a face the detector missed
    annotate("train", "calibrate", weights, photos, "--boxes", boxes, "-j", "1")
    assert torch.load(weights, weights_only=True)["meta"]["error_model"]["faces"] == 3
    copy = shutil.copytree(photos, tmp_path / "copy")  # new paths and times, the same bytes: still kept
    annotate("train", "calibrate", weights, copy, "--boxes", boxes, "-j", "1")
    assert torch.load(weights, weights_only=True)["meta"]["error_model"]["faces"] == 3
