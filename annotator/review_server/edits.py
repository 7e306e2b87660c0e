"""A run's faces as the review page reads and saves them: each save rewrites the face's output file, in the
run's own format, and its row of ``faces.csv``, atomically.

A face's *version* is a hash of its output (its ``.pts`` file, or its record in the image's JSON file) and
its check; a save names the version it was made on and is refused when the face has changed since, so two
tabs on one face never overwrite each other's work unseen.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np

from ..crop import face_roll
from ..draw import unsure_points
from ..formats import atomic_write, json_face, pts_text, read_pts
from ..images import ImageError
from ..index import COLUMNS, ORIGINALS, face_id, placed_size, read_index, write_index
from ..review import ranked_faces
from . import photos

ACTIONS = ("accept", "not a face", "unusable")
POINTS = 68


class NotFound(LookupError):
    """No such face in this review."""


class Conflict(Exception):
    """The face changed since the page read it (a save from another tab or window)."""


class BadEdit(ValueError):
    """A save or refit that cannot be taken (an unknown action, points that are not 68 pairs of numbers in
    and around the photo, nothing to restore)."""


class Faces:
    """The faces of the run in ``out``, worst expected error first (the ``worst`` first only, if given)."""

    def __init__(self, out: Path, worst: int | None = None):
        self.out = out
        self.rows = list(read_index(out))  # every row, in file order: faces.csv is rewritten from them
        self.by_id = {face_id(r): r for r in self.rows if r["left"]}
        self.order = [face_id(r) for r in ranked_faces(out, worst or max(len(self.rows), 1), checked="include")]
        self._lock = threading.RLock()  # one save at a time: each rewrites faces.csv

    def listing(self) -> list[dict]:
        """A summary of every face, in review order."""
        return [_summary(i, self.by_id[i]) for i in self.order]

    def row(self, face: str) -> dict[str, str]:
        """The index row of ``face``."""
        try:
            return self.by_id[face]
        except KeyError:
            raise NotFound(f"no face {face} in this review") from None

    def face(self, face: str) -> dict:
        """A face with its 0-based points (the run's own once it is marked "not a face", when known),
        whether its output holds them (``present``), its version, its ``roll`` from those points
        (degrees counter-clockwise on screen: the page turns the face upright by it) and the indices of
        its ``unsure`` points (:func:`annotator.draw.unsure_points`), and whether the photo's size has
        changed since the points were placed (``photo_changed``: edited, they no longer fit it)."""
        row = self.row(face)
        with self._lock:
            points, version = self._current(row)
            shown = points if points is not None else self._original(face, row, None)
        return {**_summary(face, row), "box": [int(row[k]) for k in ("left", "top", "right", "bottom")],
                "points": None if shown is None else shown.tolist(), "present": points is not None,
                "version": version, "roll": 0.0 if shown is None else face_roll(shown),
                "unsure": self._unsure(row),
                "photo_changed": _photo_changed(row)}

    def _unsure(self, row: dict[str, str]) -> list[int]:
        """The points the network was least sure of (its JSON output's ``point_errors``; none for .pts)."""
        path = self.out / row["output"]
        record = _json_face(path, row) if path.suffix == ".json" else None
        return unsure_points(record.get("point_errors") if record else None)

    def save(self, face: str, base: str, action: str, points: list | None = None) -> dict:
        """Check ``face`` with ``action`` (accept ``points``, or mark it "not a face" or "unusable"), if it is
        still at version ``base``; returns the face as saved."""
        row = self.row(face)
        if action not in ACTIONS:
            raise BadEdit(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
        size = photos.size(row["input_path"]) if action == "accept" else None
        accepted = valid_points(points, size) if action == "accept" else None
        with self._lock:
            current, version = self._current(row)
            if base != version:
                raise Conflict(f"not saved: {row['output']} was changed in another tab or window since this page "
                               f"read it (now: {row['checked'] or 'not checked'}); press R to load that version "
                               "(then Z brings yours back) and save again")
            original = self._original(face, row, current)
            if action == "not a face":
                new, check = None, {"checked": action, "moved_px": ""}
            else:  # accept the page's points; "unusable" keeps the file's (or restores the run's)
                new = accepted if action == "accept" else (current if current is not None else original)
                if new is None or original is None:
                    raise BadEdit(f"{row['output']}: the run's points of this face are not known; nothing to restore")
                moved = float(np.linalg.norm(new - original, axis=1).mean())
                checked = action if action == "unusable" else "moved" if round(moved, 3) else "accepted"
                check = {"checked": checked, "moved_px": f"{moved:.3f}"}
                if size:  # placed on the photo as it is now (an edited photo's face fits it again)
                    check |= {"width": str(size[0]), "height": str(size[1])}
            self._write(row, new, current, check["checked"])
            self._record(row, check)
            return self.face(face)

    def _current(self, row: dict[str, str]) -> tuple[np.ndarray | None, str]:
        """The face's points in its output file (None once gone) and its version."""
        path = self.out / row["output"]
        if path.suffix == ".pts":
            payload = path.read_bytes() if path.exists() else b""
            points = read_pts(path) if payload else None
        else:
            record = _json_face(path, row)
            payload = json.dumps(record, sort_keys=True).encode() if record else b""
            points = np.asarray(record["landmarks"], np.float64) if record else None
        state = f"{row['checked']}\0{row['checked_at']}\0".encode()
        return points, hashlib.sha1(state + payload).hexdigest()[:16]

    def _original(self, face: str, row: dict[str, str], current: np.ndarray | None) -> np.ndarray | None:
        """The run's own points of the face: its output's while no person has checked it (kept aside then,
        for the next saves' ``moved_px``), else those kept aside (or the output's, if none were)."""
        kept = self.out / ORIGINALS / f"{face}.points"
        if not row["checked"] and current is not None:
            path = self.out / row["output"]
            record = _json_face(path, row) if path.suffix == ".json" else None  # restores "not a face" whole
            atomic_write(kept, json.dumps({"output": row["output"], "points": current.tolist()}
                                          | ({"record": record} if record else {})) + "\n")
            return current
        try:
            return np.asarray(json.loads(kept.read_text(encoding="utf-8"))["points"], np.float64)
        except (OSError, ValueError, KeyError):
            return current

    def _kept_record(self, row: dict[str, str]) -> dict | None:
        """The face's JSON record as the run wrote it, kept aside at its first check (None: not kept)."""
        try:
            kept = self.out / ORIGINALS / f"{face_id(row)}.points"
            return json.loads(kept.read_text(encoding="utf-8")).get("record")
        except (OSError, ValueError):
            return None

    def _write(self, row: dict[str, str], points: np.ndarray | None, current: np.ndarray | None,
               check: str) -> None:
        """Write the face's ``points`` to its output (None: remove the face from it); a ``.pts`` file that
        already holds them is left as it is."""
        path = self.out / row["output"]
        if path.suffix == ".json":
            _write_json_face(path, row, points, check, self._kept_record(row))
        elif points is None:
            path.unlink(missing_ok=True)
        elif current is None or not np.array_equal(points, current):
            atomic_write(path, pts_text(points))

    def _record(self, row: dict[str, str], check: dict[str, str]) -> None:
        """Set the row's check (now, in UTC) and rewrite faces.csv; the row changes only once that is written."""
        new = {**row, **check, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_index(self.out, ([(new if r is row else r)[c] for c in COLUMNS] for r in self.rows))
        row.update(new)


def _photo_changed(row: dict[str, str]) -> bool:
    """Whether the photo's size differs from the one the face's points were placed on (edited since)."""
    if (placed := placed_size(row)) is None:
        return False
    try:
        return photos.size(row["input_path"]) != placed
    except ImageError:
        return False  # unreadable: the photo's own request says why


def _summary(face: str, row: dict[str, str]) -> dict:
    return {"id": face, "output": row["output"], "image": row["image"], "detector": row["detector"],
            "expected_error": float(row["expected_error"]) if row["expected_error"] else None,
            "checked": row["checked"], "checked_at": row["checked_at"], "moved_px": row["moved_px"]}


def valid_points(points: object, size: tuple[int, int], refused: str = "not saved") -> np.ndarray:
    """``points`` (from a request's JSON) as a (68, 2) array of 0-based pixels of a photo of ``size``
    (width, height); BadEdit, its message starting with ``refused``, for anything but 68 pairs of numbers
    (booleans are not numbers) lying within the photo or at most its width and height beyond its edges."""
    width, height = size
    array = None
    if isinstance(points, list) and len(points) == POINTS and all(
            isinstance(p, list) and len(p) == 2 and all(type(v) in (int, float) for v in p) for p in points):
        try:
            array = np.asarray(points, np.float64)
        except OverflowError:  # an integer beyond float range
            pass
    low, high = (-0.5 - width, -0.5 - height), (width - 0.5 + width, height - 0.5 + height)  # pixel edges
    if array is None or not (np.isfinite(array).all() and (array >= low).all() and (array <= high).all()):
        raise BadEdit(f"{refused}: points must be {POINTS} [x, y] pairs of numbers (0-based photo pixels), "
                      f"at most the photo's width ({width} px) left or right of it and its height "
                      f"({height} px) above or below it")
    return array


def _box(row: dict[str, str]) -> list[int]:
    return [int(row[k]) for k in ("left", "top", "right", "bottom")]


def _json_face(path: Path, row: dict[str, str]) -> dict | None:
    """The face's record in its image's JSON file (matched by box), None if it is not there."""
    return json_face(path, _box(row))


def _indexed_face(row: dict[str, str]) -> dict:
    """A JSON face record (no points yet) from the face's ``faces.csv`` row."""
    expected, roll = row["expected_error"], row.get("roll")
    return {"box": _box(row), "score": float(row["score"]), "detector": row["detector"],
            "expected_error": float(expected) if expected else None, "roll": float(roll) if roll else None}


def _write_json_face(path: Path, row: dict[str, str], points: np.ndarray | None, check: str,
                     kept: dict | None = None) -> None:
    """Update (or restore, in score order: from ``kept``, the run's record, if given) the face's record in
    its image's JSON file with ``points``, marked ``"checked": check``; drop it when ``points`` is None
    ("not a face")."""
    record = json.loads(path.read_text(encoding="utf-8"))
    faces = [f for f in record["faces"] if f["box"] != _box(row)]
    if points is not None:
        face = _json_face(path, row) or kept or _indexed_face(row)
        landmarks = [[round(float(x), 3), round(float(y), 3)] for x, y in points]
        faces.append({**face, "landmarks": landmarks, "checked": check})
        faces.sort(key=lambda f: -f["score"])
    record["faces"] = faces
    atomic_write(path, json.dumps(record, indent=1) + "\n")
