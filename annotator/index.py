"""The run index ``DIR/faces.csv``: a row per face (or per face-less image), in step with the resume journal.

The last three columns say whether a person checked the face (``annotate review --serve``): the
review server rewrites the whole file (atomically, holding the run lock) when a face is checked, and
a later run keeps the rows (and the outputs) of every image with a checked face.

The parent process appends an image's rows, flushed, before its journal line.
A kill between the two leaves rows of an image that the journal does not
record as done: :func:`open_index` drops them (and a partial last line) when
the next run starts, and that run redoes the image, so no row is duplicated.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

from .discover import Item
from .formats import PATH_ERRORS, atomic_file, rounded_error

INDEX = "faces.csv"
COLUMNS = ["image", "output", "left", "top", "right", "bottom", "score", "detector", "expected_error", "roll",
           "input_path", "checked", "checked_at", "moved_px", "width", "height"]
KEY_NAME = "input_path"  # what the resume journal records
KEY = COLUMNS.index(KEY_NAME)
CHECKED = COLUMNS.index("checked")
CHECKS = ("accepted", "moved", "not a face", "unusable")  # the values of ``checked`` besides empty
ORIGINALS = ".annotate-review"  # the run's own points of each face a person checked: <face id>.points (JSON)
MOVED_HINT = "if the photos moved, run annotate on their new place with this --out and --photos-moved"
UNCHECKED = ["", "", ""]  # checked, checked_at, moved_px of a face no person has checked
# Columns an index written by an earlier version lacks, and the value its rows get when it is read.
ADDED = {"detector": "hog", "roll": "", "checked": "", "checked_at": "", "moved_px": "", "width": "", "height": ""}


def image_rows(item: Item, size: tuple[int, int], outputs: Sequence[str], faces: Sequence, errors: Sequence[float],
               rolls: Sequence[float]) -> list[list]:
    """Rows of one image (``size``: width, height as displayed): one per face (written to ``outputs[i]``,
    relative to DIR), or one with empty face fields (and the JSON file as output, if any) when it has no face."""
    image = item.relative.as_posix()
    if not faces:
        return [[image, outputs[0] if outputs else "", *[""] * 8, item.key, *UNCHECKED, *size]]
    return [[image, output, *face.box, round(face.score, 4), face.detector, _blank(rounded_error(float(error))),
             round(float(roll), 1), item.key, *UNCHECKED, *size]
            for output, face, error, roll in zip(outputs, faces, errors, rolls)]


def _blank(value: float | None) -> float | str:
    return "" if value is None else value


def face_id(row: dict[str, str]) -> str:
    """A face's id for the review page: stable across reads, from its image, output file and box."""
    key = "\0".join(row[c] for c in ("input_path", "output", "left", "top", "right", "bottom"))
    return hashlib.sha1(key.encode("utf-8", PATH_ERRORS)).hexdigest()[:16]


def placed_size(row: dict[str, str]) -> tuple[int, int] | None:
    """The photo's size (width, height) when the face's points were placed; None in an index that lacks it."""
    return (int(row["width"]), int(row["height"])) if row["width"] else None


def row_format(row: Sequence[str]) -> str:
    """The output format a row belongs to: ``json`` for a JSON output, else ``pts`` (also a face-less pts image)."""
    return "json" if row[1].endswith(".json") else "pts"


def checked_images(out: Path, fmt: str) -> dict[str, set[str]]:
    """The images (keys) of format ``fmt`` in ``out/faces.csv`` with a face a person checked, each with
    the output files its rows name."""
    rows = [row for row in _rows(out / INDEX) if len(row) == len(COLUMNS) and row_format(row) == fmt]
    checked = {row[KEY] for row in rows if row[CHECKED]}
    outputs: dict[str, set[str]] = {key: set() for key in checked}
    for row in rows:
        if row[KEY] in checked and row[1]:
            outputs[row[KEY]].add(row[1])
    return outputs


