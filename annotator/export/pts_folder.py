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
from . import Face, Photo

READS_ROTATION = True  # a photo with an EXIF rotation is written upright, as lossless PNG
READS_HEIF = True  # and so is a HEIC or AVIF photo


def write(faces: list[Face], dest: Path, absolute: bool) -> None:
    """Write each face's photo and ``.pts`` under the folder ``dest`` (``absolute`` has no use here)."""
    photo, data = None, b""
    for face in faces:
        if face.photo != photo:  # a photo's faces come together: read it once
            photo = face.photo
            data = _as_displayed(photo.path) if _as_png(photo) else photo.path.read_bytes()
        suffix = ".png" if _as_png(photo) else photo.path.suffix
        atomic_write(dest / f"{face.name}{suffix}", data)
        atomic_write(dest / f"{face.name}.pts", pts_text(face.points))


def _as_png(photo: Photo) -> bool:
    return photo.rotated or photo.heif


def _as_displayed(path: Path) -> bytes:
    """The photo as displayed (EXIF rotation applied; HEIC and AVIF decoded), as PNG."""
    return cv2.imencode(".png", read_image(path))[1].tobytes()
