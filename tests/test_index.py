"""Per-face expected_error and the run index DIR/faces.csv, on real runs of the CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from annotator.index import COLUMNS
from conftest import annotate, box_of, index_rows


def faceless_photo(photos: Path, data: Path) -> Path:
    """A real photo's background (the top-left corner of an AFW photo: no face)."""
    image = cv2.imread(str(data / "300w" / "afw" / "1051618982_1.jpg"))
    cv2.imwrite(str(photos / "background.jpg"), image[:300, :180])
    return photos / "background.jpg"


def test_json_faces_carry_expected_error_and_index_matches(photos, tmp_path):
    out = tmp_path / "out"
    annotate(photos, "--out", out, "--format", "json", "-j", "1")
    faces, sizes = {}, {}
    for path in out.glob("*.json"):
        record = json.loads(path.read_text())
        sizes[path.name] = [str(record["width"]), str(record["height"])]
        for face in record["faces"]:
            assert list(face) == ["box", "score", "detector", "expected_error", "roll", "landmarks", "point_errors"]
            assert -180 < face["roll"] <= 180
            assert face["detector"] == "hog"  # as conftest's annotate runs it
            assert isinstance(face["expected_error"], float) and 0 < face["expected_error"] < 1
            assert len(face["point_errors"]) == 68 and all(0 < e < 1 for e in face["point_errors"])
            faces[path.name, tuple(face["box"])] = face
    rows = index_rows(out)
    assert len(rows) == len(faces) == 7
    for row in rows:
        face = faces[row["output"], tuple(box_of(row))]
        assert float(row["score"]) == face["score"] and row["detector"] == face["detector"]
        assert float(row["expected_error"]) == face["expected_error"] and float(row["roll"]) == face["roll"]
        assert row["image"] == Path(row["output"]).stem + ".jpg"
        assert Path(row["input_path"]) == (photos / row["image"]).absolute()
        assert [row["width"], row["height"]] == sizes[row["output"]]  # the photo as displayed


def test_pts_index_resume_and_overwrite(photos, tmp_path, data):
    out = tmp_path / "out"
    faceless_photo(photos, data)
    shutil.move(photos / "1634816_1.jpg", tmp_path / "later.jpg")
    annotate(photos, "--out", out)
    rows = index_rows(out)
    assert sorted(r["output"] for r in rows if r["output"]) == sorted(p.name for p in out.glob("*.pts"))
    blank = [r for r in rows if r["image"] == "background.jpg"]
    assert blank == [{**{k: "" for k in COLUMNS}, "image": "background.jpg",
                      "input_path": str((photos / "background.jpg").absolute()), "width": "180", "height": "300"}]
    assert all(r["expected_error"] for r in rows if r["output"])

    shutil.move(tmp_path / "later.jpg", photos / "1634816_1.jpg")
    annotate(photos, "--out", out)  # resumes: appends the new image's row only
    again = index_rows(out)
    assert again[:len(rows)] == rows
    assert [r["output"] for r in again[len(rows):]] == ["1634816_1.pts"]

    annotate(photos, "--out", out, "--overwrite")
    rewritten = index_rows(out)
    assert sorted(map(str, rewritten)) == sorted(map(str, again))  # same rows, none twice


def test_dlib_faces_have_no_expected_error(photos, tmp_path):
    out = tmp_path / "out"
    annotate(photos / "1051618982_1.jpg", "--out", out, "--format", "json", "--landmarker", "dlib")
    assert json.loads((out / "1051618982_1.json").read_text())["faces"][0]["expected_error"] is None
    assert index_rows(out)[0]["expected_error"] == ""
    result = annotate("review", out, "--worst", "5", "--list", check=False)
    assert result.returncode != 0 and "--landmarker dlib" in result.stderr


def test_min_score_drops_a_low_scoring_detection(data, tmp_path):
    # AFW 4584451140: two annotated faces (HOG scores 0.52 and 0.29) and foliage detected at 0.24
    photo = data / "300w" / "afw" / "4584451140_1.jpg"
    annotate(photo, "--out", tmp_path / "all", "--format", "json", "--detector", "hog")
    annotate(photo, "--out", tmp_path / "kept", "--format", "json", "--min-score", "0.25", "--detector", "hog")
    every = json.loads((tmp_path / "all" / "4584451140_1.json").read_text())["faces"]
    kept = json.loads((tmp_path / "kept" / "4584451140_1.json").read_text())["faces"]
    assert any(f["score"] < 0.25 for f in every)
    assert kept == [f for f in every if f["score"] >= 0.25] and len(kept) == 2
    assert [float(r["score"]) for r in index_rows(tmp_path / "kept")] == [f["score"] for f in kept]


@pytest.mark.parametrize("added", [["detector", "checked", "checked_at", "moved_px"], ["checked", "checked_at", "moved_px"],
                                   []], ids=["before-detector", "before-checked", "before-size"])
def test_an_index_of_an_earlier_version_is_upgraded_on_resume(photos, tmp_path, added):
    out = tmp_path / "out"
    shutil.move(photos / "1634816_1.jpg", tmp_path / "later.jpg")
    annotate(photos, "--out", out)
    rows = index_rows(out)
    old = [c for c in COLUMNS if c not in added + ["width", "height"]]  # the layout before those columns
    lines = [",".join(old)] + [",".join(r[c] for c in old) for r in rows]
    (out / "faces.csv").write_text("\n".join(lines) + "\n")

    shutil.move(tmp_path / "later.jpg", photos / "1634816_1.jpg")
    annotate(photos, "--out", out)  # resumes: the old rows kept, in today's columns
    again = index_rows(out)
    assert again[:len(rows)] == [r | {"width": "", "height": ""} for r in rows]  # sizes unknown: not checked
    assert len(again) == len(rows) + 1 and again[-1]["width"]
