"""The real annotate command on real photos: names, formats, resume, parallelism, failures."""
from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest

from annotator.formats import read_pts
from conftest import annotate, index_rows, outputs, summary_line


def test_pts_per_face_near_ground_truth(photos, tmp_path):
    out = tmp_path / "out"
    result = annotate(photos, "--out", out, "-j", "1")
    assert summary_line(result.stderr).startswith("4 images: ") and "0 failed" in summary_line(result.stderr)
    for stem in ("1051618982_1", "134212_1", "1634816_1"):
        truth = read_pts(photos / f"{stem}.pts")
        found = [read_pts(p) for p in out.glob(f"{stem}*.pts")]
        # one of the faces written for the photo is the annotated one, within 8% of its size
        span = np.sqrt(np.prod(truth.max(0) - truth.min(0)))
        assert min(np.linalg.norm(f - truth, axis=1).mean() / span for f in found) < 0.08


def test_several_faces_named_by_score(photos, tmp_path):
    out = tmp_path / "out"
    annotate(photos / "1130084326_1.jpg", "--out", out, "--format", "json")
    faces = json.loads((out / "1130084326_1.json").read_text())["faces"]
    assert len(faces) == 3
    assert [f["score"] for f in faces] == sorted((f["score"] for f in faces), reverse=True)
    annotate(photos / "1130084326_1.jpg", "--out", out)
    for i, face in enumerate(faces, 1):
        pts = read_pts(out / f"1130084326_1_{i}.pts")  # 0-based after reading
        assert np.allclose(pts, face["landmarks"], atol=1e-3)
    assert not (out / "1130084326_1.pts").exists()


def test_two_faces_side_by_side(photos, tmp_path):
    a = cv2.imread(str(photos / "1051618982_1.jpg"))
    b = cv2.imread(str(photos / "1634816_1.jpg"))
    h = max(a.shape[0], b.shape[0])
    pad = lambda im: cv2.copyMakeBorder(im, 0, h - im.shape[0], 0, 0, cv2.BORDER_CONSTANT)
    pasted = tmp_path / "in" / "pair.png"
    pasted.parent.mkdir()
    cv2.imwrite(str(pasted), np.hstack([pad(a), pad(b)]))
    out = tmp_path / "out"
    annotate(pasted, "--out", out)
    assert sorted(p.name for p in out.glob("*.pts")) == ["pair_1.pts", "pair_2.pts"]
    xs = [read_pts(out / f"pair_{i}.pts")[:, 0].mean() for i in (1, 2)]
    assert (min(xs) < a.shape[1]) and (max(xs) > a.shape[1])  # one face on each half


def test_pts_layout_byte_for_byte(photos, tmp_path):
    """Every byte is the data set's layout: header, 68 rows of two 3-decimal numbers, footer, LF endings."""
    annotate(photos / "1051618982_1.jpg", "--out", tmp_path / "pts")
    annotate(photos / "1051618982_1.jpg", "--out", tmp_path / "json", "--format", "json")
    written = (tmp_path / "pts" / "1051618982_1.pts").read_bytes()
    layout = rb"version: 1\nn_points: 68\n\{\n(?:-?\d+\.\d{3} -?\d+\.\d{3}\n){68}\}\n"
    assert re.fullmatch(layout, (photos / "1051618982_1.pts").read_bytes())  # 300-W's own file
    assert re.fullmatch(layout, written)
    rows = np.array([line.split() for line in written.decode().splitlines()[3:71]], dtype=float)
    landmarks = json.loads((tmp_path / "json" / "1051618982_1.json").read_text())["faces"][0]["landmarks"]
    assert np.abs(rows - 1 - np.array(landmarks)).max() <= 1.5e-3


def test_json_is_pts_minus_one(photos, tmp_path):
    annotate(photos, "--out", tmp_path / "pts")
    annotate(photos, "--out", tmp_path / "json", "--format", "json")
    record = json.loads((tmp_path / "json" / "1051618982_1.json").read_text())
    assert record["image"] == "1051618982_1.jpg" and record["width"] > 0 and record["height"] > 0
    face = record["faces"][0]
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 68
    pts_file = np.loadtxt(tmp_path / "pts" / "1051618982_1.pts", skiprows=3, max_rows=68)
    assert np.allclose(np.array(face["landmarks"]), pts_file - 1, atol=1.5e-3)


def test_parallel_output_identical(photos, tmp_path):
    annotate(photos, "--out", tmp_path / "j1", "-j", "1")
    annotate(photos, "--out", tmp_path / "j2", "-j", "2")
    assert outputs(tmp_path / "j1") == outputs(tmp_path / "j2") != {}


def test_resume_skips_done_and_retries_failed(photos, tmp_path):
    out = tmp_path / "out"
    (photos / "broken.jpg").write_bytes(b"")
    first = annotate(photos, "--out", out, check=False)
    assert first.returncode != 0
    done = {p: p.stat().st_mtime_ns for p in out.glob("*.pts")}
    (photos / "broken.jpg").unlink()
    shutil.copy(photos / "1634816_1.jpg", photos / "broken.jpg")  # now readable: retried
    second = annotate(photos, "--out", out)
    assert "1 image:" in second.stderr and "4 already done" in second.stderr
    assert {p: p.stat().st_mtime_ns for p in done} == done
    assert (out / "broken.pts").exists()
    third = annotate(photos, "--out", out, "--overwrite")
    assert summary_line(third.stderr).startswith("5 images: ")


