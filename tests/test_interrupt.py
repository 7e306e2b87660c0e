"""A killed run loses nothing: the rerun completes it exactly as an uninterrupted run would."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import PHOTOS, annotate
from test_annotate import outputs


def many_photos(photos: Path, tmp_path: Path, copies: int = 10) -> Path:
    folder = tmp_path / "many"
    for i in range(copies):
        sub = folder / f"part{i}"
        sub.mkdir(parents=True)
        for stem in PHOTOS:
            shutil.copy(photos / f"{stem}.jpg", sub / f"{stem}.jpg")
    return folder


def start_and_stop(folder: Path, out: Path, sig: int, after: int) -> subprocess.CompletedProcess:
    """Start annotate, send ``sig`` once ``after`` images are done, return the finished process."""
    proc = subprocess.Popen([sys.executable, "-m", "annotator", folder, "--out", out, "-j", "1"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    journal = out / ".annotate-done-pts.log"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= after:
            proc.send_signal(sig)
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_sigkill_then_rerun_equals_uninterrupted_run(photos, tmp_path):
    folder = many_photos(photos, tmp_path)
    annotate(folder, "--out", tmp_path / "reference", "-j", "1")
    out = tmp_path / "killed"
    killed = start_and_stop(folder, out, signal.SIGKILL, after=8)
    assert killed.returncode == -signal.SIGKILL
    partial = outputs(out)
    assert 0 < len(partial) < len(outputs(tmp_path / "reference"))
    rerun = annotate(folder, "--out", out, "-j", "2")
    assert "already done" in rerun.stderr
    assert outputs(out) == outputs(tmp_path / "reference")
    assert all(p.stat().st_size > 0 for p in out.rglob("*.pts"))
    assert not list((out / ".annotate-tmp").iterdir())
    done = (out / ".annotate-done-pts.log").read_text().splitlines()
    assert len(done) == len(set(done)) == 40  # every image recorded exactly once


def test_ctrl_c_stops_with_a_summary(photos, tmp_path):
    folder = many_photos(photos, tmp_path)
    result = start_and_stop(folder, tmp_path / "out", signal.SIGINT, after=4)
    assert result.returncode == 130
    assert "interrupted:" in result.stderr and "rerun the same command to resume" in result.stderr
