"""``annotate review``: sheets of the right size, faces in the documented order, points read right."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from annotator.review import GAP, LABEL, TILE, face_points, sheet_shape, tile
from conftest import annotate, both_runs, box_of, index_rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """The same AFW photos (7 faces) annotated as JSON and as .pts."""
    return both_runs(tmp_path_factory.mktemp("review"), data)


def listed(out, *flags) -> list[tuple[str, list[int]]]:
    lines = annotate("review", out, *flags, "--list").stdout.splitlines()
    return [(line.split("\t")[1], [int(v) for v in line.split("\t")[3].split(",")]) for line in lines]


@pytest.mark.parametrize("order", ["--worst", "--best"])
def test_list_is_ranked_by_expected_error(runs, order):
    rows = sorted(index_rows(runs / "json"), key=lambda r: float(r["expected_error"]), reverse=order == "--worst")
    expected = [(str(runs / "json" / r["output"]), box_of(r)) for r in rows[:5]]
    assert listed(runs / "json", order, "5") == expected


def test_sheet_pages_have_the_expected_size(runs, tmp_path):
    result = annotate("review", runs / "pts", "--worst", "7", "--out", tmp_path / "sheet.jpg", "--per-page", "4")
    assert "sheet-1.jpg" in result.stderr and "sheet-2.jpg" in result.stderr
    assert cv2.imread(str(tmp_path / "sheet-1.jpg")).shape[:2] == sheet_shape(4)
    assert cv2.imread(str(tmp_path / "sheet-2.jpg")).shape[:2] == sheet_shape(3)
    annotate("review", runs / "json", "--best", "2", "--out", tmp_path / "best.png")
    assert cv2.imread(str(tmp_path / "best.png")).shape[:2] == sheet_shape(2) == (TILE + LABEL + GAP, 2 * (TILE + GAP))
    assert not (tmp_path / "sheet.jpg").exists() and not (tmp_path / "sheet-3.jpg").exists()


def test_a_sheet_named_as_a_photo_of_the_run_is_refused(runs, tmp_path):
    shutil.copytree(runs / "photos", tmp_path / "photos")
    shutil.copytree(runs / "pts", tmp_path / "pts")
    index = tmp_path / "pts" / "faces.csv"
    index.write_text(index.read_text().replace(str(runs / "photos"), str(tmp_path / "photos")))
    photo = tmp_path / "photos" / "1051618982_1.jpg"
    before = photo.read_bytes()
    result = annotate("review", tmp_path / "pts", "--worst", "3", "--out", photo, check=False)
    assert result.returncode == 1 and "is a photo of the run" in result.stderr  # was: the photo replaced
    assert photo.read_bytes() == before


def test_sheet_tiles_are_in_list_order(runs, tmp_path):
    """Each tile of the sheet is the face at that rank, worst first, left to right."""
    annotate("review", runs / "json", "--worst", "3", "--out", tmp_path / "worst.png")
    page = cv2.imread(str(tmp_path / "worst.png"))
    rows = sorted(index_rows(runs / "json"), key=lambda r: -float(r["expected_error"]))
    h, w = TILE + LABEL, TILE
    for i, row in enumerate(rows[:3]):
        x = i * (TILE + GAP)
        assert np.array_equal(page[:h, x:x + w], tile(runs / "json", row, upright=True))
    assert not np.array_equal(page[:h, :w], tile(runs / "json", rows[3], upright=True))


def test_points_read_back_from_pts_and_json_agree(runs):
    json_rows = {tuple(box_of(r)): r for r in index_rows(runs / "json")}
    for row in index_rows(runs / "pts"):
        from_pts = face_points(runs / "pts", row)  # 1-based file, 0-based points
        from_json = face_points(runs / "json", json_rows[tuple(box_of(row))])
        assert from_pts.shape == (68, 2) and np.allclose(from_pts, from_json, atol=2e-3)


def test_sheet_rings_the_least_sure_points(runs, tmp_path):
    """A tile rings (in yellow) the points whose per-point expected error in the JSON is above UNSURE_POINT."""
    import json
    import shutil
    from annotator.draw import UNSURE, UNSURE_POINT
    out = tmp_path / "json"
    shutil.copytree(runs / "json", out)
    row = index_rows(out)[0]
    path = out / row["output"]

    def ringed(unsure: list[int]) -> int:
        record = json.loads(path.read_text())
        for f in record["faces"]:
            f["point_errors"] = [2 * UNSURE_POINT if i in unsure else UNSURE_POINT / 2 for i in range(68)]
        path.write_text(json.dumps(record))
        return int((np.abs(tile(out, row)[:TILE].astype(int) - UNSURE).sum(2) < 60).sum())

    assert ringed([]) == 0 and ringed([8]) > 20 and ringed([8, 30, 45]) > 2 * ringed([8])
