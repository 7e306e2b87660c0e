"""``annotate export``: the files load in their real readers (pycocotools, dlib) with the run's points."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
from PIL import Image

from annotator.export.dlib_xml import pixel
from annotator.images import read_image
from annotator.review import face_points
from annotator.training.groundtruth import labelled_images, read_68
from conftest import PHOTOS, annotate, box_of, index_rows, outputs

N_PHOTOS = 24  # AFW photos in the run: about 45 faces
ROTATED = "rotated"  # a photo stored turned, with an EXIF orientation that turns it back


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data) -> Path:
    """One pts run of N_PHOTOS AFW photos and an EXIF-rotated one; a json run of the PHOTOS."""
    root = tmp_path_factory.mktemp("export")
    photos, few = root / "photos", root / "few"
    photos.mkdir(), few.mkdir()
    stems = sorted({p.stem for p in (data / "300w" / "afw").glob("*_1.jpg")} - set(PHOTOS))
    for stem in PHOTOS + stems[:N_PHOTOS - len(PHOTOS)]:
        shutil.copy(data / "300w" / "afw" / f"{stem}.jpg", photos)
    for stem in PHOTOS:
        shutil.copy(data / "300w" / "afw" / f"{stem}.jpg", few)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: upright again
    with Image.open(data / "300w" / "afw" / f"{PHOTOS[0]}.jpg") as image:
        image.rotate(90, expand=True).save(photos / f"{ROTATED}.jpg", exif=exif, quality=95)
    annotate(photos, "--out", root / "pts", "-j", "2", "-q")
    annotate(few, "--out", root / "json", "--format", "json", "-j", "1", "-q")
    assert ROTATED in [Path(r["input_path"]).stem for r in index_rows(root / "pts") if r["left"]]  # found upright
    return root


def faces(out: Path) -> list[tuple[dict[str, str], np.ndarray]]:
    """The run's face rows and their 0-based points, in index order."""
    return [(row, face_points(out, row)) for row in index_rows(out) if row["left"]]


def export(out: Path, *args: str | Path, check: bool = True):
    return annotate("export", out, *args, check=check)


def test_coco_loads_in_pycocotools_with_the_runs_points(runs, tmp_path):
    from pycocotools.coco import COCO
    export(runs / "pts", "--to", "coco", "--out", tmp_path / "coco" / "faces.json")
    coco = COCO(str(tmp_path / "coco" / "faces.json"))
    expected = faces(runs / "pts")
    assert len(coco.getAnnIds()) == len(expected)
    by_photo: dict[str, list] = {}
    for row, points in expected:
        by_photo.setdefault(str(Path(row["input_path"]).resolve()), []).append((row, points))
    assert len(coco.getImgIds()) == len(by_photo)
    for image in coco.loadImgs(coco.getImgIds()):
        path = (tmp_path / "coco" / image["file_name"]).resolve()
        assert not Path(image["file_name"]).is_absolute()
        assert (image["height"], image["width"]) == read_image(path).shape[:2]  # as displayed, also the rotated one
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"], catIds=coco.getCatIds(catNms=["face"])))
        assert len(anns) == len(by_photo[str(path)])
        for ann, (row, points) in zip(anns, by_photo[str(path)]):
            keypoints = np.array(ann["keypoints"]).reshape(68, 3)
            assert np.allclose(keypoints[:, :2] - 0.5, points, atol=5e-4) and set(keypoints[:, 2]) == {2}
            lo, hi = points.min(0) + 0.5, points.max(0) + 0.5
            assert np.allclose(ann["bbox"], [*lo, *(hi - lo)], atol=1e-3)
            left, top, right, bottom = box_of(row)
            assert ann["detector_bbox"] == [left, top, right - left + 1, bottom - top + 1]
    category = coco.loadCats(coco.getCatIds())[0]
    assert len(category["keypoints"]) == 68 and len(category["skeleton"]) == 16 + 4 + 4 + 3 + 4 + 6 + 6 + 12 + 8


def test_coco_scores_itself_perfectly_in_cocoeval(runs, tmp_path):
    """COCOeval reads the file's boxes, areas and keypoints: the annotations as results score AP 1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    export(runs / "pts", "--to", "coco", "--out", tmp_path / "faces.json")
    truth = COCO(str(tmp_path / "faces.json"))
    results = truth.loadRes([{**a, "score": 1.0} for a in truth.loadAnns(truth.getAnnIds())])
    evaluation = COCOeval(truth, results, iouType="keypoints")
    evaluation.params.kpt_oks_sigmas = np.full(68, 0.025)
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def dlib_boxes(xml: Path) -> dict[Path, list]:
    """The boxes of each image of a dlib XML file, read by dlib, keyed by the image's resolved path."""
    dataset = dlib.image_dataset_metadata.load_image_dataset_metadata(str(xml))
    return {(xml.parent / image.filename).resolve(): list(image.boxes) for image in dataset.images}


