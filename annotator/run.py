"""The annotate run: per-image job, parallel map with joblib, resume journal, failure log."""
from __future__ import annotations

import errno
import os
import re
import shutil
import threading
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import cv2
import numpy as np
from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from joblib.externals.loky.process_executor import TerminatedWorkerError

from .crop import face_roll
from .detectors import detect, load as load_detector
from .discover import Item
from .draw import draw_face
from .formats import PATH_ERRORS, atomic_write, json_record, pts_text
from .images import DEFAULT_MAX_PIXELS, ImageError, read_image
from .index import append_rows, checked_images, follow_moves, image_rows, open_index, places
from .memory import give_back_freed_memory

DONE_LOG = ".annotate-done-{format}.log"  # one resume journal per output format
FAILURE_LOG = "failures.log"
TMP_DIR = ".annotate-tmp"  # temporary files of a killed run are left here and cleared by the next
STOP_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # no other image could be written either


class OutputStopped(Exception):
    """The outputs cannot be written at all (disk full, quota, read-only): the run stops."""


@dataclass(frozen=True)
class Options:
    """Everything a worker needs to annotate one image."""

    out: Path
    format: str = "pts"
    upsample: int | None = None  # None: chosen from min_face (see detect.plan_scan)
    max_side: int | None = None
    min_face: int | None = None
    max_faces: int | None = None
    min_score: float | None = None  # None: the detector's default
    detector: str = "cnn"
    orientation: str = "any"  # or "upright" (see detectors.detect)
    device: str = "cpu"
    threads: int = 1  # torch threads of the CNN detector: the worker's share of the cores (threads_per_worker)
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
    stop: bool = False  # the error is the output disk's, not the image's: the run stops
    rows: list[list] = field(default_factory=list)  # its faces.csv rows


@dataclass
class Summary:
    """Running totals for the progress bar and the closing line."""

    images: int = 0
    faces: int = 0
    no_face: int = 0
    failed: int = 0
    skipped: int = 0
    kept: int = 0  # images with a face a person checked, left as they are
    moved: int = 0  # images annotated earlier at a path that is gone, followed to where they are now
    started: float = field(default_factory=time.perf_counter)

    def add(self, r: Result) -> None:
        self.images += 1
        self.faces += r.faces
        self.no_face += r.error is None and r.faces == 0
        self.failed += r.error is not None

    def line(self) -> str:
        """``5 images: 3 with 7 faces, 1 without a face, 1 failed; 2 already done; 4.1 s, 1.22 images/s``
        (and ``; 1 kept: checked by a person`` when a run skipped such images)."""
        secs = time.perf_counter() - self.started
        rate = self.images / secs if secs > 0 else 0.0
        with_faces = self.images - self.no_face - self.failed
        skipped = f"; {self.skipped} already done" if self.skipped else ""
        kept = f"; {self.kept} kept: checked by a person" if self.kept else ""
        moved = f"; {self.moved} followed from where they were annotated" if self.moved else ""
        return (f"{count(self.images, 'image')}: {with_faces} with {count(self.faces, 'face')}, "
                f"{self.no_face} without a face, {self.failed} failed{skipped}{kept}{moved}; {secs:.1f} s, "
                f"{rate:.2f} images/s")


