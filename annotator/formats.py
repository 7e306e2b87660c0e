"""Output files: iBUG 300-W ``.pts`` (1-based) and JSON (0-based), written atomically."""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import numpy as np

# File names that are not UTF-8 (Latin-1 names from old archives and shares) reach Python as lone
# surrogates; logs, indexes and exports write them back as the bytes they were, so they name the file again.
PATH_ERRORS = "surrogateescape"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, content: str | bytes, tmp_dir: Path | None = None) -> None:
    """Write ``content`` to ``path`` via a temporary file and a rename.

    The temporary file lives in ``tmp_dir`` (same file system as ``path``) or
    beside ``path``; a reader never sees a partly written file.
    """
    with atomic_file(path, tmp_dir) as f:
        f.write(content.encode("utf-8", PATH_ERRORS) if isinstance(content, str) else content)


@contextmanager
def atomic_file(path: Path, tmp_dir: Path | None = None, text: bool = False) -> Iterator[IO]:
    """A new file (binary, or text in UTF-8 without newline translation) that replaces ``path``
    when the block ends without an exception; see :func:`atomic_write`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get normal permissions
        f = os.fdopen(fd, "w", encoding="utf-8", errors=PATH_ERRORS, newline="") if text else os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pts_text(points: np.ndarray) -> str:
    """300-W ``.pts`` text for 0-based ``points`` (written 1-based)."""
    rows = "".join(f"{x + 1:.3f} {y + 1:.3f}\n" for x, y in points)
    return f"version: 1\nn_points: {len(points)}\n{{\n{rows}}}\n"


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.pts`` file (header optional) as 0-based (N, 2) float points."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if "{" in text:
        text = text[text.index("{") + 1:text.rindex("}")]
    values = [float(v) for v in text.split()]
    if not values or len(values) % 2:
        raise ValueError(f"{path}: not a list of x y pairs")
    return np.array(values, dtype=np.float64).reshape(-1, 2) - 1.0


def rounded_error(error: float) -> float | None:
    """An expected error to 4 significant digits; None when there is none (NaN, dlib's landmarker)."""
    return None if math.isnan(error) else float(f"{error:.4g}")


def json_record(image: str, width: int, height: int, faces: list[dict]) -> str:
    """JSON text for one image; ``faces`` hold box, score, detector, expected_error, roll (degrees,
    counter-clockwise on screen: :func:`annotator.crop.face_roll`), 0-based landmarks and, when the network
    gives them (``point_errors`` not None), the 68 per-point expected errors."""
    return json.dumps({"image": image, "width": width, "height": height,
                       "faces": [_json_face(f) for f in faces]}, indent=1) + "\n"


def _json_face(f: dict) -> dict:
    face = {"box": [int(v) for v in f["box"]], "score": round(float(f["score"]), 4), "detector": f["detector"],
            "expected_error": rounded_error(float(f["expected_error"])), "roll": round(float(f["roll"]), 1),
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in f["landmarks"]]}
    if f.get("point_errors") is not None:
        face["point_errors"] = [rounded_error(float(e)) for e in f["point_errors"]]
    return face


def json_face(path: Path, box: list[int]) -> dict | None:
    """The face with ``box`` in an image's JSON output file (None: no such face, or no such file)."""
    try:
        faces = json.loads(path.read_text(encoding="utf-8"))["faces"]
    except FileNotFoundError:
        return None
    return next((f for f in faces if f["box"] == box), None)