def test_dlib_reads_back_the_runs_boxes_and_rounded_points(runs, tmp_path):
    result = export(runs / "pts", "--to", "dlib-xml", "--out", tmp_path / "faces.xml")
    read = dlib_boxes(tmp_path / "faces.xml")
    expected = [(r, p) for r, p in faces(runs / "pts") if Path(r["input_path"]).stem != ROTATED]
    assert sum(map(len, read.values())) == len(expected)
    assert "EXIF rotation" in result.stderr and all(path.stem != ROTATED for path in read)
    for row, points in expected:
        box = next(b for b in read[Path(row["input_path"]).resolve()] if box_of(row) == [b.rect.left(), b.rect.top(),
                                                                               b.rect.right(), b.rect.bottom()])
        parts = np.array([[box.parts[f"{i:02d}"].x, box.parts[f"{i:02d}"].y] for i in range(68)])
        assert np.array_equal(parts, [[pixel(x), pixel(y)] for x, y in points])
        assert np.abs(parts - points).max() <= 0.5


def test_dlib_trains_and_tests_a_shape_predictor_on_a_split_export(runs, tmp_path):
    export(runs / "pts", "--to", "dlib-xml", "--out", tmp_path / "faces.xml", "--split", "0.3", "--seed", "0")
    train, test = tmp_path / "faces-train.xml", tmp_path / "faces-test.xml"
    assert not set(dlib_boxes(train)) & set(dlib_boxes(test))
    options = dlib.shape_predictor_training_options()
    options.tree_depth, options.cascade_depth, options.num_trees_per_cascade_level = 3, 6, 60
    options.oversampling_amount, options.num_threads, options.be_verbose = 10, 2, False
    dlib.train_shape_predictor(str(train), str(tmp_path / "model.dat"), options)
    test_error = dlib.test_shape_predictor(str(test), str(tmp_path / "model.dat"))  # mean point error, px
    train_error = dlib.test_shape_predictor(str(train), str(tmp_path / "model.dat"))
    sizes = [np.sqrt(b.rect.area()) for boxes in dlib_boxes(test).values() for b in boxes]
    print(f"dlib: train error {train_error:.2f} px, test error {test_error:.2f} px, boxes {np.median(sizes):.0f} px")
    assert 0 < train_error < test_error < 0.15 * np.median(sizes)  # trained on 5 faces: a wrong export is far off


def test_300w_folder_reads_back_as_the_runs_faces(runs, tmp_path):
    export(runs / "pts", "--to", "300w", "--out", tmp_path / "300w")
    pairs = {pts.stem: (image, read_68(pts)) for image, pts in labelled_images(tmp_path / "300w")}
    expected = faces(runs / "pts")
    assert len(pairs) == len(expected)
    for row, points in expected:
        image, read = pairs[Path(row["output"]).stem]
        assert np.allclose(read, points, atol=5e-4)
        if Path(row["input_path"]).stem == ROTATED:  # written upright
            assert image.suffix == ".png" and np.array_equal(cv2.imread(str(image)), read_image(row["input_path"]))
        else:
            assert image.read_bytes() == Path(row["input_path"]).read_bytes()


def test_json_run_exports_the_same_faces_as_the_pts_run(runs, tmp_path):
    for run in ("json", "pts"):
        export(runs / run, "--to", "300w", "--out", tmp_path / run)
    json_faces = {p.relative_to(tmp_path / "json"): read_68(p) for p in (tmp_path / "json").rglob("*.pts")}
    assert len(json_faces) == len(faces(runs / "json")) == 7
    for name, points in json_faces.items():  # named as the pts run names them
        assert np.allclose(points, read_68(tmp_path / "pts" / name), atol=5e-4)