def open_index(out: Path, fmt: str, done: set[str], overwrite: bool, kept: set[str] = frozenset()) -> TextIO:
    """``out/faces.csv`` opened for appending, holding only rows the journal backs.

    Rows of format ``fmt`` are kept when the journal ``done`` records their
    image (none with ``overwrite``) or when their image is in ``kept`` (images
    with a checked face, which the run leaves as they are); rows of the other
    format are kept as they are. A partial last line (a run killed while
    writing) is dropped.
    """
    path = out / INDEX

    def keep(row: list[str]) -> bool:
        return len(row) == len(COLUMNS) and (row_format(row) != fmt or row[KEY] in kept
                                             or (not overwrite and row[KEY] in done))

    whole, seen = _ends_whole(path) and _header(path) in (None, COLUMNS), set()
    for row in _rows(path):
        whole &= keep(row)
        if len(row) == len(COLUMNS) and row_format(row) == fmt:
            seen.add(row[KEY])
    if not whole:
        write_index(out, filter(keep, _rows(path)))
    if done - seen and not overwrite:
        print(f"warning: {path} lacks the faces of {len(done - seen)} images done by an earlier run; "
              "rerun with --overwrite for a complete index", file=sys.stderr)
    return open(path, "a", encoding="utf-8", errors=PATH_ERRORS, newline="")


def places(out: Path, fmt: str) -> dict[str, str]:
    """The images of format ``fmt`` in ``out/faces.csv``: each one's place in the output tree (``image``)
    and the key (input path) it was annotated from."""
    return {row[0]: row[KEY] for row in _rows(out / INDEX) if len(row) == len(COLUMNS) and row_format(row) == fmt}


def follow_moves(out: Path, fmt: str, moves: dict[str, str]) -> None:
    """Point the rows of format ``fmt`` annotated from an old key at its new key (``moves``: old -> new),
    and the review's kept points (named by face id, which holds the key) with them."""
    rows, renames = list(_rows(out / INDEX)), []
    for row in rows:
        if len(row) == len(COLUMNS) and row_format(row) == fmt and row[KEY] in moves:
            old = face_id(dict(zip(COLUMNS, row)))
            row[KEY] = moves[row[KEY]]
            renames.append((old, face_id(dict(zip(COLUMNS, row)))))
    for old, new in renames:  # first: a kill before the index is written leaves a rerun to redo both
        if (out / ORIGINALS / f"{old}.points").exists():
            os.replace(out / ORIGINALS / f"{old}.points", out / ORIGINALS / f"{new}.points")
    write_index(out, rows)


def _ends_whole(path: Path) -> bool:
    """Whether ``path`` exists and ends with a whole line."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:  # missing, or empty
        return False


def _header(path: Path) -> list[str] | None:
    """The header of an index file (None if it is missing or empty), checked to be an annotate index's."""
    try:
        with open(path, encoding="utf-8", errors=PATH_ERRORS, newline="") as f:
            header = next(csv.reader(f), None)
    except FileNotFoundError:
        return None
    if header is not None and not (KEY_NAME in header and set(COLUMNS) - set(header) <= set(ADDED)):
        raise FileExistsError(f"{path}: not an annotate index (header is not {','.join(COLUMNS)}); "
                              "move it away or choose another --out")
    return header


def _rows(path: Path, columns: list[str] = COLUMNS) -> Iterator[list[str]]:
    """The data rows in whole lines of an index file, in ``columns`` (today's); none if it is missing."""
    header = _header(path)
    if header is None:
        return
    with open(path, encoding="utf-8", errors=PATH_ERRORS, newline="") as f:
        rows = csv.reader(line for line in f if line.endswith("\n"))
        next(rows)
        for row in rows:
            if header == columns or len(row) != len(header):
                yield row  # as written (a malformed row is dropped by the caller)
                continue
            named = dict(zip(header, row))
            added = ADDED if named.get("left") else {}  # a face-less image's row has no face fields
            yield [named.get(c, added.get(c, "")) for c in columns]


def write_index(out: Path, rows: Iterable[Sequence]) -> None:
    """Replace ``out/faces.csv`` atomically with today's header and ``rows`` (lists in :data:`COLUMNS` order)."""
    with atomic_file(out / INDEX, text=True) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def append_rows(index: TextIO, rows: list[list]) -> None:
    """Append one image's rows in one write, and flush (before its journal line)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    index.write(buffer.getvalue())
    index.flush()


def read_index(out: Path) -> Iterator[dict[str, str]]:
    """The rows of ``out/faces.csv``, one at a time, as dicts keyed by :data:`COLUMNS` and by any
    other column the file has (one a later version added)."""
    if not (out / INDEX).exists():
        raise FileNotFoundError(f"{out / INDEX}: no run index (is {out} an annotate output folder?)")
    columns = COLUMNS + [c for c in _header(out / INDEX) or [] if c not in COLUMNS]
    for row in _rows(out / INDEX, columns):
        if len(row) == len(columns):
            yield dict(zip(columns, row))
