"""The annotate run: per-image job, parallel map with joblib, resume journal, failure log."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from .detect import detect
from .discover import Item
from .formats import atomic_write, json_record, pts_text
from .images import DEFAULT_MAX_PIXELS, ImageError, read_image
from .landmarks import cached_landmarker

DONE_LOG = ".annotate-done-{format}.log"  # one resume journal per output format
FAILURE_LOG = "failures.log"
TMP_DIR = ".annotate-tmp"  # temporary files of a killed run are left here and cleared by the next


@dataclass(frozen=True)
class Options:
    """Everything a worker needs to annotate one image."""

    out: Path
    format: str = "pts"
    upsample: int | None = None  # None: chosen from min_face (see detect.plan_scan)
    max_side: int | None = None
    min_face: int | None = None
    max_faces: int | None = None
    landmarker: str = "network"
    weights: str | None = None
    flip: bool | None = None
    preview: Path | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Result:
    """What happened to one image."""

    key: str
    faces: int = 0
    error: str | None = None


@dataclass
class Summary:
    """Running totals for the progress bar and the closing line."""

    images: int = 0
    faces: int = 0
    no_face: int = 0
    failed: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, r: Result) -> None:
        self.images += 1
        self.faces += r.faces
        self.no_face += r.error is None and r.faces == 0
        self.failed += r.error is not None

    def line(self) -> str:
        secs = time.perf_counter() - self.started
        rate = self.images / secs if secs > 0 else 0.0
        skipped = f", {self.skipped} already done" if self.skipped else ""
        return (f"{self.images} images, {self.faces} faces, {self.no_face} without a face, "
                f"{self.failed} failed{skipped}; {secs:.1f} s, {rate:.2f} images/s")


def annotate_image(item: Item, opts: Options) -> Result:
    """Read, detect, landmark and write the outputs of one image; errors become a Result."""
    try:
        return _annotate(item, opts)
    except ImageError as e:
        return Result(item.key, error=str(e))
    except Exception as e:  # one bad image must not end the run: report it and go on
        return Result(item.key, error=f"{type(e).__name__}: {e}".strip())


def _annotate(item: Item, opts: Options) -> Result:
    if item.error:
        return Result(item.key, error=item.error)
    image = read_image(item.path, opts.max_pixels)
    faces = detect(image, opts.upsample, opts.max_side, opts.max_faces, opts.min_face)
    points = cached_landmarker(opts.landmarker, opts.weights, opts.flip).predict(image, [f.box for f in faces])
    if opts.format == "json":
        records = [{"box": f.box, "score": f.score, "landmarks": p} for f, p in zip(faces, points)]
        atomic_write(item.output(opts.out, ".json"),
                     json_record(item.relative.as_posix(), image.shape[1], image.shape[0], records),
                     opts.out / TMP_DIR)
    else:
        for i, p in enumerate(points):
            suffix = ".pts" if len(points) == 1 else f"_{i + 1}.pts"
            atomic_write(item.output(opts.out, suffix), pts_text(p), opts.out / TMP_DIR)
    if opts.preview:
        atomic_write(item.output(opts.preview, ".jpg"), _preview(image, faces, points))
    return Result(item.key, faces=len(faces))


def _preview(image: np.ndarray, faces, points: np.ndarray) -> bytes:
    canvas = image.copy()
    r = max(1, round(max(image.shape[:2]) / 400))
    for f, pts in zip(faces, points):
        cv2.rectangle(canvas, f.box[:2], f.box[2:], (0, 255, 0), r)
        for x, y in pts:
            cv2.circle(canvas, (round(x), round(y)), r, (0, 0, 255), -1)
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def check_writable(out: Path) -> None:
    """Raise OSError with a clear message unless ``out`` can be created and written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".annotate-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"{out}: output folder is not writable ({e.strerror or e})") from None


def read_done(journal: Path) -> set[str]:
    """Images recorded as done (annotated, with or without faces) by earlier runs."""
    try:
        return set(journal.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return set()


def run(items: Iterable[Item], opts: Options, jobs: int = -1, backend: str | None = None,
        overwrite: bool = False, on_result: Callable[[Result, Summary], None] | None = None,
        summary: Summary | None = None) -> Summary:
    """Annotate ``items`` in parallel, streaming outputs, journal and failures to ``opts.out``.

    ``summary`` (updated in place) lets a caller report progress after an interruption.
    """
    from joblib import Parallel, delayed, parallel_config

    shutil.rmtree(opts.out / TMP_DIR, ignore_errors=True)
    (opts.out / TMP_DIR).mkdir()
    journal_path = opts.out / DONE_LOG.format(format=opts.format)
    done = set() if overwrite else read_done(journal_path)
    summary = summary if summary is not None else Summary()

    def todo():
        for item in items:
            if item.key in done:
                summary.skipped += 1
            else:
                yield item

    with open(journal_path, "w" if overwrite else "a", encoding="utf-8") as journal, \
            open(opts.out / FAILURE_LOG, "w", encoding="utf-8") as failures, \
            parallel_config(backend=backend):
        results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
            delayed(annotate_image)(item, opts) for item in todo())
        for r in results:
            summary.add(r)
            log = failures if r.error else journal
            log.write(f"{r.key}\t{r.error}\n" if r.error else r.key + "\n")
            log.flush()
            if on_result:
                on_result(r, summary)
    return summary