def with_checks(run: Path, folder: Path, marks: list[str]) -> tuple[Path, list[dict[str, str]]]:
    """A copy of ``run`` whose faces.csv has the review columns, face i marked ``marks[i]`` (unmarked after)."""
    shutil.copytree(run, folder)
    rows = index_rows(run)
    marked = iter(marks)
    columns = [*rows[0], "checked", "checked_at", "moved_px"]
    for row in rows:
        mark = next(marked, "") if row["left"] else ""
        row.update(checked=mark, checked_at="2025-01-01T00:00:00Z" if mark else "", moved_px="1.5" * (mark == "moved"))
    with open(folder / "faces.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader(), writer.writerows(rows)
    return folder, [r for r in rows if r["left"]]


def exported_boxes(run: Path, path: Path, *options: str) -> list[list[int]]:
    """The detector boxes of the faces a COCO export of ``run`` with ``options`` keeps."""
    export(run, "--to", "coco", "--out", path, *options)
    return [a["detector_bbox"] for a in json.loads(path.read_text())["annotations"]]


def test_checked_only_and_max_error_select_faces(runs, tmp_path):
    marks = ["accepted", "moved", "not a face", "unusable"]
    run, rows = with_checks(runs / "pts", tmp_path / "run", marks)
    as_coco = [[int(r["left"]), int(r["top"]), int(r["right"]) - int(r["left"]) + 1,
                int(r["bottom"]) - int(r["top"]) + 1] for r in rows]
    assert exported_boxes(run, tmp_path / "all.json") == as_coco[:2] + as_coco[4:]
    assert exported_boxes(run, tmp_path / "checked.json", "--checked-only") == as_coco[:2]
    assert exported_boxes(run, tmp_path / "none.json", "--max-error", "0") == as_coco[:2]  # checked faces stay
    errors = sorted(float(r["expected_error"]) for r in rows[4:])
    limit = errors[len(errors) // 2]
    kept = as_coco[:2] + [b for b, r in zip(as_coco[4:], rows[4:]) if float(r["expected_error"]) <= limit]
    assert exported_boxes(run, tmp_path / "some.json", "--max-error", str(limit)) == kept


def test_split_is_by_photo_fixed_by_seed_and_covers_every_face(runs, tmp_path):
    def parts(seed: str, name: str) -> list[set[str]]:
        export(runs / "pts", "--to", "coco", "--out", tmp_path / name, "--split", "0.3", "--seed", seed)
        docs = [json.loads((tmp_path / name.replace(".", f"-{p}.")).read_text()) for p in ("train", "test")]
        assert sum(len(d["annotations"]) for d in docs) == len(faces(runs / "pts"))
        return [{i["file_name"] for i in d["images"]} for d in docs]

    train, test = parts("0", "a.json")
    assert train and test and not train & test and 0.1 < len(test) / (len(train) + len(test)) < 0.5
    assert parts("0", "b.json") == [train, test]
    assert parts("1", "c.json") != [train, test]


def test_absolute_paths(runs, tmp_path):
    export(runs / "json", "--to", "coco", "--out", tmp_path / "faces.json", "--paths", "absolute")
    names = {i["file_name"] for i in json.loads((tmp_path / "faces.json").read_text())["images"]}
    assert names == {str((runs / "few" / f"{stem}.jpg").resolve()) for stem in PHOTOS}


def one_line_error(result) -> str:
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_bad_input_is_one_line_naming_the_file(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "faces.csv" in one_line_error(export(tmp_path / "empty", "--to", "coco", "--out", tmp_path / "a.json",
                                                check=False))
    shutil.copytree(runs / "json", tmp_path / "run")
    for dest, reason in ((tmp_path / "run" / "faces.csv", "the run's own files"), (tmp_path / "run", "a folder")):
        assert reason in one_line_error(export(tmp_path / "run", "--to", "coco", "--out", dest, check=False))
    assert outputs(tmp_path / "run") == outputs(runs / "json")
    assert index_rows(tmp_path / "run") == index_rows(runs / "json")
    rows = index_rows(tmp_path / "run")
    rows[0]["input_path"] = str(tmp_path / "gone.jpg")
    with open(tmp_path / "run" / "faces.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        writer.writeheader(), writer.writerows(rows)
    message = one_line_error(export(tmp_path / "run", "--to", "dlib-xml", "--out", tmp_path / "b.xml", check=False))
    assert "gone.jpg" in message and "No such file" in message and not (tmp_path / "b.xml").exists()


def test_a_folder_with_a_pts_and_a_json_run_needs_from(runs, tmp_path):
    shutil.copytree(runs / "json", tmp_path / "both")
    with open(tmp_path / "both" / "faces.csv", "a") as f:
        f.writelines((runs / "pts" / "faces.csv").read_text().splitlines(keepends=True)[1:])
    assert "--from" in one_line_error(export(tmp_path / "both", "--to", "coco", "--out", tmp_path / "a.json",
                                             check=False))
    result = export(tmp_path / "both", "--to", "coco", "--out", tmp_path / "a.json", "--from", "json")
    assert "wrote" in result.stderr and len(json.loads((tmp_path / "a.json").read_text())["annotations"]) == 7


def test_300w_export_into_the_photos_folder_is_refused_before_anything_is_written(runs):
    photos = runs / "few"  # the json run's photos
    before = {p: p.stat().st_mtime_ns for p in photos.iterdir()}
    message = one_line_error(export(runs / "json", "--to", "300w", "--out", photos, check=False))
    assert "holds the run's photos" in message  # was: the photos written over, copies of several-face ones beside
    assert {p: p.stat().st_mtime_ns for p in photos.iterdir()} == before


def test_faces_on_a_photo_edited_since_the_run_are_left_out(runs, tmp_path):
    shutil.copytree(runs / "few", tmp_path / "few")
    shutil.copytree(runs / "json", tmp_path / "run")
    index = tmp_path / "run" / "faces.csv"
    index.write_text(index.read_text().replace(str(runs / "few"), str(tmp_path / "few")))
    photo = tmp_path / "few" / f"{PHOTOS[0]}.jpg"
    cv2.imwrite(str(photo), cv2.rotate(cv2.imread(str(photo)), cv2.ROTATE_90_CLOCKWISE))  # turned in a photo tool
    result = export(tmp_path / "run", "--to", "coco", "--out", tmp_path / "faces.json")
    names = [Path(i["file_name"]).name for i in json.loads((tmp_path / "faces.json").read_text())["images"]]
    assert sorted(names) == sorted(f"{stem}.jpg" for stem in PHOTOS[1:])  # was: its points on the turned photo
    edited = sum(r["image"] == photo.name for r in index_rows(tmp_path / "run") if r["left"])
    assert f"{edited} on photos whose size changed since they were annotated" in result.stderr
