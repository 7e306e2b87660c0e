"""``annotate train adapt``: fine-tuning on a real folder of another markup, checked faces of a run, errors."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from annotator import checkpoint
from annotator.detectors import detect, face_containing
from annotator.images import read_image
from annotator.landmarks import DEFAULT_WEIGHTS, NetworkLandmarker
from annotator.review_server.edits import Faces
from annotator.training.adapt import collect
from annotator.training.groundtruth import labelled_images, read_68
from annotator.training.metrics import normalised_errors
from conftest import ROOT, annotate, both_runs, index_rows

# YouTube Faces' markup differs from 300-W's (which the shipped network writes) on the jaw and brows.
TRAIN_EVERY, TEST_EVERY = 60, 20  # 58 ytf/train faces (a few frames of many people), 39 ytf/test faces


def ytf_folder(data: Path, dest: Path, every: int = TRAIN_EVERY) -> Path:
    """Every ``every``-th face of ytf/train (photo and .pts) copied to ``dest``."""
    dest.mkdir()
    for image, pts in list(labelled_images(data / "ytf" / "train"))[::every]:
        shutil.copy(image, dest)
        shutil.copy(pts, dest)
    return dest


def mean_error(weights: Path, items: list[tuple[np.ndarray, tuple, np.ndarray]]) -> float:
    net = NetworkLandmarker(weights)
    return float(np.mean([normalised_errors(net.predict(image, [box]), truth[None])[0]
                          for image, box, truth in items]))


def test_adapt_learns_the_folders_markup_and_records_what_it_did(data, tmp_path):
    folder = ytf_folder(data, tmp_path / "ytf")
    weights = tmp_path / "adapted.pt"
    result = annotate("train", "adapt", folder, "--out", weights, "--epochs", "20", "--batch", "16", "-j", "1")
    assert '"faces": ' in result.stdout and not list(tmp_path.glob(".adapt-*"))

    test = []
    for image_path, pts in list(labelled_images(data / "ytf" / "test"))[::TEST_EVERY]:
        image, truth = read_image(image_path), read_68(pts)
        if face := face_containing(detect(image, detector="cnn"), truth):
            test.append((image, face.box, truth))
    assert len(test) >= 30
    before, after = mean_error(DEFAULT_WEIGHTS, test), mean_error(weights, test)
    assert after < 0.9 * before, (before, after)  # other people of the domain: at least 10% better

    shipped, adapted = checkpoint.load(DEFAULT_WEIGHTS), checkpoint.load(weights)
    assert set(adapted) == set(shipped) and set(adapted["meta"]) >= set(shipped["meta"]) | {"adapt"}
    for old, new in zip(shipped["stages"], adapted["stages"]):
        assert new["config"] == old["config"]
        assert {k: v.dtype for k, v in new["state_dict"].items()} == {k: v.dtype for k, v in old["state_dict"].items()}
        assert not all(torch.equal(new["state_dict"][k], v) for k, v in old["state_dict"].items())
    assert adapted["meta"]["stages"] == shipped["meta"]["stages"]  # the original fits stay recorded
    (record,) = adapted["meta"]["adapt"]
    assert record["command"].startswith("annotate train adapt ") and str(folder) in record["command"]
    used = {Path(f["photo"]).name for f in record["faces"] + record["held_out"]}
    assert used == {p.name for p in folder.glob("*.jpg")} and record["held_out"]
    assert adapted["meta"]["error_model"]["fitted_on"] != shipped["meta"]["error_model"]["fitted_on"]

    run = tmp_path / "run"
    annotate(folder, "--out", run, "--weights", weights, "-j", "1", "-q")
    assert len(list(run.glob("*.pts"))) >= 50


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> Path:
    """A pts and a json run of the test photos (7 faces), nobody's checks in them."""
    return both_runs(tmp_path_factory.mktemp("adapt"), data)


def checked_run(run: Path, dest: Path) -> tuple[Path, dict[tuple, np.ndarray]]:
    """A copy of ``run`` in ``dest`` with faces checked as a person does on the review page: the first
    accepted, a point of the second moved, the third marked "not a face" and the fourth "unusable";
    and the points saved of the two kept, by box."""
    run = Path(shutil.copytree(run, dest))
    faces = Faces(run)
    kept = {}
    for face, action in zip(faces.order, ["accept", "move", "not a face", "unusable"]):
        shown = faces.face(face)
        points = np.array(shown["points"])
        if action == "move":
            points[8] += (3.0, -2.0)
        saved = faces.save(face, shown["version"], "accept" if action == "move" else action, points.tolist())
        if action in ("accept", "move"):
            kept[tuple(saved["box"])] = np.array(saved["points"])
    return run, kept


