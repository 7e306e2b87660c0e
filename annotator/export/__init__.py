"""``annotate export``: a run's faces handed on to training tools (COCO keypoints, dlib XML, 300-W folders).

This module reads the run (faces.csv, the points from the run's .pts or JSON
files, each photo once), selects faces, splits them by photo, and calls the
format's ``write(faces, dest, absolute)``; one module per format does the rest.
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ..images import ImageError, header_size, heif_size, is_heif
from ..index import INDEX, MOVED_HINT, placed_size, read_index, row_format
from ..review import face_points

ACCEPTED = ("accepted", "moved")  # `checked` values of faces a person kept
REJECTED = ("not a face", "unusable")  # never exported


class ExportError(Exception):
    """The run cannot be exported (no index, a missing photo, an empty selection)."""


@dataclass(frozen=True)
class Photo:
    """A source photo: its absolute path, its path in the run, its size as displayed, whether it
    carries an EXIF rotation (its stored pixels are not the displayed ones), and whether it is a HEIC or AVIF
    photo (which few training tools decode)."""

    path: Path
    image: str
    width: int
    height: int
    rotated: bool
    heif: bool = False


@dataclass(frozen=True)
class Face:
    """One face: 0-based points, dlib box (left, top, right, bottom, inclusive) and what the run said of it.

    ``name`` is the face's own path without suffix, as the run's ``.pts`` files are named
    (``dir/img``, or ``dir/img_1``, ``dir/img_2``, ... for a photo with several faces).
    """

    photo: Photo
    name: str
    box: tuple[int, int, int, int]
    points: np.ndarray
    score: float
    detector: str
    expected_error: float | None
    checked: str


@dataclass(frozen=True)
class Selection:
    """Which faces to export: only those a person kept, and/or none above an expected error."""

    checked_only: bool = False
    max_error: float | None = None

    def reason_to_skip(self, row: dict[str, str]) -> str | None:
        """Why the face of ``row`` is left out, or None when it is exported."""
        checked, error = row.get("checked", ""), row["expected_error"]
        if checked in REJECTED:
            return f"marked '{checked}'"
        if checked in ACCEPTED:
            return None
        if self.checked_only:
            return "not checked"
        if self.max_error is not None and not error:
            return "without an expected error (--max-error)"
        if self.max_error is not None and float(error) > self.max_error:
            return "over --max-error"
        return None


def run_rows(out: Path, run_format: str | None = None) -> list[dict[str, str]]:
    """The face rows of the run in ``out`` (of ``run_format`` when the index holds a pts and a json run)."""
    try:
        rows = [r for r in read_index(out) if r["left"]]
    except FileNotFoundError as e:
        raise ExportError(str(e)) from None
    if run_format is None and len({row_format(list(r.values())) for r in rows}) > 1:
        raise ExportError(f"{out / INDEX} lists a pts and a json run: choose one with --from pts|json")
    return [r for r in rows if run_format in (None, row_format(list(r.values())))]


def read_faces(out: Path, selection: Selection, run_format: str | None = None) -> tuple[list[Face], Counter]:
    """The selected faces of the run in ``out``, in index order, and how many were left out for each reason."""
    rows = run_rows(out, run_format)
    names, skipped, photos, faces = face_names(rows), Counter(), {}, []
    for row, name in zip(rows, names):
        if reason := selection.reason_to_skip(row):
            skipped[reason] += 1
            continue
        if row["input_path"] not in photos:
            photos[row["input_path"]] = read_photo(out, row)
        photo = photos[row["input_path"]]
        if placed_size(row) not in (None, (photo.width, photo.height)):
            skipped["on photos whose size changed since they were annotated (edited? rerun annotate with "
                    "--overwrite)"] += 1
            continue
        faces.append(_face(out, row, name, photo))
    return faces, skipped


def face_names(rows: list[dict[str, str]]) -> list[str]:
    """Each face's name: its .pts output without suffix; a JSON output's stem numbered ``_k`` as .pts would be."""
    per_image = Counter(r["input_path"] for r in rows)
    seen: Counter = Counter()
    names = []
    for row in rows:
        seen[row["input_path"]] += 1
        stem = row["output"].rsplit(".", 1)[0]
        numbered = row["output"].endswith(".json") and per_image[row["input_path"]] > 1
        names.append(f"{stem}_{seen[row['input_path']]}" if numbered else stem)
    return names


def read_photo(out: Path, row: dict[str, str]) -> Photo:
    """The photo of ``row``: its size as displayed, and whether an EXIF rotation turns its stored pixels.

    Both are read from two decodes at 1/8 scale (with and without EXIF orientation): fast on JPEG.
    """
    path = Path(row["input_path"])
    where = f"(the photo of {row['image']} in {out / INDEX})"
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ExportError(f"{path}: {e.strerror} {where}; {MOVED_HINT}") from None
    except OSError as e:
        raise ExportError(f"{path}: {e.strerror or e} {where}") from None
    if is_heif(data):  # HEIC or AVIF: its size as displayed (rotation applied), read from the container
        try:
            width, height = heif_size(data)
        except ImageError as e:
            raise ExportError(f"{path}: {e} {where}") from None
        return Photo(path, row["image"], width, height, rotated=False, heif=True)
    size, data = header_size(data), np.frombuffer(data, np.uint8)
    shown = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_8)
    stored = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION)
    if size is None or shown is None or stored is None:
        raise ExportError(f"{path}: not a decodable image {where}")
    width, height = size if shown.shape == stored.shape else size[::-1]  # turned by 90 degrees
    return Photo(path, row["image"], width, height, rotated=not np.array_equal(shown, stored))


def _face(out: Path, row: dict[str, str], name: str, photo: Photo) -> Face:
    try:
        points = face_points(out, row)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"{out / row['output']}: cannot read the face's points: {e}") from None
    box = tuple(int(row[k]) for k in ("left", "top", "right", "bottom"))
    error = float(row["expected_error"]) if row["expected_error"] else None
    return Face(photo, name, box, points, float(row["score"]), row["detector"], error, row.get("checked", ""))


def in_test(image: str, share: float, seed: int) -> bool:
    """Whether photo ``image`` (its path in the run) falls in the test part: a hash of seed and path below ``share``."""
    digest = hashlib.sha256(f"{seed}\0{image}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2 ** 64


def split(faces: list[Face], share: float, seed: int) -> dict[str, list[Face]]:
    """``{"train": ..., "test": ...}``: a photo's faces stay together, each photo on the side its hash gives."""
    test = {f.photo.image for f in faces if in_test(f.photo.image, share, seed)}
    return {"train": [f for f in faces if f.photo.image not in test],
            "test": [f for f in faces if f.photo.image in test]}


