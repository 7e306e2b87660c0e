"""A 300-W folder: each face's photo beside its ``.pts`` (1-based), one photo copy per face, as 300-W stores them.

What menpo's importers, 300-W loaders and ``annotate train prepare`` read: ``img.jpg``
with ``img.pts``, or ``img_1.jpg`` with ``img_1.pts``, ``img_2.jpg`` with ``img_2.pts``
for a photo with several faces (the run's own .pts names, its tree mirrored).
"""
from __future__ import annotations

from pathlib import Path

import cv2

from ..formats import atomic_write, pts_text
from ..images import read_image
from . import ExportError, Face, Photo

WRITES_FOLDER = True  # --out is a folder
READS_ROTATION = True  # a photo with an EXIF rotation is written upright, as lossless PNG
READS_HEIF = True  # and so is a HEIC or AVIF photo


def write(faces: list[Face], dest: Path, absolute: bool) -> None:
    """Write each face's photo and ``.pts`` under the folder ``dest`` (``absolute`` has no use here)."""
    _check_apart(faces, dest)
    photo, data = None, b""
    for face in faces:
        if face.photo != photo:  # a photo's faces come together: read it once
            photo = face.photo
            data = _as_displayed(photo.path) if _as_png(photo) else photo.path.read_bytes()
        atomic_write(_photo_copy(face, dest), data)
        atomic_write(dest / f"{face.name}.pts", pts_text(face.points))


def _photo_copy(face: Face, dest: Path) -> Path:
    return dest / f"{face.name}{'.png' if _as_png(face.photo) else face.photo.path.suffix}"


def _check_apart(faces: list[Face], dest: Path) -> None:
    """Refuse, before writing anything, a ``dest`` whose photo copies would land among the run's photos."""
    folders = {face.photo.path.resolve().parent: face.photo.path for face in faces}
    for face in faces:
        if (photo := folders.get(_photo_copy(face, dest).resolve().parent)) is not None:
            raise ExportError(f"{dest} holds the run's photos ({photo}): the copies would be written over or "
                              f"beside them, and annotated as new photos by the next run; give another folder")


def _as_png(photo: Photo) -> bool:
    return photo.rotated or photo.heif


def _as_displayed(path: Path) -> bytes:
    """The photo as displayed (EXIF rotation applied; HEIC and AVIF decoded), as PNG."""
    return cv2.imencode(".png", read_image(path))[1].tobytes()