@pytest.mark.parametrize("fmt", ["pts", "json"])
def test_an_output_folder_gives_only_its_checked_faces_with_their_saved_points(runs, tmp_path, fmt):
    run, kept = checked_run(runs / fmt, tmp_path / fmt)
    checked = [r for r in index_rows(run) if r["checked"]]
    assert sorted(r["checked"] for r in checked) == ["accepted", "moved", "not a face", "unusable"]
    faces, left_out = collect([run], (62,))
    assert left_out == {"marked 'not a face'": 1, "marked 'unusable'": 1, "not checked": 3}
    assert {f["box"]: f["points"].tolist() for f in faces} == {b: p.tolist() for b, p in kept.items()}
    moved = next(r for r in checked if r["checked"] == "moved")
    assert next(f["photo"] for f in faces if list(f["box"]) == [int(moved[k]) for k in ("left", "top", "right",
                                                                                          "bottom")]) \
        == moved["input_path"]
    assert all(f["crops"][62].shape == (124, 124, 3) for f in faces)


def test_same_command_twice_gives_the_same_weights_and_keeps_other_entries(runs, photos, tmp_path):
    run, _ = checked_run(runs / "pts", tmp_path / "pts")
    caches = [tmp_path / "mix_62.npz", tmp_path / "mix_128.npz"]  # faces in the network's own markup, at the
    annotate("train", "prepare", photos, "--out", tmp_path / "mix_{size}.npz", "--size", "62", "--size", "128",
             "--detector", "cnn", "-j", "1")  # stages' sizes: to keep what it knows
    start = checkpoint.load(DEFAULT_WEIGHTS)  # with an entry adapt does not know (like a roll estimator)
    start["later"] = {"config": {"arch": "cnn8"}, "state_dict": {"w": torch.arange(3.0)}}
    start["meta"]["later"] = {"fit": {"command": "annotate train fit --frame later"}}
    checkpoint.save(tmp_path / "start.pt", start)
    for name in ("a.pt", "b.pt"):
        annotate("train", "adapt", run, "--out", tmp_path / name, "--weights", tmp_path / "start.pt",
                 "--epochs", "2", "--batch", "2", "--mix", caches[0], "--mix", caches[1], "-j", "1")
    a, b = (checkpoint.load(tmp_path / n) for n in ("a.pt", "b.pt"))
    for sa, sb in zip(a["stages"], b["stages"]):
        assert all(torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"])
    assert a["meta"]["adapt"][0]["mix"] == [str(c) for c in caches]
    for key in set(start) - {"stages", "meta"}:  # every other entry kept as it was
        assert a[key]["config"] == start[key]["config"]
        assert all(torch.equal(v, a[key]["state_dict"][k]) for k, v in start[key]["state_dict"].items())
    assert all(a["meta"][k] == v for k, v in start["meta"].items() if k not in ("error_model", "adapt"))

    small = tmp_path / "small.npz"
    annotate("train", "prepare", photos, "--out", small, "--size", "32", "-j", "1")
    result = annotate("train", "adapt", run, "--out", tmp_path / "c.pt", "--mix", small, "-j", "1", check=False)
    assert result.returncode == 2 and "32-px crops" in result.stderr and not (tmp_path / "c.pt").exists()
    result = annotate("train", "adapt", run, "--out", tmp_path / "c.pt", "--mix", caches[0], "-j", "1", check=False)
    assert result.returncode == 2 and "62 and 128-px crops" in result.stderr  # a stage's size not covered


def test_a_folder_without_usable_faces_is_one_line_naming_it(data, tmp_path):
    photos = tmp_path / "photos"  # photos without any .pts
    photos.mkdir()
    shutil.copy(data / "300w" / "afw" / "134212_1.jpg", photos)
    good = ytf_folder(data, tmp_path / "ytf", every=1000)
    result = annotate("train", "adapt", good, photos, "--out", tmp_path / "w.pt", "-j", "1", check=False)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert str(photos) in line and "no 68-point face" in line and "Traceback" not in result.stderr
    assert not (tmp_path / "w.pt").exists()

    run = tmp_path / "run"  # an annotate run nobody has checked
    annotate(photos, "--out", run, "-j", "1", "-q")
    result = annotate("train", "adapt", run, "--out", tmp_path / "w.pt", "-j", "1", check=False)
    assert result.returncode == 2 and str(run) in result.stderr and "checked" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_ctrl_c_leaves_no_partial_weights_file(data, tmp_path):
    folder = ytf_folder(data, tmp_path / "ytf", every=200)
    weights = tmp_path / "out" / "adapted.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"an earlier file")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = ["train", "adapt", folder, "--out", weights, "--epochs", "1000", "-j", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "annotator", *map(str, command)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, deadline = "", time.time() + 120
    while "stage 1/" not in seen and time.time() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096).decode()  # the progress bar: training has started
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert weights.read_bytes() == b"an earlier file" and list(weights.parent.iterdir()) == [weights]