def test_bad_files_logged_and_run_goes_on(photos, tmp_path):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.jpg").write_text("not an image\n")
    data = (photos / "1634816_1.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(data[: len(data) // 2])
    cv2.imwrite(str(photos / "float.tiff"), np.zeros((64, 64, 3), np.float32))  # 32-bit samples: OpenCV warns
    out = tmp_path / "out"
    result = annotate(photos, "--out", out, check=False)
    assert result.returncode == 1
    log = (out / "failures.log").read_text()
    for name, reason in [("empty.jpg", "empty"), ("text.jpg", "not a decodable image"),
                         ("truncated.jpg", "truncated"), ("float.tiff", "not a decodable image")]:
        assert name in log and reason in log
        assert any(name in line and reason in line for line in result.stderr.splitlines())
    assert "WARN" not in result.stderr  # one line per bad file, ours
    assert (out / "1051618982_1.pts").exists()
    assert "4 failed" in result.stderr


def test_same_stem_different_extensions(photos, tmp_path):
    shutil.copy(photos / "1051618982_1.jpg", photos / "1634816_1.png")
    shutil.move(photos / "134212_1.jpg", photos / "Face.JPG")  # the same name on macOS and Windows as face.png
    shutil.copy(photos / "1051618982_1.jpg", photos / "face.png")
    out = tmp_path / "out"
    annotate(photos, "--out", out)
    assert (out / "1634816_1.jpg.pts").exists() and (out / "1634816_1.png.pts").exists()
    assert (out / "Face.JPG_1.pts").exists() and (out / "face.png.pts").exists()
    assert (out / "1051618982_1.pts").exists()


def test_tree_mirrored_and_output_inside_input_not_walked(photos, tmp_path):
    sub = photos / "nested" / "deeper"
    sub.mkdir(parents=True)
    shutil.move(photos / "134212_1.jpg", sub / "134212_1.JPG")
    out = photos / "annotations"
    annotate(photos, "--out", out, "--preview", out / "preview")
    assert list((out / "nested" / "deeper").glob("134212_1*.pts"))
    again = annotate(photos, "--out", out, "--overwrite")
    assert summary_line(again.stderr).startswith("4 images: ")  # the previews under --out were not taken as input


def test_an_output_folder_that_is_an_input_folder_is_refused_before_anything_is_written(photos, tmp_path):
    (tmp_path / "link").symlink_to(photos)
    before = sorted(photos.iterdir())
    for args in (["--out", photos], ["--out", tmp_path / "link"], ["--out", tmp_path / "out", "--preview", photos]):
        result = annotate(photos, *args, check=False)
        assert result.returncode == 2 and "is the input folder" in result.stderr  # was: 0 images, and exit 0
        assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(photos.iterdir()) == before  # no index, journal or lock among the photos
    assert not (tmp_path / "out").exists()


def test_two_folders_with_the_same_file_names_keep_their_own_files(photos, tmp_path):
    # what two camera cards look like: IMG_0001.JPG in each; and a folder given again inside another
    cards = tmp_path / "cards"
    for card, stem in (("2023", "1051618982_1"), ("2024", "134212_1")):
        (cards / card).mkdir(parents=True)
        shutil.copy(photos / f"{stem}.jpg", cards / card / "IMG_0001.JPG")
    out = tmp_path / "out"
    result = annotate(cards / "2023", cards / "2024", cards / "2024", cards / "2024" / "IMG_0001.JPG", "--out", out,
                      "--format", "json")
    assert summary_line(result.stderr).startswith("2 images: ")  # given twice, or inside a folder given: once
    for card, stem in (("2023", "1051618982_1"), ("2024", "134212_1")):
        alone = tmp_path / f"alone_{card}"
        annotate(photos / f"{stem}.jpg", "--out", alone, "--format", "json")
        faces = json.loads((out / card / "IMG_0001.json").read_text())
        assert faces["image"] == f"{card}/IMG_0001.JPG"
        assert faces["faces"] == json.loads((alone / f"{stem}.json").read_text())["faces"]
    assert {row["image"] for row in index_rows(out)} == {"2023/IMG_0001.JPG", "2024/IMG_0001.JPG"}


def test_dlib_landmarker_agrees_with_network(photos, tmp_path):
    annotate(photos / "1051618982_1.jpg", "--out", tmp_path / "net")
    annotate(photos / "1051618982_1.jpg", "--out", tmp_path / "dlib", "--landmarker", "dlib")
    ours, theirs = (read_pts(tmp_path / d / "1051618982_1.pts") for d in ("net", "dlib"))
    span = np.sqrt(np.prod(theirs.max(0) - theirs.min(0)))
    assert np.linalg.norm(ours - theirs, axis=1).mean() / span < 0.06


def test_unwritable_output_is_a_clear_error(photos, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = annotate(photos, "--out", blocker / "out", check=False)
    assert result.returncode != 0 and "not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags", [["--max-side", "300"], ["--upsample", "0"], ["--max-faces", "1"]])
def test_detector_options(photos, tmp_path, flags):
    out = tmp_path / "out"
    annotate(photos / "1130084326_1.jpg", "--out", out, "--format", "json", *flags)
    faces = json.loads((out / "1130084326_1.json").read_text())["faces"]
    assert 1 <= len(faces) <= 3
    if flags[0] == "--max-faces":
        assert len(faces) == 1