def variant(dest: Path, part: str) -> Path:
    """``dest`` for one part of a split: ``faces.json`` -> ``faces-train.json``, folder ``ds`` -> ``ds-train``."""
    return dest.with_name(f"{dest.stem}-{part}{dest.suffix}")


def image_path(photo: Photo, dest: Path, absolute: bool) -> str:
    """The photo's path as an exported file names it: absolute, or relative to the folder of ``dest``."""
    path = photo.path.absolute()
    return path.as_posix() if absolute else Path(os.path.relpath(path, dest.absolute().parent)).as_posix()


def photo_count(faces: Iterable[Face]) -> int:
    return len({f.photo.path for f in faces})


def export(out: Path, to: str, dest: Path, selection: Selection, absolute: bool = False,
           test_share: float | None = None, seed: int = 0, run_format: str | None = None
           ) -> tuple[dict[Path, list[Face]], Counter]:
    """Write the selected faces of the run in ``out`` as format ``to`` to ``dest`` (or to its train and test
    variants); returns the faces written to each file and how many were left out for each reason."""
    writer = FORMATS[to]
    paths = [dest] if test_share is None else [variant(dest, part) for part in ("train", "test")]
    _check_destinations(out, paths, writer.WRITES_FOLDER)
    faces, skipped = read_faces(out, selection, run_format)
    if not writer.READS_ROTATION:
        skipped.update(f"on photos with an EXIF rotation ({to} readers ignore it)" for f in faces if f.photo.rotated)
        faces = [f for f in faces if not f.photo.rotated]
    if not writer.READS_HEIF:
        skipped.update(f"on HEIC/HEIF/AVIF photos ({to} readers cannot decode them; --to 300w writes them as PNG)"
                       for f in faces if f.photo.heif)
        faces = [f for f in faces if not f.photo.heif]
    parts = {dest: faces} if test_share is None else {variant(dest, k): v for k, v in
                                                      split(faces, test_share, seed).items()}
    for path, part in parts.items():
        if not part and test_share is not None:
            raise ExportError(f"no photo falls in {path} with --split {test_share} --seed {seed}: "
                              "try another share or seed")
        if not part:
            reasons = f" (left out: {left_out(skipped)})" if skipped else ""
            raise ExportError(f"no face to export from {out}{reasons}")
    for path, part in parts.items():
        writer.write(part, path, absolute)
    return parts, skipped


def _check_destinations(out: Path, paths: list[Path], folder: bool) -> None:
    """Refuse, before a photo is read, to write over the run's own files, or a file where a folder is."""
    try:
        own = {out / INDEX} | {out / row["output"] for row in read_index(out) if row["output"]}
    except FileNotFoundError as e:
        raise ExportError(str(e)) from None
    own = {path.resolve() for path in own}
    for path in paths:
        if path.resolve() in own:
            raise ExportError(f"{path} is one of the run's own files: give the export another name")
        if not folder and path.is_dir():
            raise ExportError(f"{path} is a folder: --out names the file to write, such as {path / 'faces.json'}")


def left_out(skipped: Counter) -> str:
    """How many faces were left out for each reason, most first: ``3 over --max-error, 1 not checked``."""
    return ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())


from . import coco, dlib_xml, pts_folder  # noqa: E402  (the formats use the classes above)

FORMATS = {"coco": coco, "dlib-xml": dlib_xml, "300w": pts_folder}
