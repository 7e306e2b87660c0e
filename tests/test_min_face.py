"""Detection scale chosen from the smallest face wanted: camera-size photos, --min-face, memory."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotator.detectors import Face, Scan, face_containing, plan_scan
from annotator.formats import read_pts
from conftest import annotate

LARGE = "1233476865_1"  # 2736 x 3582 camera photo, one face of about 1,400 px
SMALL = "1051618982_1"  # AFW photo, one face


def test_scan_rules():
    assert plan_scan(600, 800) == Scan(1.0, 1)  # an 800-px photo: the scan of --upsample 1
    assert plan_scan(600, 800, upsample=1) == plan_scan(3000, 4000, upsample=1) == Scan(1.0, 1)
    camera = plan_scan(3000, 4000)
    assert camera.upsample == 0 and camera.min_face == pytest.approx(120)  # 1/25 of the shorter side
    assert plan_scan(3000, 4000, min_face=20) == Scan(1.0, 2)
    assert plan_scan(3000, 4000, min_face=60).min_face == pytest.approx(60)
    assert plan_scan(3000, 4000, max_side=1000) == Scan(0.25, 1)  # --max-side alone: as before
    assert plan_scan(3000, 4000, max_side=1000, min_face=60) == Scan(0.25, 1)  # capped: finds 160 px
    with pytest.raises(ValueError):
        plan_scan(3000, 4000, upsample=1, min_face=60)


def faces_of(photo: Path, out: Path, *flags: str) -> list[dict]:
    annotate(photo, "--out", out, "--format", "json", *flags)
    return json.loads((out / photo.with_suffix(".json").name).read_text())["faces"]


def containing(faces: list[dict], points: np.ndarray) -> dict | None:
    """The JSON face whose box contains the centre of ``points``, as training and evaluation match them."""
    found = [Face(tuple(f["box"]), f["score"]) for f in faces]
    face = face_containing(found, points)
    return None if face is None else faces[found.index(face)]


@pytest.fixture(scope="module")
def large_with_small_face(data, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A camera photo at 0.6x (1642 x 2149) with a real 36-px face pasted in a corner; both faces' points.

    The default looks for faces of 1642 / 25 = 66 px and up there.
    """
    scale = 0.6
    photo = cv2.imread(str(data / "photos_large" / f"{LARGE}.jpg"))
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    large = (read_pts(data / "photos_large" / f"{LARGE}.pts") + 0.5) * scale - 0.5
    afw = cv2.imread(str(data / "300w" / "afw" / f"{SMALL}.jpg"))
    small = read_pts(data / "300w" / "afw" / f"{SMALL}.pts")
    shrink = 36 / (small.max(0) - small.min(0)).max()
    patch = cv2.resize(afw, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    photo[40:40 + patch.shape[0], 40:40 + patch.shape[1]] = patch
    path = tmp_path_factory.mktemp("in") / "composite.png"
    cv2.imwrite(str(path), photo)
    return path, large, (small + 0.5) * shrink - 0.5 + 40


@pytest.fixture(scope="module")
def default_faces(large_with_small_face, tmp_path_factory) -> list[dict]:
    return faces_of(large_with_small_face[0], tmp_path_factory.mktemp("default"))


def error(a: list, b: np.ndarray) -> float:
    """Mean point distance over sqrt(area of ``b``'s points' box)."""
    return float(np.linalg.norm(np.subtract(a, b), axis=1).mean() / np.sqrt(np.prod(b.max(0) - b.min(0))))


def test_min_face_finds_a_face_the_default_does_not_look_for(large_with_small_face, default_faces, tmp_path):
    photo, large, small = large_with_small_face
    finer = faces_of(photo, tmp_path / "finer", "--min-face", "30")
    assert containing(finer, small) is not None
    assert containing(default_faces, small) is None
    assert containing(finer, large) is not None


def test_default_landmarks_match_full_resolution_detection(large_with_small_face, default_faces, tmp_path):
    photo, large, _ = large_with_small_face
    full = faces_of(photo, tmp_path / "full", "--upsample", "0")  # the whole photo scanned
    ours, reference = containing(default_faces, large)["landmarks"], containing(full, large)["landmarks"]
    assert error(ours, np.array(reference)) < 0.01
    assert error(ours, large) < 0.08


def test_24_megapixel_photo_under_1_gb(data, tmp_path):
    photo = cv2.imread(str(data / "photos_large" / f"{LARGE}.jpg"))
    big = tmp_path / "in" / "big.jpg"
    big.parent.mkdir()
    cv2.imwrite(str(big), cv2.resize(photo, (4000, 6000), interpolation=cv2.INTER_LINEAR))
    out = tmp_path / "out"
    # -j 1 annotates in the annotate process itself: its peak resident memory is the worker's
    measure = ("import resource, subprocess, sys; "
               "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "annotator", str(big),
                             "--out", str(out), "-j", "1", "--format", "json"],
                            capture_output=True, text=True, check=True, timeout=600)
    assert int(result.stdout) * 1024 < 1e9
    assert json.loads((out / "big.json").read_text())["faces"]
