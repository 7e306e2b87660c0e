"""The detectors: dlib's own model files, and our torch run of dlib's CNN detector against dlib's."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest

from annotator.crop import face_roll
from annotator.detectors import Face, cnn, detect, face_containing, hog, same_face, turn_back
from annotator.detectors.mmod import MMODDetector
from annotator.formats import read_pts
from annotator.training.groundtruth import turned
from annotator.training.metrics import normalised_errors
from conftest import annotate

# AFW photos: a face in profile and a frontal one; three faces (dlib's own run takes ~5 s a photo)
CNN_PHOTOS = ["1051618982_1", "1130084326_1"]


def dlib_models() -> Path:
    return Path(importlib.util.find_spec("face_recognition_models").origin).parent / "models"


def test_packaged_detectors_are_dlibs_own(tmp_path):
    dlib.get_frontal_face_detector().save(str(tmp_path / "detector.svm"))
    assert (tmp_path / "detector.svm").read_bytes() == hog.MODEL_FILE.read_bytes()
    assert (dlib_models() / "mmod_human_face_detector.dat").read_bytes() == cnn.MODEL_FILE.read_bytes()


@pytest.mark.parametrize("stem", CNN_PHOTOS)
def test_torch_cnn_gives_dlibs_boxes_and_scores(data, stem):
    rgb = cv2.cvtColor(cv2.imread(str(data / "300w" / "afw" / f"{stem}.jpg")), cv2.COLOR_BGR2RGB)
    theirs = dlib.cnn_face_detection_model_v1(str(cnn.MODEL_FILE))(rgb, 0)
    ours = MMODDetector(cnn.MODEL_FILE)(rgb)
    assert len(ours) == len(theirs) > 0
    for (box, score), d in zip(ours, theirs):
        assert box == (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom())
        assert score == pytest.approx(d.confidence, abs=1e-3)


def test_cnn_finds_boxes_in_the_photos_pixels_at_any_scan(data):
    image = cv2.imread(str(data / "300w" / "afw" / "1130084326_1.jpg"))
    big = detect(image, min_face=40, detector="cnn")  # the photo upsampled twice
    small = detect(cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), min_face=20,
                   detector="cnn")
    assert len(big) == len(small) == 3 and {f.detector for f in big} == {"cnn"}
    for a, b in zip(sorted(f.box for f in big), sorted(f.box for f in small)):
        assert max(abs(u - 2 * v) for u, v in zip(a, b)) <= 12  # the same faces, at twice the size


def test_the_default_cnn_detector_finds_a_turned_face_that_hog_misses(photos, tmp_path):
    photo = photos / "1051618982_1.jpg"  # a frontal face and, on the right, a man in profile
    for detector in (None, "hog"):  # None: annotate's default
        annotate(photo, "--out", tmp_path / str(detector), "--format", "json", "-j", "1", detector=detector)
    cnn = json.loads((tmp_path / "None" / "1051618982_1.json").read_text())["faces"]
    hog = json.loads((tmp_path / "hog" / "1051618982_1.json").read_text())["faces"]
    assert [f["detector"] for f in cnn] == ["cnn", "cnn"] and [f["detector"] for f in hog] == ["hog"]
    (profile,) = [f for f in cnn if f["box"][0] > hog[0]["box"][2]]
    (frontal,) = [f for f in cnn if f is not profile]
    # the frontal face reads as good; the strong profile (half of the markup out of sight) as less sure
    assert frontal["expected_error"] < 0.08 and profile["expected_error"] > 2 * frontal["expected_error"]


def test_an_unusable_device_is_one_clear_error(photos, tmp_path):
    result = annotate(photos / "1130084326_1.jpg", "--out", tmp_path / "out", "--device", "nonsense",
                      check=False)
    assert result.returncode == 1 and "on nonsense" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_any_orientation_adds_turned_faces_without_doubling_upright_ones(data):
    image = cv2.imread(str(data / "300w" / "afw" / "1130084326_1.jpg"))  # three upright faces
    upright = detect(image, detector="cnn")
    turned = detect(image, detector="cnn", orientation="any")
    assert {f.box for f in upright} <= {f.box for f in turned}
    assert not any(same_face(a.box, b.box) for i, a in enumerate(turned) for b in turned[i + 1:])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_small_face_is_found_in_a_photo_turned_by_any_quarter_as_in_the_upright_photo(data, k):
    # a YouTube frame (100 x 128 px) whose face is near the smallest a default run looks for (40 px): the
    # turned scans look as closely as the upright one, so the photo turned by k quarter turns gives the same box
    image = cv2.imread(str(data / "ytf" / "test" / "William_McDonough_01.jpg"))
    (upright,) = detect(image, detector="cnn")
    turned_photo = np.ascontiguousarray(np.rot90(image, k))
    boxes = [turn_back(f.box, k, image.shape) for f in detect(turned_photo, detector="cnn", orientation="any")]
    assert upright.box in boxes


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_face_turned_by_any_quarter_gets_usable_points_and_its_roll(data, tmp_path, turn):
    image, truth = turned(cv2.imread(str(data / "300w" / "afw" / "134212_1.jpg")),
                          read_pts(data / "300w" / "afw" / "134212_1.pts"), turn)
    cv2.imwrite(str(tmp_path / "turned.png"), image)
    for orientation in ("any", "upright"):
        annotate(tmp_path / "turned.png", "--out", tmp_path / orientation, "--format", "json", "-j", "1",
                 "--orientation", orientation, detector=None)
    found = {o: face_at(json.loads((tmp_path / o / "turned.json").read_text())["faces"], truth)
             for o in ("any", "upright")}  # the face whose box contains the ground truth's centre
    assert found["any"] is not None
    error = normalised_errors(np.array([found["any"]["landmarks"]]), truth[None])[0]
    assert error < 0.05 and found["any"]["expected_error"] < 0.08
    assert abs((found["any"]["roll"] - face_roll(truth) + 180) % 360 - 180) < 15
    if turn == 180:  # upright only: no face there, or one with the points laid upside down
        assert found["upright"] is None or normalised_errors(
            np.array([found["upright"]["landmarks"]]), truth[None])[0] > 0.08


def face_at(faces: list[dict], truth: np.ndarray) -> dict | None:
    """The JSON face whose box contains the centre of the ground-truth points (as ``face_containing``)."""
    boxes = [Face(tuple(f["box"]), f["score"]) for f in faces]
    face = face_containing(boxes, truth)
    return None if face is None else faces[boxes.index(face)]
