"""What a run leaves in the output folder and says: current files only, counts that add up."""
from __future__ import annotations

import re
import shutil

import cv2

from conftest import PHOTOS, annotate

THREE_FACES = "1130084326_1"


def test_redone_image_keeps_only_its_new_files(photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / f"{THREE_FACES}.jpg", folder / "group.jpg")
    shutil.copy(photos / f"{PHOTOS[0]}.jpg", folder / "solo.jpg")
    out = tmp_path / "out"
    annotate(folder, "--out", out)
    assert sorted(p.name for p in out.glob("*.pts")) == ["group_1.pts", "group_2.pts", "group_3.pts", "solo.pts"]
    annotate(folder, "--out", out, "--overwrite", "--max-faces", "1")
    assert sorted(p.name for p in out.glob("*.pts")) == ["group.pts", "solo.pts"]
    annotate(folder, "--out", out, "--overwrite")
    assert sorted(p.name for p in out.glob("*.pts")) == ["group_1.pts", "group_2.pts", "group_3.pts", "solo.pts"]


def test_an_image_named_like_anothers_face_keeps_its_own_file(photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / f"{THREE_FACES}.jpg", folder / "group.jpg")
    shutil.copy(photos / f"{PHOTOS[0]}.jpg", folder / "group_1.jpg")  # named like group.jpg's first face
    out = tmp_path / "out"
    annotate(folder, "--out", out)
    assert sorted(p.name for p in out.glob("*.pts")) == [
        "group.jpg_1.pts", "group.jpg_2.pts", "group.jpg_3.pts", "group_1.pts"]
    alone = tmp_path / "alone"
    annotate(folder / "group_1.jpg", "--out", alone)
    assert (out / "group_1.pts").read_bytes() == (alone / "group_1.pts").read_bytes()
    annotate(folder, "--out", out, "--overwrite", "--max-faces", "1")  # group.jpg's old faces go, group_1's stays
    assert sorted(p.name for p in out.glob("*.pts")) == ["group.jpg.pts", "group_1.pts"]


def test_no_empty_leftovers_and_a_failure_log_only_on_failure(photos, tmp_path):
    out = tmp_path / "out"
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    annotate(photos, "--out", out, check=False)
    assert "broken.jpg" in (out / "failures.log").read_text()
    (photos / "broken.jpg").unlink()
    annotate(photos, "--out", out, "--overwrite")
    assert sorted(p.name for p in out.iterdir() if not p.suffix == ".pts") == [
        ".annotate-done-pts.log", ".annotate-lock", "faces.csv"]  # resume journal, run lock, run index


def test_summary_counts_add_up_and_progress_shows_one_rate(photos, tmp_path):
    shutil.copy(photos / f"{PHOTOS[0]}.jpg", photos / "again.jpg")
    (photos / "blank.png").write_bytes(cv2.imencode(".png", cv2.imread(str(photos / "again.jpg")) * 0)[1])
    (photos / "broken.jpg").write_bytes(b"")
    out = tmp_path / "out"
    result = annotate(photos, "--out", out, check=False)
    summary = re.search(r"(\d+) images: (\d+) with (\d+) faces, (\d+) without a face, (\d+) failed", result.stderr)
    total, with_faces, _, without, failed = map(int, summary.groups())
    assert (total, failed, without) == (7, 1, 1) and with_faces + without + failed == total
    assert "\n1 image failed; see" in result.stderr
    assert all(part.count("/s") <= 1 for part in re.split(r"[\r\n]", result.stderr))
    again = annotate(photos, "--out", out, check=False)
    assert "1 image: 0 with 0 faces, 0 without a face, 1 failed; 6 already done" in again.stderr


def test_every_format_opencv_reads_is_walked(photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    face = cv2.imread(str(photos / f"{PHOTOS[0]}.jpg"))
    for ext in (".ppm", ".pgm", ".PNM", ".ras"):
        image = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY) if ext == ".pgm" else face
        assert cv2.imwrite(str(folder / f"face{ext.lower()}_{ext[1:]}{ext}"), image)
    out = tmp_path / "out"
    assert "4 images: 4 with" in annotate(folder, "--out", out).stderr
    assert len(list(out.glob("*.pts"))) == 4
    (folder / "bomb.ppm").write_bytes(b"P6\n# sized from the header\n100000 100000\n255\n" + bytes(64))
    bomb = annotate(folder, "--out", out, check=False)
    assert bomb.returncode == 1 and "bomb.ppm: 100000x100000 pixels is over the limit" in bomb.stderr
