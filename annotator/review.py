"""``annotate review``: contact sheets and lists of a run's faces ranked by expected error."""
from __future__ import annotations

import heapq
import math
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .crop import apply_affine, face_roll, invert_affine, warp
from .draw import BOX, draw_face, face_size, marker_sizes
from .formats import atomic_write, json_face, read_pts
from .images import ImageError, read_image
from .index import INDEX, read_index

TILE = 200  # side of a face crop on the sheet, px
LABEL = 36  # text strip under each crop, px
GAP = 4  # between tiles, px
COLUMNS = 6
PER_PAGE = 30  # tiles per sheet: 6 x 5
MARGIN = 0.3  # crop around the points and box, as a share of their size on each side
BACKGROUND = (40, 40, 40)


class ReviewError(Exception):
    """The run cannot be reviewed (no index, no expected errors)."""


def ranked_faces(out: Path, n: int, worst: bool = True, checked: str = "skip") -> list[dict[str, str]]:
    """The ``n`` faces of the run in ``out`` with the highest (``worst``) or lowest expected error, in that order.

    ``checked``: ``skip`` the faces a person checked (``annotate review --serve``), ``include`` them, or
    take ``only`` them.
    """
    faces = rated = 0

    def candidates() -> Iterator[dict[str, str]]:
        nonlocal faces, rated
        for row in read_index(out):
            faces += bool(row["left"])
            rated += bool(row["expected_error"])
            if row["expected_error"] and (checked == "include" or bool(row["checked"]) == (checked == "only")):
                yield row

    pick = heapq.nlargest if worst else heapq.nsmallest  # as sorted(...)[:n], memory for n rows only
    try:
        chosen = pick(n, candidates(), key=lambda r: float(r["expected_error"]))
    except FileNotFoundError:
        raise ReviewError(f"{out / INDEX} not found: review needs a run of this version of annotate") from None
    if faces and not rated:
        raise ReviewError(f"no face in {out / INDEX} has an expected_error ({faces} faces): only our network "
                          "estimates it, runs with --landmarker dlib cannot be ranked")
    if not chosen:
        which = {"skip": " left unchecked", "only": " checked by a person", "include": ""}[checked]
        raise ReviewError(f"{out / INDEX} lists no face{which}")
    return chosen


def face_points(out: Path, row: dict[str, str]) -> np.ndarray:
    """The face's 0-based (68, 2) points read back from the run's output file (.pts is 1-based)."""
    path = out / row["output"]
    if path.suffix == ".pts":
        return read_pts(path)
    return np.asarray(_json_face(path, row)["landmarks"], dtype=np.float64)


def face_point_errors(out: Path, row: dict[str, str]) -> list | None:
    """The face's 68 per-point expected errors from its JSON output (None: a .pts output, or none written)."""
    path = out / row["output"]
    return None if path.suffix == ".pts" else _json_face(path, row).get("point_errors")


def _json_face(path: Path, row: dict[str, str]) -> dict:
    box = [int(row[k]) for k in ("left", "top", "right", "bottom")]
    face = json_face(path, box)
    if face is None:
        raise ValueError(f"{path}: no face with box {box}")
    return face


def listing(out: Path, rows: list[dict[str, str]]) -> str:
    """One line per face: expected error, output file, input image, box left,top,right,bottom and
    checked (empty unless a person checked the face), tab-separated."""
    return "".join(f"{r['expected_error']}\t{out / r['output']}\t{r['input_path']}\t"
                   f"{r['left']},{r['top']},{r['right']},{r['bottom']}\t{r['checked']}\n" for r in rows)


def tile(out: Path, row: dict[str, str], upright: bool = False) -> np.ndarray:
    """The face cropped from its original image with its points drawn (none once a person marked it
    "not a face": its output is gone), turned by its roll when ``upright``, and a label strip below."""
    canvas = np.full((TILE + LABEL, TILE, 3), BACKGROUND, np.uint8)
    try:
        points = None if row["checked"] == "not a face" else face_points(out, row)
        unsure = None if points is None else face_point_errors(out, row)
        roll = face_roll(points) if upright and points is not None else 0.0
        canvas[:TILE] = _crop(read_image(row["input_path"]), points, row, roll, unsure)
    except (OSError, ImageError, ValueError) as e:
        _text(canvas, f"cannot show: {type(e).__name__}", 0.5 * TILE)
    _text(canvas, Path(row["output"]).name + (f" ({row['checked']})" if row["checked"] else ""), TILE + 14)
    _text(canvas, f"expected error {float(row['expected_error']):.4g} ({row['detector']})", TILE + 30)
    return canvas


