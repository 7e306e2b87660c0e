"""Faults that would end or poison a whole batch, provoked for real: two runs at once, a full disk, dying workers."""
from __future__ import annotations

import signal
from pathlib import Path

from conftest import annotate, finish, many_photos, start_annotate, wait_for_journal


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
