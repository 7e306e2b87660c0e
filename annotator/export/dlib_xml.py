"""dlib's imglab XML: what ``dlib.train_shape_predictor`` and ``dlib.test_shape_predictor`` read, and imglab edits.

A box is dlib's rectangle (``width = right - left + 1``: exact); parts are integer
pixel indices in our 0-based convention (pixel centres at integers), so each point
is rounded to the nearest pixel. File names are written as dlib writes them:
dlib's reader does not unescape XML entities, and cannot read a ``'``, ``<`` or ``>``.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..formats import atomic_write
from . import ExportError, Face, image_path

WRITES_FOLDER = False
READS_ROTATION = False  # dlib's load_image ignores EXIF orientation: such photos are left out
READS_HEIF = False  # nor does it decode HEIC or AVIF
UNREADABLE = "'<>"  # characters dlib's XML reader cannot take in an attribute


def write(faces: list[Face], dest: Path, absolute: bool) -> None:
    """Write ``faces`` as one dlib XML file ``dest``, a photo's faces in one ``<image>``."""
    photos: dict[Path, list[Face]] = {}
    for face in faces:
        photos.setdefault(face.photo.path, []).append(face)
    images = "".join(_image(fs, image_path(fs[0].photo, dest, absolute)) for fs in photos.values())
    atomic_write(dest, "<?xml version='1.0' encoding='UTF-8'?>\n<dataset>\n<name>68 iBUG 300-W face landmarks"
                       f"</name>\n<comment>written by annotate export</comment>\n<images>\n{images}</images>\n"
                       "</dataset>\n")


def _image(faces: list[Face], file: str) -> str:
    if any(c in file for c in UNREADABLE):
        raise ExportError(f"{faces[0].photo.path}: dlib's XML reader cannot read a file name with any of "
                          f"{' '.join(UNREADABLE)}: rename the photo and rerun annotate, or use --to coco")
    photo = faces[0].photo
    boxes = "".join(_box(f) for f in faces)
    return f"  <image file='{file}' width='{photo.width}' height='{photo.height}'>\n{boxes}  </image>\n"


def _box(face: Face) -> str:
    left, top, right, bottom = face.box
    parts = "".join(f"      <part name='{i:02d}' x='{pixel(x)}' y='{pixel(y)}'/>\n" for i, (x, y) in
                    enumerate(face.points))
    return (f"    <box top='{top}' left='{left}' width='{right - left + 1}' height='{bottom - top + 1}'>\n"
            f"{parts}    </box>\n")


def pixel(value: float) -> int:
    """The nearest integer pixel index (halves rounded up)."""
    return math.floor(value + 0.5)