def count(n: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def annotate_image(item: Item, opts: Options) -> Result:
    """Read, detect, landmark and write the outputs of one image; errors become a Result."""
    try:
        return _annotate(item, opts)
    except ImageError as e:
        return Result(item.key, error=str(e))
    except Exception as e:  # one bad image must not end the run: report it and go on
        if isinstance(e, OSError) and e.errno in STOP_ERRNOS:
            return Result(item.key, error=e.strerror, stop=True)
        return Result(item.key, error=f"{type(e).__name__}: {e}".strip())
    finally:
        give_back_freed_memory()  # before joblib takes a photo's freed buffers for a leak


def _annotate(item: Item, opts: Options) -> Result:
    from .landmarks import cached_landmarker  # torch: imported where images are annotated only
    if item.error:
        return Result(item.key, error=item.error)
    image = read_image(item.path, opts.max_pixels)
    faces = detect(image, opts.upsample, opts.max_side, opts.max_faces, opts.min_face, opts.min_score,
                   opts.detector, opts.device, opts.threads, opts.orientation)
    landmarker = cached_landmarker(opts.landmarker, opts.weights, opts.flip, opts.device)
    points, errors, point_errors = landmarker.predict_with_error([image], [[f.box for f in faces]])
    rolls = [face_roll(p) for p in points]
    per_point = [None] * len(faces) if point_errors is None else point_errors
    if opts.format == "json":
        records = [{"box": f.box, "score": f.score, "detector": f.detector, "expected_error": e, "roll": r,
                    "landmarks": p, "point_errors": q}
                   for f, p, e, r, q in zip(faces, points, errors, rolls, per_point)]
        outputs = [item.output(opts.out, ".json")] * max(len(faces), 1)
        atomic_write(outputs[0], json_record(item.relative.as_posix(), image.shape[1], image.shape[0], records),
                     opts.out / TMP_DIR)
    else:
        outputs = [item.output(opts.out, ".pts" if len(points) == 1 else f"_{i + 1}.pts")
                   for i in range(len(points))]
        for path, p in zip(outputs, points):
            atomic_write(path, pts_text(p), opts.out / TMP_DIR)
        _remove_stale_pts(item, opts.out, len(points))
    if opts.preview:
        atomic_write(item.output(opts.preview, ".jpg"), _preview(image, faces, points, per_point))
    rows = image_rows(item, (image.shape[1], image.shape[0]), [o.relative_to(opts.out).as_posix() for o in outputs],
                      faces, errors, rolls)
    return Result(item.key, faces=len(faces), rows=rows)


def _remove_stale_pts(item: Item, out: Path, faces: int) -> None:
    """Delete the .pts files an earlier run wrote for this image and this one did not (fewer faces)."""
    if faces != 1:
        item.output(out, ".pts").unlink(missing_ok=True)
    k = 1 if faces == 1 else faces + 1
    while True:  # an earlier run's faces are numbered without gaps: stop at the first missing one
        try:
            item.output(out, f"_{k}.pts").unlink()
        except FileNotFoundError:
            return
        k += 1


def _remove_unwritten(out: Path, outputs: set[str]) -> None:
    """Delete a redone checked image's earlier outputs that its new run did not write again.

    :func:`_remove_stale_pts` stops at a gap in the numbering, which "not a face" leaves in a checked image.
    """
    for output in outputs:
        (out / output).unlink(missing_ok=True)


def _preview(image: np.ndarray, faces, points: np.ndarray, point_errors: list) -> bytes:
    canvas = image.copy()
    for f, pts, per_point in zip(faces, points, point_errors):
        draw_face(canvas, pts, f.box, f.detector, per_point)
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def load_landmarker(opts: Options, jobs: int, backend: str | None = None) -> None:
    """Load the landmarker and detector where images will be annotated; a bad --weights fails here, once.

    With one local process that is this one. With several, each joblib worker loads them now (they are
    reused by :func:`run`), so this process never imports torch and no worker starts cold.
    """
    if backend == "dask":  # the cluster's workers load it with their first image; check it here
        return _load(opts)
    with parallel_config(backend=backend):
        workers = effective_n_jobs(jobs)
        if workers == 1:
            return _load(opts)
        # a worker returns its error rather than raising it: joblib kills the pool on a raised error, and a
        # worker killed in the middle of its start leaves loky's resource tracker a folder to warn about at exit
        errors = Parallel(n_jobs=jobs)(delayed(_error_of_load)(opts) for _ in range(workers))
    for error in errors:
        if error is not None:
            raise error


def threads_per_worker(jobs: int, backend: str | None = None) -> int:
    """Each local worker's share of the cores (1 on a cluster): what the CNN detector runs on."""
    if backend == "dask":
        return 1
    from joblib import cpu_count
    return max(1, cpu_count() // effective_n_jobs(jobs))


def _load(opts: Options) -> None:
    from .landmarks import cached_landmarker
    cached_landmarker(opts.landmarker, opts.weights, opts.flip, opts.device)
    load_detector(opts.detector, opts.device)


def _error_of_load(opts: Options) -> Exception | None:
    try:
        _load(opts)
    except Exception as e:
        return e
    return None


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
        return set(journal.read_text(encoding="utf-8", errors=PATH_ERRORS).splitlines())
    except FileNotFoundError:
        return set()


def run(items: Iterable[Item], opts: Options, jobs: int = -1, backend: str | None = None,
        overwrite: bool = False, on_result: Callable[[Result, Summary], None] | None = None,
        summary: Summary | None = None, on_notice: Callable[[str], None] | None = None,
        overwrite_checked: bool = False, photos_moved: bool = False) -> Summary:
    """Annotate ``items`` in parallel, streaming outputs, journal and failures to ``opts.out``.

    An image with a face a person checked (``faces.csv``) is left as it is, outputs and rows, even
    with ``overwrite``, unless ``overwrite_checked``; it stays recorded as done.
    An image whose place in the output tree holds the faces of another input path fails, so that no
    photo's outputs replace another's; unless that path is gone and ``photos_moved``: then it is taken as
    the same photo, moved (not annotated again; its rows point at the new path at the end of the run).
    ``summary`` (updated in place) lets a caller report progress after an interruption.
    A worker process that dies is replaced and the images in flight are retried one
    at a time (``on_notice`` is told); the one that kills its worker again fails as
    "worker died". Raises OutputStopped when the outputs cannot be written at all.
    """
    summary = summary if summary is not None else Summary()
    try:
        shutil.rmtree(opts.out / TMP_DIR, ignore_errors=True)
        (opts.out / TMP_DIR).mkdir()
        journal_path = opts.out / DONE_LOG.format(format=opts.format)
        (opts.out / FAILURE_LOG).unlink(missing_ok=True)  # written again at this run's first failure
        done = set() if overwrite else read_done(journal_path)
        checked = checked_images(opts.out, opts.format)
        kept = set() if overwrite_checked else set(checked)
        moves: dict[str, str] | None = {} if photos_moved else None
        with _open_log(journal_path, append=not overwrite) as journal, \
                open_index(opts.out, opts.format, done, overwrite, kept) as index, ExitStack() as logs, \
                parallel_config(backend=backend):
            feed = _Feed(_todo(items, done, kept, places(opts.out, opts.format), moves, opts.out, summary))
            failures = None
            for key in sorted(kept - done):  # done, by a person: the journal says so (again, after --overwrite)
                _append_line(journal, key)

            def record(r: Result) -> None:
                nonlocal failures
                if r.stop:
                    raise OutputStopped(f"cannot write the outputs of {r.key}: {r.error}")
                summary.add(r)
                if r.error:
                    failures = failures or logs.enter_context(_open_log(opts.out / FAILURE_LOG, append=False))
                    _append_line(failures, f"{r.key}\t{r.error}")
                else:
                    _remove_unwritten(opts.out, checked.get(r.key, set()) - {row[1] for row in r.rows})
                    append_rows(index, r.rows)  # before the journal line: see annotator/index.py
                    _append_line(journal, r.key)
                if on_result:
                    on_result(r, summary)

            _annotate_all(feed, opts, jobs, record, on_notice or (lambda message: None))
            if moves:  # the rows first, then the journal, as for every image
                follow_moves(opts.out, opts.format, moves)
                atomic_write(journal_path, "".join(f"{key}\n" for key in
                                                   sorted(read_done(journal_path) - moves.keys() | {*moves.values()})))
    except OSError as e:
        if e.errno in STOP_ERRNOS:
            raise OutputStopped(f"cannot write to {opts.out}: {e.strerror}") from None
        raise
    finally:
        _remove_if_empty(opts.out / TMP_DIR)
    return summary


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (a worker still writing when interrupted): the next run clears it
        pass


def _annotate_all(feed: _Feed, opts: Options, jobs: int, record: Callable[[Result], None],
                  notice: Callable[[str], None]) -> None:
    """Record every item's result; a pool that loses a worker is replaced, its unfinished items retried alone."""
    while True:
        try:
            with _pool(feed.stream(), opts, jobs) as results:
                for r in results:
                    feed.finished(r.key)
                    record(r)
            return
        except TerminatedWorkerError as e:
            unfinished = feed.take_unfinished()
            notice(f"a worker process died ({_exit_codes(e)}); "
                   f"retrying the {len(unfinished)} images in flight one at a time")
            for item in unfinished:
                record(_annotate_alone(item, opts, jobs))


def _annotate_alone(item: Item, opts: Options, jobs: int) -> Result:
    """Annotate ``item`` as the only task of a pool: if a worker dies now, this image killed it."""
    try:
        with _pool([item], opts, jobs) as results:
            return next(results)
    except TerminatedWorkerError as e:
        return Result(item.key, error=f"worker died ({_exit_codes(e)}: a crash, or killed for memory)")


@contextmanager
def _pool(items: Iterable[Item], opts: Options, jobs: int) -> Iterator[Iterator[Result]]:
    """Results of ``annotate_image`` on joblib's pool as they finish; tasks left unfinished are cancelled."""
    results = Parallel(n_jobs=jobs, return_as="generator_unordered")(
        delayed(annotate_image)(item, opts) for item in items)
    try:
        yield results
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joblib's note that it cancelled tasks: the caller knows
            results.close()


def _exit_codes(e: Exception) -> str:
    """The dead workers' exit codes from loky's message, e.g. 'SIGKILL(-9)'."""
    found = re.search(r"exit codes of the workers are \{(.*?)\}", str(e))
    return found.group(1) if found else "unknown exit code"


def _todo(items: Iterable[Item], done: set[str], kept: set[str], taken: dict[str, str],
          moves: dict[str, str] | None, out: Path, summary: Summary) -> Iterator[Item]:
    """The items to annotate; ``taken``: the places in ``out`` that hold faces, and the keys they came from."""
    for item in items:
        owner = taken.get(item.relative.as_posix(), item.key)
        if item.key in kept:
            summary.kept += 1
        elif item.key in done:
            summary.skipped += 1
        elif owner == item.key:
            yield item
        elif _same_file(owner, item.path):  # found again by another path (a symlink, another mount)
            summary.kept += owner in kept
            summary.skipped += owner not in kept
        elif moves is not None and not os.path.lexists(owner):
            moves[owner] = item.key
            summary.moved += 1
        else:
            yield replace(item, error=_place_taken(item, owner, out))


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _place_taken(item: Item, owner: str, out: Path) -> str:
    """Why an image whose place in ``out`` holds another path's faces is not annotated."""
    place = f"{out} holds the faces of {item.relative.as_posix()} from {owner}"
    if os.path.lexists(owner):
        return f"{place}, another photo: give another --out (two photos cannot share a place)"
    return (f"{place}, which is gone: if the photos moved, rerun with --photos-moved (their faces and checks "
            f"are kept as they are, not annotated again); else give another --out")


class _Feed:
    """Items handed out to successive pools, remembering those not yet finished.

    When a pool breaks, ``take_unfinished`` returns what it held and cuts off its
    dispatcher (a joblib thread), so that every item is either finished or returned.
    """

    def __init__(self, items: Iterable[Item]):
        self._source = iter(items)
        self._lock = threading.Lock()
        self._unfinished: dict[str, Item] = {}
        self._pool = 0

    def stream(self) -> Iterator[Item]:
        pool = self._pool
        while True:
            with self._lock:
                item = next(self._source, None) if pool == self._pool else None
                if item is None:
                    return
                self._unfinished[item.key] = item
            yield item

    def finished(self, key: str) -> None:
        self._unfinished.pop(key, None)

    def take_unfinished(self) -> list[Item]:
        with self._lock:
            self._pool += 1
            items, self._unfinished = list(self._unfinished.values()), {}
        return items


def _open_log(path: Path, append: bool) -> BinaryIO:
    """A log file written a whole line at a time, unbuffered; a last line cut short (full disk) is ended."""
    log = open(path, "a+b" if append else "wb", buffering=0)
    size = log.seek(0, os.SEEK_END)
    if size:
        log.seek(size - 1)
        if log.read(1) != b"\n":
            _append_line(log, "")
    return log


def _append_line(log: BinaryIO, line: str) -> None:
    data = memoryview(f"{line}\n".encode("utf-8", PATH_ERRORS))
    while data:
        data = data[log.write(data):]
