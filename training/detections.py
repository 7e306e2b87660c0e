"""Detector results kept across runs: the faces a scan found in one view of a ground-truth photo.

A detector's boxes depend on the photo and how it is shown (turned, partly hidden, the scan's settings),
not on the landmark network: refitting or scoring another network on the same views need not scan again.
One small JSON file per photo and view (keyed by the bytes of the photo and its .pts and by the view),
written atomically, so an interrupted run keeps what it found, and a copy of the data (new paths,
new modification times) still finds it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from annotator.detectors import Face
from annotator.formats import atomic_write


def cached_faces(folder: str | Path | None, files: tuple[Path, ...], view: str,
                 find: Callable[[], list[Face | None]]) -> list[Face | None]:
    """``find()``'s faces of the photo in ``files`` (with its ground truth) shown as ``view`` says, from
    ``folder`` when it holds them (None: no folder, always ``find()``). The key is a hash of the files'
    bytes and ``view``."""
    if folder is None:
        return find()
    key = "|".join([content_hash(f) for f in files] + [view])
    path = Path(folder) / f"{hashlib.sha1(key.encode()).hexdigest()}.json"
    if path.is_file():
        return [None if f is None else Face(tuple(f["box"]), f["score"], f["detector"])
                for f in json.loads(path.read_text())]
    faces = find()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps([None if f is None else {"box": [int(v) for v in f.box], "score": float(f.score),
                                                           "detector": f.detector} for f in faces]))
    return faces


def content_hash(path: Path) -> str:
    """SHA-1 of a file's bytes."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()