def _crop(image: np.ndarray, points: np.ndarray | None, row: dict[str, str], roll: float = 0.0,
          point_errors: list | None = None) -> np.ndarray:
    """A TILE x TILE square around the points (if any) and the box, turned clockwise by ``roll`` degrees
    (the face's roll: upright), grey outside the image, points (the least sure ringed) and box drawn."""
    left, top, right, bottom = (float(row[k]) for k in ("left", "top", "right", "bottom"))
    box = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
    a = np.radians(roll)
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # as the page's SVG rotate(roll)
    turned = (box if points is None else np.vstack([points, box])) @ turn.T
    lo, hi = turned.min(0), turned.max(0)
    scale = TILE / (max(hi - lo) * (1 + 2 * MARGIN) + 1)
    m = np.hstack([scale * turn, ((TILE - 1) / 2 - scale * (lo + hi) / 2)[:, None]])  # image -> tile
    crop = warp(image, m, TILE)
    grid = np.stack(np.meshgrid(np.arange(TILE), np.arange(TILE)), -1).reshape(-1, 2).astype(np.float64)
    source = apply_affine(invert_affine(m), grid)
    h, w = image.shape[:2]
    outside = ((source < -0.5) | (source > (w - 0.5, h - 0.5))).any(1).reshape(TILE, TILE)
    crop[outside] = BACKGROUND
    if points is not None:  # the box first, under the points; turned, it is drawn as a polygon
        shown = apply_affine(m, points)
        cv2.polylines(crop, [np.round(apply_affine(m, box)).astype(np.int32)], True,
                      BOX.get(row["detector"], BOX["hog"]), marker_sizes(face_size(shown))[1], cv2.LINE_AA)
        draw_face(crop, shown, None, row["detector"], point_errors)
    return crop


def _text(canvas: np.ndarray, text: str, y: float) -> None:
    """A line of small white text at baseline ``y``, cut (ending in ...) to fit the tile."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    text = cut = text.encode("ascii", "replace").decode()  # the font's own characters (a non-UTF-8 name crashed it)
    while len(cut) > 1 and cv2.getTextSize(cut if cut == text else cut + "...", font, scale, 1)[0][0] > TILE - 8:
        cut = cut[:-1]
    cv2.putText(canvas, cut if cut == text else cut + "...", (4, int(y)), font, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


def sheet_shape(faces: int) -> tuple[int, int]:
    """(height, width) in pixels of a sheet of ``faces`` tiles (no wider than its faces need)."""
    return math.ceil(faces / COLUMNS) * (TILE + LABEL + GAP), min(max(faces, 1), COLUMNS) * (TILE + GAP)


def sheet(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles in rows of COLUMNS, left to right then top to bottom, GAP pixels apart."""
    canvas = np.full((*sheet_shape(len(tiles)), 3), BACKGROUND, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, COLUMNS)
        y, x = r * (TILE + LABEL + GAP), c * (TILE + GAP)
        canvas[y:y + TILE + LABEL, x:x + TILE] = t
    return canvas


def page_paths(path: Path, pages: int) -> list[Path]:
    """``path`` for one page, else ``<stem>-1<suffix>``, ``<stem>-2<suffix>``, ..."""
    if pages == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(1, pages + 1)]


def write_sheets(out: Path, rows: list[dict[str, str]], path: Path, per_page: int | None = None) -> list[Path]:
    """Contact sheets of ``rows`` in order, each face turned upright by its roll, ``per_page`` (default
    PER_PAGE) faces a page; returns the files written."""
    per_page = per_page or PER_PAGE
    if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise ReviewError(f"{path}: the sheet's name must end in .jpg or .png")
    pages = [rows[i:i + per_page] for i in range(0, len(rows), per_page)]
    paths = page_paths(path, len(pages))
    photos = {Path(row["input_path"]).resolve() for row in read_index(out)}
    if taken := [p for p in paths if p.resolve() in photos]:
        raise ReviewError(f"{taken[0]} is a photo of the run: give the sheet another name")
    for page, target in zip(pages, paths):
        params = [] if target.suffix.lower() == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 92]
        picture = sheet([tile(out, r, upright=True) for r in page])
        atomic_write(target, cv2.imencode(target.suffix, picture, params)[1].tobytes())
    return paths
