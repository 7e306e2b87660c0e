"""Faults that would end or poison a whole batch, provoked for real: two runs at once, a full disk, dying workers."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from annotator.discover import Item
from annotator.memory import TRIM_AFTER, glibc, resident_bytes
from annotator.run import TMP_DIR, Options, annotate_image
from conftest import annotate, finish, many_photos, outputs, start_annotate, summary_line, wait_for_journal


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_second_run_into_same_out_is_refused_and_a_killed_run_leaves_no_lock(photos, tmp_path):
    folder = many_photos(photos, tmp_path, copies=3)
    out = tmp_path / "out"
    first = start_annotate(folder, "--out", out, "-j", "1")
    wait_for_journal(first, out, 1)
    first.send_signal(signal.SIGSTOP)  # holds the folder, frozen mid-run
    try:
        before = snapshot(out)
        second = annotate(folder, "--out", out, check=False)
        assert second.returncode == 1
        assert f"is in use by another annotate run (pid {first.pid} on " in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert snapshot(out) == before  # the refused run touched nothing
    finally:
        first.kill()
    assert finish(first).returncode == -signal.SIGKILL
    third = annotate(folder, "--out", out)  # the lock died with the killed run
    assert "already done" in third.stderr
    done = (out / ".annotate-done-pts.log").read_text().splitlines()
    assert len(done) == len(set(done)) == 12


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A real 300 KB file system (tmpfs), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                              capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_full_disk_stops_at_once_keeps_whole_files_and_rerun_finishes(photos, tmp_path, small_disk):
    folder = many_photos(photos, tmp_path, copies=5)
    reference = tmp_path / "reference"
    annotate(folder, "--out", reference, "-j", "2")
    filler = small_disk / "filler"
    filler.write_bytes(bytes(220_000))  # leaves room for about a third of the outputs
    out = small_disk / "out"
    full = annotate(folder, "--out", out, "-j", "2", check=False)
    assert full.returncode == 1
    assert full.stderr.count("No space left on device") == 1, full.stderr
    assert "stopped: " in full.stderr and "rerun the same command to resume" in full.stderr
    written = outputs(out)
    assert 0 < len(written) < len(outputs(reference))
    assert all(outputs(reference)[name] == text for name, text in written.items())  # whole files only
    assert not (out / "failures.log").exists()  # no image is blamed for the disk
    filler.unlink()
    rerun = annotate(folder, "--out", out, "-j", "2")
    assert "already done" in rerun.stderr
    assert outputs(out) == outputs(reference)
    done = (out / ".annotate-done-pts.log").read_text().splitlines()
    assert len(done) == len(set(done)) == 20


def kill_workers_reading(proc: subprocess.Popen, fifo: Path) -> int:
    """SIGKILL every worker process of ``proc`` that reads ``fifo``, until ``proc`` ends; return how many.

    A reader of a FIFO waits for a writer; this opens the writing end, finds the
    waiting worker among ``proc``'s children and kills it, as the kernel's
    out-of-memory killer would.
    """
    kills = 0
    while proc.poll() is None:
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # fails (ENXIO) until a reader waits
        except OSError:
            time.sleep(0.05)
            continue
        try:
            reader = wait_for(lambda: next((pid for pid in children(proc.pid) if has_open(pid, fifo)), None))
            os.kill(reader, signal.SIGKILL)
            kills += 1
            wait_for(lambda: state(reader) in ("Z", None))  # dead, its end closed: the next reader is a new one
        finally:
            os.close(writer)
    return kills


def wait_for(condition, timeout: float = 300):
    """Poll ``condition`` until it returns something true, and return that."""
    deadline = time.time() + timeout
    while not (found := condition()):
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)
    return found


def children(parent: int) -> set[int]:
    pids = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        try:
            pids.update(map(int, (task / "children").read_text().split()))
        except OSError:  # a thread that has just ended
            continue
    return pids


def state(pid: int) -> str | None:
    """The process's state letter (R, S, Z...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # the process, or one of its descriptors, is gone
        return False


def test_worker_killed_on_an_image_fails_that_image_alone_and_the_run_goes_on(photos, tmp_path):
    folder = many_photos(photos, tmp_path, copies=3)
    poison = folder / "part1" / "poison.jpg"
    os.mkfifo(poison)  # the worker that reads it waits there until it is killed
    out = tmp_path / "out"
    run = start_annotate(folder, "--out", out, "-j", "2")
    kills = kill_workers_reading(run, poison)
    result = finish(run)
    assert kills == 2  # once in the pool, once when retried alone
    assert result.returncode == 1
    assert "warning: a worker process died (SIGKILL(-9)); retrying the " in result.stderr
    assert (out / "failures.log").read_text() == (
        f"{poison}\tworker died (SIGKILL(-9): a crash, or killed for memory)\n")
    done = (out / ".annotate-done-pts.log").read_text().splitlines()
    assert len(done) == len(set(done)) == 12  # the images in flight with it were retried, none lost
    assert summary_line(result.stderr).startswith("13 images: ") and "1 failed" in summary_line(result.stderr)


@pytest.mark.skipif(glibc() is None, reason="memory is given back with glibc's malloc_trim, on Linux")
def test_a_worker_gives_back_the_memory_of_camera_photos(data, tmp_path):
    """joblib replaces a worker whose memory grows by 300 MB after its first task (it warns of a leak), and
    the new worker loads the networks again; the freed buffers of a few 8-24 MP photos used to reach that."""
    photos = sorted((data / "photos_large").glob("*.jpg"))[:5]
    opts = Options(out=tmp_path)
    (tmp_path / TMP_DIR).mkdir()  # as the run makes it
    results = [annotate_image(Item(photos[0], Path(photos[0].name), photos[0].stem), opts)]
    before = resident_bytes()  # joblib's reference: after the worker's first task
    results += [annotate_image(Item(p, Path(p.name), p.stem), opts) for p in photos[1:]]
    assert [(r.faces, r.error) for r in results] == [(1, None)] * 5
    assert resident_bytes() - before < 2 * TRIM_AFTER  # joblib's limit: 300 MB
