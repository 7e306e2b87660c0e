"""Shared fixtures: real photos from ../shared/data and a runner for the real CLI."""
from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANNOTATOR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# AFW photos: one face each, and one with three faces (the same photo is stored once per face).
PHOTOS = ["1051618982_1", "134212_1", "1130084326_1", "1634816_1"]


def need_data() -> Path:
    """The data folder; without it a test is skipped, or fails under CI (``CI`` set, as CI services do)."""
    if not (DATA / "300w" / "afw").is_dir():
        message = f"data not found at {DATA} (set ANNOTATOR_DATA)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{message}: CI runs every test on the real photos", pytrace=False)
        pytest.skip(message)
    return DATA


@pytest.fixture(scope="session")
def data() -> Path:
    return need_data()


@pytest.fixture
def photos(tmp_path: Path, data: Path) -> Path:
    """A folder with a few real photos (jpg) and their ground truth beside them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for stem in PHOTOS:
        for ext in (".jpg", ".pts"):
            shutil.copy(data / "300w" / "afw" / (stem + ext), folder / (stem + ext))
    return folder


def both_runs(root: Path, data: Path) -> Path:
    """The test photos (7 faces) copied to ``root/photos`` and annotated into ``root/json`` and ``root/pts``."""
    (root / "photos").mkdir()
    for stem in PHOTOS:
        shutil.copy(data / "300w" / "afw" / f"{stem}.jpg", root / "photos")
    for fmt in ("json", "pts"):
        annotate(root / "photos", "--out", root / fmt, "--format", fmt, "-j", "1")
    return root


SUBCOMMANDS = ("train", "review", "export")


def with_detector(args: tuple, detector: str | None) -> list[str]:
    """``args`` with ``--detector DETECTOR`` added to an annotate run that names none (None: the default).

    Tests of outputs, resume and faults run the HOG detector: about 5x faster
    than the default CNN detector, whose runs are tested in test_detectors.py.
    """
    args = [str(a) for a in args]
    command = len(args) > 1 and args[0] in SUBCOMMANDS and not args[1].startswith("-")  # not a folder 'train'
    if detector is None or command or "--detector" in args or not {"--out", "-o"} & set(args):
        return args
    return [*args, "--detector", detector]


def annotate(*args: str | Path, check: bool = True, cwd: Path | None = None, python: tuple[str, ...] = (),
             package: Path = ROOT, detector: str | None = "hog") -> subprocess.CompletedProcess:
    """Run the real ``annotate`` command line in a subprocess, ``annotator`` imported from ``package``
    (``detector``: see :func:`with_detector`)."""
    cmd = [sys.executable, *python, "-m", "annotator", *with_detector(args, detector)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stderr}")
    return result


def summary_line(stderr: str) -> str:
    """The closing line of an ``annotate`` run (``N images: ...``), or "" when it printed none."""
    lines = re.findall(r"^\d+ images?: .*$", stderr, re.M)
    return lines[-1] if lines else ""


def outputs(folder: Path) -> dict[str, str]:
    """The .pts and .json files under ``folder``: relative path -> text."""
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".pts", ".json")}


def index_rows(out: Path) -> list[dict[str, str]]:
    """The rows of a run's index ``out/faces.csv`` (its header checked)."""
    from annotator.index import COLUMNS
    with open(out / "faces.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def box_of(row: dict[str, str]) -> list[int]:
    """The box of an index row."""
    return [int(row[k]) for k in ("left", "top", "right", "bottom")]


def many_photos(photos: Path, tmp_path: Path, copies: int = 10) -> Path:
    """``copies`` folders, each with the test photos: 4 * copies images."""
    folder = tmp_path / "many"
    for i in range(copies):
        sub = folder / f"part{i}"
        sub.mkdir(parents=True)
        for stem in PHOTOS:
            shutil.copy(photos / f"{stem}.jpg", sub / f"{stem}.jpg")
    return folder


def start_annotate(*args: str | Path, env: dict | None = None) -> subprocess.Popen:
    """Start the real ``annotate`` command line in the background (the HOG detector: :func:`with_detector`),
    with Ctrl-C's default handling even when this test run ignores SIGINT (a background job of a script)."""
    return subprocess.Popen([sys.executable, "-m", "annotator", *with_detector(args, "hog")], env=env, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE)


def wait_for_journal(proc: subprocess.Popen, out: Path, lines: int, fmt: str = "pts") -> None:
    """Wait until the run ``proc`` has recorded ``lines`` images as done in ``out`` (or has ended)."""
    journal = out / f".annotate-done-{fmt}.log"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= lines:
            return
        time.sleep(0.05)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for ``proc`` to end and return its exit status and output."""
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
