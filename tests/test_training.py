"""The train command group end to end on a few real faces, and the shipped weights' accuracy."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from annotator.detectors import detect, face_containing
from annotator.images import read_image
from annotator.checkpoint import load_cascade
from annotator.landmarks import DEFAULT_WEIGHTS, NetworkLandmarker
from annotator.network import network_for
from conftest import annotate
from annotator.training.export import half_precision
from annotator.training.face_resnet import read_face_resnet
from annotator.training.groundtruth import labelled_images, read_68
from annotator.training.metrics import normalised_errors
from annotator.training.prepare import load_cache


def test_prepare_fit_evaluate_export(photos, tmp_path):
    (photos / "profile.pts").write_text("version: 1\nn_points: 2\n{\n1 1\n2 2\n}\n")
    shutil.copy(photos / "1634816_1.jpg", photos / "profile.jpg")
    cache = tmp_path / "cache.npz"
    out = annotate("train", "prepare", photos, "--out", cache, "--size", "32", "-j", "1").stdout
    assert "4 face boxes kept, 0 faces missed, 1 files skipped" in out
    data = load_cache(cache)
    assert data["crops"].shape == (4, 64, 64, 3) and data["targets"].shape == (4, 68, 2)
    assert list(data["detectors"]) == ["hog"] * 4

    out = annotate("train", "prepare", photos, "--out", tmp_path / "both.npz", "--size", "32", "--detector",
                   "both", "-j", "1").stdout
    assert "8 face boxes kept, 0 faces missed" in out  # each face on the box of each detector
    both = load_cache(tmp_path / "both.npz")
    assert sorted(both["detectors"]) == ["cnn"] * 4 + ["hog"] * 4
    assert not np.array_equal(both["boxes"][both["detectors"] == "cnn"], data["boxes"])

    runs = []
    for name, frame in [("a", "box"), ("b", "box"), ("s", "shape")]:
        runs.append(tmp_path / name)
        annotate("train", "fit", cache, "--val", cache, "--out", runs[-1], "--epochs", "2", "--batch", "2",
                 "--width", "4", "--frame", frame, "--arch", "heatmap" if frame == "shape" else "cnn8")
        assert (runs[-1] / "curves.png").stat().st_size > 0
    a, b = (torch.load(r / "last.pt", weights_only=True)["state_dict"] for r in runs[:2])
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed and data: same weights
    history = json.loads((runs[0] / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["val_mean_error"]) for h in history)

    warm = tmp_path / "warm"  # a warm restart from run a, at a learning rate too small to move it
    annotate("train", "fit", cache, "--out", warm, "--epochs", "1", "--batch", "2", "--width", "4", "--lr", "1e-12",
             "--init", runs[0])
    c = torch.load(warm / "last.pt", weights_only=True)
    learned = [k for k in a if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(a[k], c["state_dict"][k], atol=1e-6) for k in learned)
    assert c["meta"]["fit"]["init"] == str(runs[0])

    report = tmp_path / "report"
    annotate("train", "evaluate", runs[0], photos, "--out", report, "-j", "1")
    result = json.loads((report / "report.json").read_text())
    (folder,) = result["sets"].values()
    assert folder["network"]["faces"] == folder["dlib"]["faces"] == 4
    assert np.isclose(folder["network"]["mean"], _mean_error(report / "weights.pt", photos))  # ours, not dlib's
    assert list(report.glob("ced_*.png"))

    weights = tmp_path / "exported.pt"
    annotate("train", "export", runs[0], runs[2], "--dest", weights)
    annotate(photos, "--out", tmp_path / "pts", "--weights", weights)
    assert len(list((tmp_path / "pts").glob("*.pts"))) >= 4


def _mean_error(weights, folder) -> float:
    """Mean normalised error of the network ``weights`` on the detected faces of a ground-truth folder."""
    net = NetworkLandmarker(weights)
    errors = []
    for image_path, pts in labelled_images(folder):
        truth, image = read_68(pts), read_image(image_path)
        if truth is not None:
            face = face_containing(detect(image), truth)
            errors.append(normalised_errors(net.predict(image, [face.box]), truth[None])[0])
    return float(np.mean(errors))


def test_shipped_weights_near_ground_truth(data):
    """The packaged network on held-out YTF test faces: mean error under 6% of the face size."""
    net = NetworkLandmarker()
    assert DEFAULT_WEIGHTS.stat().st_size < 10e6
    errors = []
    for image_path, pts in list(labelled_images(data / "ytf" / "test"))[::97]:
        truth = read_68(pts)
        image = read_image(image_path)
        face = face_containing(detect(image), truth)
        if face is not None:
            errors.append(normalised_errors(net.predict(image, [face.box]), truth[None])[0])
    assert len(errors) >= 6
    assert np.mean(errors) < 0.06, errors


def test_grid_stage_writes_per_point_errors(photos, tmp_path):
    """A grid precision stage trained on ground-truth boxes (prepare --detector points) joins the shipped
    cascade; its per-point uncertainty reaches the JSON output, calibrate and evaluate."""
    cache = tmp_path / "points.npz"
    out = annotate("train", "prepare", photos, "--out", cache, "--size", "32", "--detector", "points", "-j", "1").stdout
    assert "4 face boxes kept, 0 faces missed" in out
    assert list(load_cache(cache)["detectors"]) == ["points"] * 4
    run = tmp_path / "grid"
    annotate("train", "fit", cache, "--val", cache, "--out", run, "--epochs", "2", "--batch", "2", "--width", "4",
             "--frame", "shape", "--arch", "grid")
    assert all(np.isfinite(h["val_mean_error"]) for h in json.loads((run / "history.json").read_text()))
    weights = tmp_path / "three.pt"
    annotate("train", "export", DEFAULT_WEIGHTS, run, "--dest", weights)
    annotate("train", "calibrate", weights, photos, "-j", "1")
    assert len(torch.load(weights, weights_only=True)["meta"]["error_model"]["coef"]) == 7
    annotate(photos, "--out", tmp_path / "json", "--format", "json", "--weights", weights)
    faces = [f for p in (tmp_path / "json").glob("*.json") for f in json.loads(p.read_text())["faces"]]
    assert len(faces) >= 4
    assert all(len(f["point_errors"]) == 68 and min(f["point_errors"]) > 0 for f in faces)
    # the face's expected error shared among its points
    assert all(np.mean(f["point_errors"]) == pytest.approx(f["expected_error"], rel=1e-3) for f in faces)
    report = tmp_path / "report"
    annotate("train", "evaluate", weights, photos, "--out", report, "-j", "1")
    (folder,) = json.loads((report / "report.json").read_text())["sets"].values()
    assert -1 <= folder["point_errors"]["within_faces"] <= 1 and folder["point_errors"]["mean_expected_over_true"] > 0


def test_gridface_stage(photos, tmp_path):
    """A gridface precision stage (dlib's face trunk) starts from dlib's weights, its trunk at the scaled
    learning rate; behind the shipped cascade, annotate writes its points and per-point errors."""
    cache = tmp_path / "points.npz"
    annotate("train", "prepare", photos, "--out", cache, "--size", "32", "--detector", "points", "-j", "1")
    run = tmp_path / "gridface"
    annotate("train", "fit", cache, "--out", run, "--epochs", "1", "--batch", "2", "--width", "4", "--frame", "shape",
             "--arch", "gridface", "--backbone-lr-scale", "0.1")
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["meta"]["fit"]["pretrained"] == "dlib_face_recognition_resnet_model_v1"
    trunk, rest = ckpt["optimizer"]["param_groups"]
    assert trunk["lr"] == pytest.approx(0.1 * rest["lr"])
    dlib_conv = read_face_resnet().body.alevel2[0].block[0].weight  # two small steps away from dlib's
    assert torch.allclose(ckpt["state_dict"]["features.down16.0.block.0.weight"], dlib_conv, atol=1e-3)
    weights = tmp_path / "three.pt"
    annotate("train", "export", DEFAULT_WEIGHTS, run, "--dest", weights)
    assert load_cascade(weights)[0][-1].config["arch"] == "gridface"
    annotate(photos, "--out", tmp_path / "json", "--format", "json", "--weights", weights)
    faces = [f for p in (tmp_path / "json").glob("*.json") for f in json.loads(p.read_text())["faces"]]
    assert len(faces) >= 4
    assert all(len(f["landmarks"]) == 68 and len(f["point_errors"]) == 68 for f in faces)


def test_averaged_grid_stage(photos, tmp_path):
    """Two grid runs of other seeds exported as one stage (--average): its output is their mean, and
    annotate runs it; runs that do not share a crop cannot be averaged."""
    cache = tmp_path / "points.npz"
    annotate("train", "prepare", photos, "--out", cache, "--size", "32", "--detector", "points", "-j", "1")
    runs = [tmp_path / f"grid{seed}" for seed in (0, 1)]
    for seed, run in enumerate(runs):
        annotate("train", "fit", cache, "--out", run, "--epochs", "1", "--batch", "2", "--width", "4",
                 "--frame", "shape", "--arch", "grid", "--seed", str(seed))
    weights = tmp_path / "averaged.pt"
    annotate("train", "export", DEFAULT_WEIGHTS, runs[0], "--average", runs[1], "--dest", weights)
    stages, _, _ = load_cascade(weights)
    members = []
    for run in runs:
        ckpt = torch.load(run / "last.pt", weights_only=True)
        members.append(network_for(ckpt["config"]))
        members[-1].load_state_dict(half_precision(ckpt["state_dict"]))  # rounded as export stores them
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255
    with torch.inference_mode():
        outs = [net.eval()(x) for net in [stages[-1], *members]]
    assert not torch.allclose(outs[1], outs[2], atol=0.1)  # other seeds: other networks
    assert torch.allclose(outs[0], (outs[1] + outs[2]) / 2, atol=1e-4)
    annotate(photos, "--out", tmp_path / "json", "--format", "json", "--weights", weights)
    assert len([f for p in (tmp_path / "json").glob("*.json") for f in json.loads(p.read_text())["faces"]]) >= 4
    adapted = tmp_path / "adapted.pt"  # adapt fine-tunes each member
    annotate("train", "adapt", photos, "--out", adapted, "--weights", weights, "--epochs", "1", "--batch", "2",
             "-j", "1")
    before, after = (torch.load(w, weights_only=True)["stages"][-1]["state_dict"] for w in (weights, adapted))
    for i in (0, 1):
        key = f"members.{i}.head.weight"
        assert after[key].dtype == before[key].dtype and not torch.equal(after[key], before[key])

    annotate("train", "prepare", photos, "--out", tmp_path / "p40.npz", "--size", "40", "--detector", "points",
             "-j", "1")
    other = tmp_path / "grid40"
    annotate("train", "fit", tmp_path / "p40.npz", "--out", other, "--epochs", "1", "--batch", "2", "--width", "4",
             "--frame", "shape", "--arch", "grid")
    result = annotate("train", "export", DEFAULT_WEIGHTS, runs[0], "--average", other, "--dest", weights, check=False)
    assert result.returncode == 1 and "must share the last stage's configuration" in result.stderr


def test_pseudolabel_annotates_the_faces_300w_left_out(photos, data, tmp_path):
    """pseudolabel caches the faces a photo holds but its .pts files do not, with the teacher's points close
    to where 300-W's other copies of the photo put them; a face that a copy annotates stays out."""
    unannotated = {"134212_2", "1130084326_2", "1130084326_3"}  # the fixture copies only each photo's _1
    cache = tmp_path / "teacher.npz"
    annotate("train", "pseudolabel", photos, "--part", "all", "--teacher", DEFAULT_WEIGHTS, "--out", cache,
             "--size", "32", "--max-expected", "0.08", "-j", "1")
    got = load_cache(cache)
    assert got["crops"].shape[1:] == (64, 64, 3) and set(got["detectors"]) == {"teacher"}
    assert len(got["expected"]) == len(got["points"]) and got["expected"].max() <= 0.08
    centres = got["points"].mean(1)
    for stem in unannotated:
        truth = read_68(data / "300w" / "afw" / f"{stem}.pts")
        nearest = np.argmin(np.linalg.norm(centres - truth.mean(0), axis=1))
        assert normalised_errors(got["points"][nearest][None], truth[None])[0] < 0.05, stem
    for pts in photos.glob("*.pts"):
        assert np.linalg.norm(centres - read_68(pts).mean(0), axis=1).min() > 20, pts.stem
    for ext in (".jpg", ".pts"):  # the second face's own copy: annotated, so no longer the teacher's
        shutil.copy(data / "300w" / "afw" / f"134212_2{ext}", photos)
    annotate("train", "pseudolabel", photos, "--part", "all", "--teacher", DEFAULT_WEIGHTS, "--out", cache,
             "--size", "32", "--max-expected", "0.08", "-j", "1")
    assert len(load_cache(cache)["points"]) == len(got["points"]) - 1


def test_average_takes_a_cascade_files_last_stage(tmp_path):
    """export --average accepts an exported cascade (its last stage): the shipped stage averaged with
    itself gives the shipped stage's output."""
    weights = tmp_path / "teacher.pt"
    annotate("train", "export", DEFAULT_WEIGHTS, "--average", DEFAULT_WEIGHTS, "--dest", weights)
    (shipped, *_), (averaged, *_) = (load_cascade(w)[0][-1:] for w in (DEFAULT_WEIGHTS, weights))
    assert averaged.config["members"] == 2
    x = torch.rand(2, 3, 128, 128) * 255
    with torch.inference_mode():
        assert torch.allclose(shipped.eval()(x), averaged.eval()(x), atol=1e-4)
