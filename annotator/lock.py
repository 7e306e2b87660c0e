"""One run at a time per output folder: a kernel lock that goes away with the process holding it."""
from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".annotate-lock"  # names the holder (its kind, pid, host and start time), for the message
RUN = "annotate run"
REVIEW = "annotate review server"


class OutputBusy(Exception):
    """Another annotate run or review server is writing into the same output folder."""


@contextmanager
def lock_output(out: Path, holder: str = RUN,
                advice: str = "wait for it to end (or stop it), or write to another --out") -> Iterator[None]:
    """Hold ``out`` for this ``holder`` (:data:`RUN` or :data:`REVIEW`), or raise OutputBusy naming
    the one that holds it, followed by ``advice``.

    flock(2) is released by the kernel when its holder ends, even by SIGKILL,
    so a killed run never leaves the folder locked.
    """
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or f"{RUN} (holder unknown)"
            if other.startswith("pid "):  # written by an earlier version
                other = f"{RUN} ({other})"
            raise OutputBusy(f"{out} is in use by another {other}; {advice}") from None
        _write_holder(fd, holder)
        yield
    finally:
        os.close(fd)


def _write_holder(fd: int, holder: str) -> None:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder} (pid {os.getpid()} on {socket.gethostname()}, started {started})\n".encode(), 0)
    except OSError:  # a full disk: the lock holds all the same, and the run reports the disk itself
        pass
