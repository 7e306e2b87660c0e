"""Pictures for the review page, as JPEG: a face's photo decoded as the run decoded it, and its thumbnail.

A photo is found from the face's row in ``faces.csv`` (never from a path in a request), decoded by the
run's own reader (EXIF orientation applied, 8-bit colour: the frame the points refer to) and encoded
again, so no raw file is ever sent.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..images import ImageError, read_image
from ..index import MOVED_HINT
from ..review import tile

QUALITY = 92


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()


@lru_cache(maxsize=2)
def decoded(path: str) -> np.ndarray:
    """The photo at ``path`` (an index row's ``input_path``) as the run saw it (BGR; not to be modified)."""
    try:
        return read_image(path)
    except ImageError as e:
        raise ImageError(f"{path}: {e}" + ("" if os.path.lexists(path) else f"; {MOVED_HINT}")) from None


@lru_cache(maxsize=8)
def photo(path: str) -> bytes:
    """The photo at ``path`` as the run saw it, in JPEG."""
    return _jpeg(decoded(path))


@lru_cache(maxsize=4096)
def size(path: str) -> tuple[int, int]:
    """(width, height) of the photo at ``path`` as the run saw it."""
    height, width = decoded(path).shape[:2]
    return width, height


@lru_cache(maxsize=512)
def thumbnail(out: Path, row: tuple[tuple[str, str], ...], version: str) -> bytes:
    """The face's tile, as on ``annotate review``'s contact sheet but turned upright by its roll, in JPEG
    (cached per ``version``)."""
    return _jpeg(tile(out, dict(row), upright=True))
