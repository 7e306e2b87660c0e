"""Detector results kept across runs: the faces a scan found in one view of a ground-truth photo.

A detector's boxes depend on the photo and how it is shown (turned, partly hidden, the scan's settings),
not on the landmark network: refitting or scoring another network on the same views need not scan again.
One small JSON file per photo and view (keyed by the photo, its .pts and the view), written atomically,
so an interrupted run keeps what it found.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from annotator.detectors import Face
from annotator.formats import atomic_write


def cached_faces(folder: str | Path | None, photo: Path, view: str,
                 find: Callable[[], list[Face | None]]) -> list[Face | None]:
    """``find()``'s faces of ``photo`` shown as ``view`` says, from ``folder`` when it holds them (None: no
    folder, always ``find()``). The key includes the photo's path, size and modification time."""
    if folder is None:
        return find()
    stat = photo.stat()
    key = f"{photo.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{view}"
    path = Path(folder) / f"{hashlib.sha1(key.encode()).hexdigest()}.json"
    if path.is_file():
        return [None if f is None else Face(tuple(f["box"]), f["score"], f["detector"])
                for f in json.loads(path.read_text())]
    faces = find()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps([None if f is None else {"box": [int(v) for v in f.box], "score": float(f.score),
                                                           "detector": f.detector} for f in faces]))
    return faces
